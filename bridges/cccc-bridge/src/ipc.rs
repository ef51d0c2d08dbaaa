//! An async IPC v1 client for bridge processes, and the [`CoreLink`] of one group over it.
//!
//! `cccc-ipc` is blocking on purpose (the CLI makes one call and exits). A bridge keeps one
//! `events_stream` per chat open for hours and must be able to drop it at any moment (stop,
//! revoke), which a blocked reader thread cannot do; so this module speaks the same newline
//! JSON over tokio sockets. Endpoint discovery is `cccc-ipc`'s.

use crate::{AckOutcome, BoxFuture, CoreError, CoreLink, CoreMessage, EventFeed, EventId};
use cccc_proto::{Request, Response};
use serde_json::{Value, json};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Largest response line accepted (as `cccc-ipc`).
const MAX_LINE: usize = 4_000_000;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The kinds a bridge follows: what it mirrors and the acks that flip its buttons.
pub const BRIDGE_KINDS: &[&str] = &["chat.message", "system.notify", "chat.ack"];

/// The daemon of one `CCCC_HOME`, reached over IPC v1.
#[derive(Clone, Debug)]
pub struct Daemon {
    endpoint: cccc_ipc::Endpoint,
    /// Bound on connecting and on waiting for a one-shot answer.
    pub timeout: Duration,
}

fn unavailable(phase: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError { code: "daemon_unavailable".into(), message: format!("daemon unavailable ({phase}): {e}") }
}

impl Daemon {
    pub fn for_home(home: &Path) -> Daemon {
        Daemon { endpoint: cccc_ipc::Endpoint::discover(home), timeout: Duration::from_secs(30) }
    }

    async fn connect(&self) -> Result<Pin<Box<dyn Io>>, CoreError> {
        let fut = async {
            Ok::<Pin<Box<dyn Io>>, std::io::Error>(match &self.endpoint {
                cccc_ipc::Endpoint::Unix(p) => Box::pin(tokio::net::UnixStream::connect(p).await?),
                cccc_ipc::Endpoint::Tcp(h, port) => Box::pin(tokio::net::TcpStream::connect((h.as_str(), *port)).await?),
            })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unavailable("connect", e)),
            Err(_) => Err(unavailable("connect", "timed out")),
        }
    }

    async fn request(&self, op: &str, args: Value) -> Result<BufReader<Pin<Box<dyn Io>>>, CoreError> {
        let mut conn = self.connect().await?;
        let mut line = cccc_proto::json::to_py_string(&Request::new(op, args).to_value()).into_bytes();
        line.push(b'\n');
        conn.write_all(&line).await.map_err(|e| unavailable("send", e))?;
        Ok(BufReader::with_capacity(64 * 1024, conn))
    }

    /// One request, one response: the result or the daemon's error.
    pub async fn call(&self, op: &str, args: Value) -> Result<Value, CoreError> {
        let mut reader = self.request(op, args).await?;
        let line = match tokio::time::timeout(self.timeout, read_line(&mut reader)).await {
            Ok(r) => r?.ok_or_else(|| unavailable("read", "connection closed without a response"))?,
            Err(_) => return Err(unavailable("read", "timed out")),
        };
        parse_response(&line)
    }

    /// Open `events_stream` for `group_id` as `user`, after `after` (everything durable when
    /// `None`), limited to [`BRIDGE_KINDS`].
    pub async fn events(&self, group_id: &str, after: Option<&str>) -> Result<Events, CoreError> {
        let mut args = json!({"group_id": group_id, "by": "user", "kinds": BRIDGE_KINDS});
        match after {
            Some(id) => args["since_event_id"] = json!(id),
            // The stream replays only with a resume point; the epoch means "from the start".
            None => args["since_ts"] = json!("1970-01-01T00:00:00Z"),
        }
        let mut reader = self.request("events_stream", args).await?;
        let line = match tokio::time::timeout(self.timeout, read_line(&mut reader)).await {
            Ok(r) => r?.ok_or_else(|| unavailable("read", "stream closed before the handshake"))?,
            Err(_) => return Err(unavailable("read", "handshake timed out")),
        };
        parse_response(&line)?;
        Ok(Events { reader })
    }
}

