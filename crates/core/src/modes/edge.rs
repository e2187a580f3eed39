//! Sessions at the edge: the session travels in its own id, sealed.
//!
//! A Worker keeps nothing between requests and any isolate may serve any request, so the
//! `Mcp-Session-Id` it hands out is the session itself: which endpoint, the negotiated
//! revision, the client's `initialize` parameters (to initialize an expired upstream session
//! again) and each upstream's own session id — serialized, then encrypted and authenticated
//! with ChaCha20-Poly1305 under a key derived from the operator's secret. A tampered, foreign
//! or expired id does not open, and is answered like any unknown session: 404. Upstream
//! credentials stay in the configuration; they are never put in an id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::{ProxyRequestId, ServerId, SessionId};
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::session::{Member, Session, SessionState, Transport};
use crate::upstream::backoff::Backoff;
use crate::wire::jsonrpc::RequestId;

/// Starts every sealed id: the format's version.
const PREFIX: &str = "e2.";
/// Binds the ciphertext to its use (the client's credential follows it).
const ASSOCIATED_DATA: &[u8] = b"mcp-proxy edge session v2";
/// Sealed ids longer than this are not even opened (a header is not a place for megabytes),
/// and none this long is issued.
pub(crate) const MAX_SEALED_LEN: usize = 8 * 1024;
/// Bytes of secret a session key must carry (256 bits).
const KEY_BYTES: usize = 32;

/// Why a session key is refused.
const KEY_ADVICE: &str = "must be 32 random bytes written as 64 hex digits or 43+ base64 characters \
     (make one with `openssl rand -hex 32`)";

/// Reads a session key: 64 hex digits, or base64 (standard or URL-safe, padded or not) of 32
/// bytes or more; refuses anything shorter or of too little variety to be random.
pub(crate) fn session_key_bytes(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    let text = text.trim();
    let hex = (text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
        (0..KEY_BYTES).filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Vec<u8>>()
    });
    let decoded = hex
        .or_else(|| STANDARD.decode(text).ok())
        .or_else(|| STANDARD_NO_PAD.decode(text).ok())
        .or_else(|| URL_SAFE.decode(text).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok());
    let Some(bytes) = decoded.filter(|bytes| bytes.len() >= KEY_BYTES) else {
        return Err(KEY_ADVICE.to_owned());
    };
    let mut seen = [false; 256];
    for byte in &bytes {
        seen[usize::from(*byte)] = true;
    }
    if seen.iter().filter(|s| **s).count() < 16 {
        return Err(format!("has too little variety to be random: it {KEY_ADVICE}"));
    }
    Ok(bytes)
}

/// A digest of the credential a request presents (`X-API-Key`, `Authorization`): a sealed
/// session opens only for the credential it was sealed for, so a stolen id is useless alone.
pub(crate) fn credential_digest(request: &crate::wire::http::HttpRequest) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"mcp-proxy edge credential\0");
    for name in ["x-api-key", "authorization"] {
        let value = request.header(name).unwrap_or_default();
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    }
    hasher.finalize().into()
}

/// Seals and opens session ids with the key derived from the operator's secret.
pub(crate) struct Sealer {
    cipher: ChaCha20Poly1305,
    max_age_secs: u64,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

impl Sealer {
    /// Derives the cipher key from the session key's bytes (see [`session_key_bytes`]).
    pub(crate) fn new(secret: &[u8], max_age_secs: u64) -> Sealer {
        let mut hasher = Sha256::new();
        hasher.update(b"mcp-proxy edge session key\0");
        hasher.update(secret);
        let key: [u8; 32] = hasher.finalize().into();
        Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), max_age_secs }
    }

    /// Seals `ticket` for the client presenting `credential`; `None` if the id would be too
    /// long ever to be opened.
    fn seal(&self, ticket: &Ticket, credential: &[u8; 32], rng: &mut impl RngCore) -> Option<String> {
        self.seal_json(ASSOCIATED_DATA, ticket, credential, MAX_SEALED_LEN, rng)
    }

    /// Seals a serializable value for `credential` under `purpose` (a distinct associated
    /// data for each kind of sealed thing), as `PREFIX` + base64 of nonce, ciphertext and tag;
    /// `None` if it would exceed `max` bytes.
    pub(crate) fn seal_json(
        &self,
        purpose: &[u8],
        value: &impl Serialize,
        credential: &[u8; 32],
        max: usize,
        rng: &mut impl RngCore,
    ) -> Option<String> {
        let plain = serde_json::to_vec(value).ok()?;
        if PREFIX.len() + (12 + plain.len() + 16).div_ceil(3) * 4 > max {
            return None;
        }
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let aad = [purpose, credential].concat();
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad }).ok()?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Opens what [`Sealer::seal_json`] sealed for the same purpose and credential (nothing
    /// longer than `max` is even decoded).
    pub(crate) fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        purpose: &[u8],
        text: &str,
        credential: &[u8; 32],
        max: usize,
    ) -> Option<T> {
        if text.len() > max {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let aad = [purpose, credential].concat();
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad }).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    fn open(&self, text: &str, credential: &[u8; 32], now_secs: u64) -> Option<Ticket> {
        let ticket: Ticket = self.open_json(ASSOCIATED_DATA, text, credential, MAX_SEALED_LEN)?;
        (now_secs.saturating_sub(ticket.issued) <= self.max_age_secs).then_some(ticket)
    }
}

