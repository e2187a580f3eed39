//! Reverse mode: the client-facing stdio transport. One local client (Claude Desktop, an IDE)
//! runs the proxy as its stdio server; every line it writes is a JSON-RPC message for the one
//! remote server of `connect`, reached through the same upstream clients as any remote
//! upstream (Streamable HTTP or legacy SSE, era detection included). Whatever the remote
//! sends the client — answers, notifications, its own requests — becomes a line of the
//! shell's stdout ([`Output::ClientSend`]).
//!
//! The client is one session, opened by its first line and ended when it closes stdin: the
//! upstream session ends with it (a Streamable HTTP session is deleted), and the shell is
//! told it may exit once the core is idle ([`Output::ClientDone`]).

use crate::error::RequestError;
use crate::ids::{ServerId, SessionId};
use crate::io::{LogLevel, Output};
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::pending::ReplyTo;
use crate::state::session::{SessionState, Transport};
use crate::time::Instant;
use crate::wire::jsonrpc::{Message, Payload};

/// The local client's session, once it wrote something; and whether it is over.
#[derive(Debug, Default)]
pub(crate) struct StdioClient {
    session: Option<SessionId>,
    done: bool,
    /// [`Output::ClientDone`] was given.
    announced: bool,
}

impl Proxy {
    /// A line from the local client.
    pub(crate) fn client_message(&mut self, now: Instant, line: &[u8]) {
        if self.ctx.config.connect.is_none() || self.stdio.done {
            let message = "a stdio client message outside reverse mode (or after stdin closed) was dropped";
            return self.ctx.log(LogLevel::Warn, message.to_owned());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let messages = match Payload::parse(line) {
            Ok(Payload::Single(message)) => vec![message],
            Ok(Payload::Batch(messages)) => messages,
            Err(error) => {
                let answer = Message::Response(error.to_response());
                return self.ctx.push(Output::ClientSend(answer.to_bytes()));
            }
        };
        let session_id = match &self.stdio.session {
            Some(id) if self.sessions.contains_key(id) => id.clone(),
            _ => {
                let id = self.open_session(
                    Target::Server(ServerId::FIRST),
                    &[ServerId::FIRST],
                    SessionState::Ready,
                    Transport::Stdio,
                );
                self.stdio.session = Some(id.clone());
                id
            }
        };
        if self.ctx.config.debug {
            let text = String::from_utf8_lossy(line);
            self.ctx.log(LogLevel::Debug, format!("session {session_id} <- client: {text}"));
        }
        self.forward_from_client(now, &session_id, ReplyTo::SessionStream, messages);
    }

    /// The local client closed stdin: its session ends (and with it the upstream session),
    /// then the shell may go.
    pub(crate) fn client_closed(&mut self) {
        self.stdio.done = true;
        if let Some(session_id) = self.stdio.session.take() {
            self.end_session(&session_id, &RequestError::SessionEnded, "the local client closed stdin");
        }
        self.announce_client_done();
    }

    /// Once the local client is gone and the remote has heard the session end (its DELETE
    /// answered), the shell is told it may exit.
    pub(crate) fn announce_client_done(&mut self) {
        if self.stdio.done && !self.stdio.announced && !self.http.delivering() {
            self.stdio.announced = true;
            self.ctx.push(Output::ClientDone);
        }
    }

    /// The client's session ended for another reason (its remote session is gone): the next
    /// line opens a new one, as a client whose server restarted would see.
    pub(crate) fn stdio_session_ended(&mut self, session_id: &SessionId) {
        if self.stdio.session.as_ref() == Some(session_id) {
            self.stdio.session = None;
        }
    }
}