async fn read_line(reader: &mut BufReader<Pin<Box<dyn Io>>>) -> Result<Option<Vec<u8>>, CoreError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let chunk = reader.fill_buf().await.map_err(|e| unavailable("read", e))?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() { None } else { Some(buf) });
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&chunk[..i]);
                reader.consume(i + 1);
                return Ok(Some(buf));
            }
            None => {
                let n = chunk.len();
                buf.extend_from_slice(chunk);
                reader.consume(n);
                if buf.len() > MAX_LINE {
                    return Err(unavailable("read", "response line too large"));
                }
            }
        }
    }
}

fn parse_response(line: &[u8]) -> Result<Value, CoreError> {
    let resp: Response = serde_json::from_slice(line).map_err(|e| unavailable("read", format!("invalid daemon response: {e}")))?;
    resp.into_result().map_err(|b| CoreError { code: b.code, message: b.message })
}

/// The items of one `events_stream` (heartbeats are swallowed). Dropping it closes the
/// connection, which ends the daemon's side.
pub struct Events {
    reader: BufReader<Pin<Box<dyn Io>>>,
}

impl Events {
    /// The next event; `Ok(None)` when the daemon closed the stream.
    pub async fn next_event(&mut self) -> Result<Option<cccc_proto::Event>, CoreError> {
        loop {
            let Some(line) = read_line(&mut self.reader).await? else { return Ok(None) };
            let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
            if v.get("t").and_then(Value::as_str) != Some("event") {
                continue;
            }
            if let Some(ev) = v.get("event").cloned().and_then(|e| serde_json::from_value::<cccc_proto::Event>(e).ok()) {
                return Ok(Some(ev));
            }
        }
    }
}

impl EventFeed for Events {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<cccc_proto::Event>, CoreError>> {
        Box::pin(self.next_event())
    }
}

/// The [`CoreLink`] of one group: the ops a bridge calls, with `by: "user"`.
#[derive(Clone, Debug)]
pub struct GroupLink {
    pub daemon: Arc<Daemon>,
    pub group_id: String,
}

impl GroupLink {
    fn message_args(&self, msg: &CoreMessage) -> Value {
        let mut a = json!({
            "group_id": self.group_id,
            "text": msg.text,
            "by": "user",
            "to": msg.to,
            "client_id": msg.client_id,
            "source_platform": msg.source_platform,
            "source_user_id": msg.source_user_id,
            "source_user_name": msg.source_user_name,
        });
        if !msg.attachments.is_empty() {
            a["attachments"] = serde_json::to_value(&msg.attachments).unwrap_or(Value::Null);
        }
        a
    }
}

fn event_id_of(v: &Value) -> EventId {
    v.get("event").and_then(|e| e.get("id")).and_then(Value::as_str).unwrap_or("").to_string()
}

impl CoreLink for GroupLink {
    fn send(&self, msg: CoreMessage) -> BoxFuture<'_, Result<EventId, CoreError>> {
        Box::pin(async move {
            let args = self.message_args(&msg);
            self.daemon.call("send", args).await.map(|v| event_id_of(&v))
        })
    }

    fn reply(&self, reply_to: EventId, msg: CoreMessage) -> BoxFuture<'_, Result<EventId, CoreError>> {
        Box::pin(async move {
            let mut args = self.message_args(&msg);
            args["reply_to"] = json!(reply_to);
            if msg.to.is_empty() {
                // Let the daemon default the recipients to the original sender.
                args.as_object_mut().map(|m| m.remove("to"));
            }
            self.daemon.call("reply", args).await.map(|v| event_id_of(&v))
        })
    }

    fn ack(&self, event_id: EventId) -> BoxFuture<'_, Result<AckOutcome, CoreError>> {
        Box::pin(async move {
            let v = self.daemon.call("chat_ack", json!({"group_id": self.group_id, "actor_id": "user", "event_id": event_id, "by": "user"})).await?;
            Ok(if v.get("already").and_then(Value::as_bool).unwrap_or(false) { AckOutcome::AlreadyAcked } else { AckOutcome::Acked })
        })
    }

    fn subscribe(&self, after: Option<EventId>) -> BoxFuture<'_, Result<Box<dyn EventFeed>, CoreError>> {
        Box::pin(async move {
            let ev = self.daemon.events(&self.group_id, after.as_deref()).await?;
            Ok(Box::new(ev) as Box<dyn EventFeed>)
        })
    }

    fn call<'a>(&'a self, op: &'a str, mut args: Value) -> BoxFuture<'a, Result<Value, CoreError>> {
        Box::pin(async move {
            if let Some(m) = args.as_object_mut() {
                m.insert("group_id".into(), json!(self.group_id));
            }
            self.daemon.call(op, args).await
        })
    }
}
