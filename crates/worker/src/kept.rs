//! What an isolate keeps between requests: the upstream sessions of the cores' pools. A 2026
//! client's requests need no session of their own, but a 2025 upstream does; rather than
//! initializing one per request, the isolate hands the sessions the last request used to the
//! next one's core ([`Proxy::adopt_pool_session`]). An upstream that forgot a session answers
//! 404 and the core initializes it again. Nothing here is a client's: only upstream session ids.

use std::cell::RefCell;

use mcp_proxy_core::{PoolSession, Proxy};

thread_local! {
    static KEPT: RefCell<Vec<PoolSession>> = const { RefCell::new(Vec::new()) };
}

/// Hands the kept sessions to a fresh core.
pub(crate) fn adopt(proxy: &mut Proxy) {
    let kept = KEPT.with(|kept| kept.borrow().clone());
    for session in kept {
        proxy.adopt_pool_session(session);
    }
}

/// Keeps the sessions a finished core's pools hold, if it had any.
pub(crate) fn keep(proxy: &Proxy) {
    let sessions = proxy.pool_sessions();
    if !sessions.is_empty() {
        KEPT.with(|kept| *kept.borrow_mut() = sessions);
    }
}
