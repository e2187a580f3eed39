//! Identifiers: small integer handles for things the shells hold, random tokens for sessions.

use core::fmt;

use rand_core::RngCore;

/// An HTTP exchange (one request and its response), numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeId(pub u64);

/// A connection to an upstream MCP server (a stdio child), numbered by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamId(pub u64);

/// A server the proxy serves: its number in the server table
/// ([`crate::registry::ServerTable`]), never given twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub usize);

impl ServerId {
    /// The first server of the configuration: the only one a bridge (one server) serves.
    pub const FIRST: ServerId = ServerId(0);
}

impl fmt::Display for ServerId {
    /// The number, as pagination cursors and edge request ids carry it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A request the core asked the shell to make ([`crate::Output::Fetch`]), numbered by the
/// core; the shell reports its answer under the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetchId(pub u64);

/// A request id the proxy puts on requests it forwards upstream.
///
/// Always an integer the proxy chose, never a client's string, so two clients
/// (or two requests of one client) can never collide upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxyRequestId(pub i64);

/// A session identifier handed to clients in `Mcp-Session-Id` or `?sessionId=`.
///
/// 128 bits from a cryptographically secure generator, written as 32 lowercase hex digits:
/// visible ASCII, as the MCP transport specification requires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Draws a fresh session id from `rng`.
    pub fn generate(rng: &mut impl RngCore) -> SessionId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let mut text = String::with_capacity(32);
        for byte in bytes {
            text.push(hex_digit(byte >> 4));
            text.push(hex_digit(byte & 0x0f));
        }
        SessionId(text)
    }

    /// Reads a session id a client sent back; `None` if it cannot be one of ours.
    pub fn parse(text: &str) -> Option<SessionId> {
        let valid = text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| SessionId(text.to_owned()))
    }

    /// The id of no session (the owner of what the proxy asks for itself); never sent.
    pub(crate) fn unowned() -> SessionId {
        SessionId(String::new())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let a = SessionId::generate(&mut rng);
        let b = SessionId::generate(&mut rng);
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn foreign_ids_are_rejected() {
        assert_eq!(SessionId::parse(""), None);
        assert_eq!(SessionId::parse("../etc/passwd"), None);
        assert_eq!(SessionId::parse(&"A".repeat(32)), None);
        assert_eq!(SessionId::parse(&"a".repeat(33)), None);
    }
}