/// Where sessions live, chosen once at construction: in the proxy's memory (the native host),
/// or sealed into their own ids (at the edge, where nothing lives between requests). Each
/// decision that differs between the two is a method here.
#[derive(Debug)]
pub(crate) enum SessionStore {
    /// Sessions live in the proxy; ids are random handles.
    Memory,
    /// Sessions travel sealed in their ids; every request is served by a fresh proxy.
    Sealed(Sealer),
}

impl SessionStore {
    /// The store the configuration asks for.
    pub(crate) fn new(config: &crate::config::Config) -> SessionStore {
        match &config.edge {
            Some(edge) => SessionStore::Sealed(Sealer::new(&edge.key, edge.session_max_age_secs)),
            None => SessionStore::Memory,
        }
    }

    /// A digest of the credential a request presents, where sessions are sealed for it.
    pub(crate) fn credential(&self, request: &crate::wire::http::HttpRequest) -> [u8; 32] {
        match self {
            SessionStore::Memory => [0; 32],
            SessionStore::Sealed(_) => credential_digest(request),
        }
    }

    /// Whether requests go upstream under the client's own ids. At the edge each client
    /// session has upstream sessions of its own and every request is served by a fresh proxy,
    /// so the client's ids are unique there, and keeping them lets a cancellation sent in a
    /// later request name its request. In memory the proxy's own ids keep clients apart.
    pub(crate) fn keeps_client_ids(&self) -> bool {
        matches!(self, SessionStore::Sealed(_))
    }

    /// The id a request goes upstream with.
    pub(crate) fn upstream_id(&self, proxy_id: ProxyRequestId, original: &RequestId) -> RequestId {
        match self {
            SessionStore::Memory => RequestId::Number(proxy_id.0),
            SessionStore::Sealed(_) => original.clone(),
        }
    }

    /// Whether what a session learned (resource owners from lists, server requests handed
    /// out) is still known in its later requests. At the edge it is not.
    pub(crate) fn remembers(&self) -> bool {
        matches!(self, SessionStore::Memory)
    }

    /// Whether a session is rebuilt from the id its client sends back (at the edge, where the
    /// id carries it sealed) rather than looked up among the proxy's own (in memory).
    pub(crate) fn restores_from_ids(&self) -> bool {
        matches!(self, SessionStore::Sealed(_))
    }

    /// Whether an upstream's own stream is opened as soon as its session is initialized
    /// (in memory), or only while a client listens on its GET stream (at the edge, where the
    /// proxy lives only as long as a request).
    pub(crate) fn listens_ahead(&self) -> bool {
        matches!(self, SessionStore::Memory)
    }
}

/// What a sealed id carries.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Ticket {
    /// The endpoint: a server's name, or none for the merged endpoint.
    #[serde(rename = "e")]
    endpoint: Option<String>,
    /// The revision negotiated with the client.
    #[serde(rename = "v", default)]
    protocol: Option<String>,
    /// The client's `initialize` parameters.
    #[serde(rename = "i", default)]
    initialize: Option<Value>,
    #[serde(rename = "m")]
    members: Vec<MemberTicket>,
    /// When the session began, in seconds of the shell's wall clock ([`crate::WallClock`]).
    #[serde(rename = "t")]
    issued: u64,
}

