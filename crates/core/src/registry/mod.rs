//! The servers served, and how they change at run time: the server API and temporary servers.

pub(crate) mod api;
pub(crate) mod temporary;
