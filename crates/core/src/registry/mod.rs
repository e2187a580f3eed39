//! The servers served, and how they change at run time: the server API and temporary servers.

pub(crate) mod api;
pub(crate) mod temporary;

use std::collections::BTreeMap;

use crate::config::file::ServerEntry;
use crate::ids::ServerId;

/// The servers served, by number: from the configuration, added through the API, or
/// temporary. A number is never given twice, so a session that still names a removed server
/// finds nothing rather than another server; removing a server frees its entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerTable {
    entries: BTreeMap<ServerId, ServerEntry>,
    next: usize,
}

impl ServerTable {
    /// The server numbered `server`, if it is still there.
    pub fn get(&self, server: ServerId) -> Option<&ServerEntry> {
        self.entries.get(&server)
    }

    /// The server numbered `server`, to change.
    pub fn get_mut(&mut self, server: ServerId) -> Option<&mut ServerEntry> {
        self.entries.get_mut(&server)
    }

    /// Adds a server and returns its number.
    pub fn insert(&mut self, entry: ServerEntry) -> ServerId {
        let server = ServerId(self.next);
        self.next += 1;
        self.entries.insert(server, entry);
        server
    }

    /// Removes a server, freeing its entry.
    pub fn remove(&mut self, server: ServerId) -> Option<ServerEntry> {
        self.entries.remove(&server)
    }

    /// Every server with its number, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ServerId, &ServerEntry)> {
        self.entries.iter().map(|(server, entry)| (*server, entry))
    }

    /// Every server's entry, in the order they were added.
    pub fn entries(&self) -> impl Iterator<Item = &ServerEntry> {
        self.entries.values()
    }

    /// The number of the first server `matches`.
    pub fn position(&self, mut matches: impl FnMut(&ServerEntry) -> bool) -> Option<ServerId> {
        self.iter().find(|(_, entry)| matches(entry)).map(|(server, _)| server)
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Extend<ServerEntry> for ServerTable {
    fn extend<I: IntoIterator<Item = ServerEntry>>(&mut self, entries: I) {
        for entry in entries {
            self.insert(entry);
        }
    }
}