/// One upstream of a sealed session.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct MemberTicket {
    /// The server's name.
    #[serde(rename = "s")]
    server: String,
    /// Its session id, as the upstream gave it.
    #[serde(rename = "u", default)]
    session: Option<String>,
    /// The revision it speaks.
    #[serde(rename = "v", default)]
    protocol: Option<String>,
    /// Left out of a merged session.
    #[serde(rename = "f", default)]
    failed: bool,
}

impl Proxy {
    /// The id a client is given for a session: the session sealed at the edge (for the
    /// credential that opened it), else its id; `None` if it cannot be sealed (too large).
    pub(crate) fn public_session_id(&mut self, session_id: &SessionId) -> Option<String> {
        let SessionStore::Sealed(sealer) = &self.store else {
            return Some(session_id.to_string());
        };
        let session = self.sessions.get(session_id)?;
        let credential = session.credential;
        let endpoint = match session.target {
            Target::Server(server) => {
                Some(self.ctx.config.servers.get(server).map(|s| s.name.clone()).unwrap_or_default())
            }
            Target::Merged => None,
        };
        let members = session
            .members
            .iter()
            .map(|member| {
                let (session, protocol) = self.http.session_of(member.upstream);
                // A 2026 upstream has no session: its revision is what the ticket carries.
                let protocol = match self.eras.is_modern(member.upstream) {
                    true => Some(crate::modern::envelope::MODERN_VERSION.to_owned()),
                    false => protocol,
                };
                MemberTicket {
                    server: self.ctx.config.servers.get(member.server).map(|s| s.name.clone()).unwrap_or_default(),
                    session,
                    protocol,
                    failed: member.failed,
                }
            })
            .collect();
        let ticket = Ticket {
            endpoint,
            protocol: session.protocol_version.clone(),
            initialize: session.initialize_params.clone(),
            members,
            issued: self.ctx.wall.0,
        };
        sealer.seal(&ticket, &credential, &mut self.ctx.rng)
    }

    /// Opens a sealed id presented at `target`'s endpoint and rebuilds its session; `None`
    /// for anything that does not open, or belongs to another endpoint.
    pub(crate) fn restore_session(&mut self, sealed: &str, target: Target, credential: [u8; 32]) -> Option<SessionId> {
        let SessionStore::Sealed(sealer) = &self.store else {
            return None;
        };
        let ticket = sealer.open(sealed, &credential, self.ctx.wall.0)?;
        let restored_target = match &ticket.endpoint {
            Some(name) => Target::Server(self.server_named(name)?),
            None => Target::Merged,
        };
        if restored_target != target {
            return None;
        }
        let id = SessionId::generate(&mut self.ctx.rng);
        let mut members = Vec::with_capacity(ticket.members.len());
        for member in &ticket.members {
            // A server gone from the configuration since is left out.
            let Some(server) = self.server_named(&member.server) else {
                continue;
            };
            let upstream = self.start_upstream(server, Some(&id))?;
            if member.protocol.as_deref().is_some_and(crate::modern::envelope::is_modern) {
                self.eras.resume(server, upstream, Some(serde_json::json!({})));
            }
            self.http.resume(upstream, member.session.clone(), member.protocol.clone(), ticket.initialize.clone());
            members.push(Member { server, upstream, failed: member.failed, backoff: Backoff::rejoin(self.ctx.now) });
        }
        if members.iter().all(|m| m.failed) {
            return None;
        }
        let transport = Transport::Streamable { standalone: None, posts: Vec::new(), backlog: Default::default() };
        let mut session = Session::new(target, members, SessionState::Ready, transport, self.ctx.now, false);
        session.protocol_version = ticket.protocol;
        session.initialize_params = ticket.initialize;
        session.credential = credential;
        self.sessions.insert(id.clone(), session);
        Some(id)
    }

    fn server_named(&self, name: &str) -> Option<ServerId> {
        crate::route::server_named(&self.ctx.config, name)
    }
}

/// The id a merged session's client sees for a server's request: the server's number and
/// its own id, so the answer finds its way back without anything remembered.
pub(crate) fn name_server_request(server: ServerId, id: &crate::wire::jsonrpc::RequestId) -> String {
    format!("mcp-proxy~{server}~{}", serde_json::to_string(id).expect("a request id always serializes"))
}

