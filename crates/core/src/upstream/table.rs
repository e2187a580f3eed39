//! The upstream table: the one allocator of upstream ids, and which session owns each
//! upstream that is its own (a shared upstream has no owner: [`super::shared`] tracks who uses it).

use std::collections::BTreeMap;

use crate::ids::{SessionId, UpstreamId};

/// Upstream ids handed out, and their owners.
#[derive(Debug, Default)]
pub(crate) struct UpstreamTable {
    next: u64,
    owners: BTreeMap<UpstreamId, SessionId>,
}

impl UpstreamTable {
    /// A fresh upstream id, owned by `owner` if it is a session's own.
    pub(crate) fn allocate(&mut self, owner: Option<&SessionId>) -> UpstreamId {
        self.next += 1;
        let upstream = UpstreamId(self.next);
        if let Some(owner) = owner {
            self.owners.insert(upstream, owner.clone());
        }
        upstream
    }

    /// The session whose own upstream this is.
    pub(crate) fn owner(&self, upstream: UpstreamId) -> Option<&SessionId> {
        self.owners.get(&upstream)
    }

    /// Forgets an upstream that was stopped.
    pub(crate) fn release(&mut self, upstream: UpstreamId) {
        self.owners.remove(&upstream);
    }
}