/// Reads an id made by [`name_server_request`].
pub(crate) fn unname_server_request(named: &str) -> Option<(ServerId, crate::wire::jsonrpc::RequestId)> {
    let (server, id) = named.strip_prefix("mcp-proxy~")?.split_once('~')?;
    Some((ServerId(server.parse().ok()?), serde_json::from_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn ticket() -> Ticket {
        Ticket {
            endpoint: Some("everything".into()),
            protocol: Some("2025-11-25".into()),
            initialize: Some(serde_json::json!({"clientInfo": {"name": "t"}})),
            members: vec![MemberTicket {
                server: "everything".into(),
                session: Some("abc".into()),
                protocol: None,
                failed: false,
            }],
            issued: 1_000,
        }
    }

    const KEY: [u8; 32] = *b"0123456789abcdefghijklmnopqrstuv";
    const ALICE: [u8; 32] = [1; 32];

    #[test]
    fn sealed_ids_open_with_the_same_secret_and_credential_only() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let sealer = Sealer::new(&KEY, 3600);
        let sealed = sealer.seal(&ticket(), &ALICE, &mut rng).expect("sealed");
        assert!(sealed.starts_with(PREFIX));
        assert!(sealed.bytes().all(|b| b.is_ascii_graphic()), "a header value: visible ASCII");
        assert!(!sealed.contains("abc"), "nothing in clear text");
        assert_eq!(sealer.open(&sealed, &ALICE, 1_000), Some(ticket()));
        assert_eq!(sealer.open(&sealed, &[2; 32], 1_000), None, "a stolen id without its credential");
        assert_eq!(Sealer::new(&[7; 32], 3600).open(&sealed, &ALICE, 1_000), None, "another secret");
        let again = sealer.seal(&ticket(), &ALICE, &mut rng).expect("sealed");
        assert_ne!(sealed, again, "a fresh nonce each time");
    }

    #[test]
    fn tampered_truncated_and_expired_ids_do_not_open() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([2; 32]);
        let sealer = Sealer::new(&KEY, 3600);
        let sealed = sealer.seal(&ticket(), &ALICE, &mut rng).expect("sealed");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(sealer.open(&tampered, &ALICE, 1_000), None);
        assert_eq!(sealer.open(&sealed[..sealed.len() - 4], &ALICE, 1_000), None);
        assert_eq!(sealer.open(PREFIX, &ALICE, 1_000), None);
        assert_eq!(sealer.open("0123456789abcdef0123456789abcdef", &ALICE, 1_000), None);
        assert_eq!(sealer.open(&sealed, &ALICE, 1_000 + 3601), None, "too old");
        assert!(sealer.open(&sealed, &ALICE, 1_000 + 3600).is_some());
    }

    #[test]
    fn an_id_too_long_to_open_is_never_issued() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let sealer = Sealer::new(&KEY, 3600);
        let mut big = ticket();
        big.initialize = Some(serde_json::json!({"capabilities": {"x": "y".repeat(MAX_SEALED_LEN)}}));
        assert_eq!(sealer.seal(&big, &ALICE, &mut rng), None);
        let mut fits = ticket();
        fits.initialize = Some(serde_json::json!({"capabilities": {"x": "y".repeat(5_000)}}));
        let sealed = sealer.seal(&fits, &ALICE, &mut rng).expect("fits");
        assert!(sealed.len() <= MAX_SEALED_LEN);
        assert!(sealer.open(&sealed, &ALICE, 1_000).is_some());
    }

    #[test]
    fn session_keys_must_carry_256_random_bits() {
        let hex = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";
        assert_eq!(session_key_bytes(hex).expect("64 hex digits").len(), 32);
        let base64 = "P5oMTnsh2G9aDpw7fRTypo5cC506fx4kxrjQpfPnyRs=";
        assert_eq!(session_key_bytes(base64).expect("openssl rand -base64 32").len(), 32);
        assert!(session_key_bytes(base64.trim_end_matches('=')).is_ok(), "unpadded");
        for refused in [
            "short",
            &"k".repeat(32),
            &"0123456789abcdef".repeat(4),
            &"ab".repeat(32),
            "test-session-key-0123456789abcdef0123456789abcdef",
        ] {
            let error = session_key_bytes(refused).expect_err(refused);
            assert!(error.contains("openssl rand -hex 32"), "{error}");
        }
    }
}
