//! Client for CCCC IPC v1.
//!
//! Discovery follows the reference: `$CCCC_HOME/daemon/ccccd.addr.json` (`transport` unix with
//! a `path`, or tcp with `host`/`port`), falling back to `$CCCC_HOME/daemon/ccccd.sock`.
//! Every call opens a connection, writes one request line and reads one response line.
//! Streams (`events_stream`) keep the connection and yield one JSON value per line.
//!
//! The client is blocking on purpose: the CLI makes one call and exits, and a blocking client
//! has no runtime to start, which keeps `cccc send` fast. Async users wrap it in a blocking task.

use cccc_proto::{ErrorBody, Request, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest response line accepted (as the reference client).
pub const MAX_RESPONSE_BYTES: usize = 4_000_000;

/// Where the daemon listens.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String, u16),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
        }
    }
}

impl Endpoint {
    /// Discover the endpoint of the daemon of `home`.
    pub fn discover(home: &Path) -> Endpoint {
        let daemon = home.join("daemon");
        if let Ok(bytes) = std::fs::read(daemon.join("ccccd.addr.json"))
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        {
            let transport = v.get("transport").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            let port = v.get("port").and_then(Value::as_u64).unwrap_or(0);
            if transport == "tcp" && port > 0 {
                let host = v.get("host").and_then(Value::as_str).unwrap_or("");
                let host = if host.is_empty() || host == "localhost" || host == "0.0.0.0" || host.contains(':') { "127.0.0.1" } else { host };
                return Endpoint::Tcp(host.to_string(), port as u16);
            }
            if transport == "unix"
                && let Some(p) = v.get("path").and_then(Value::as_str).filter(|p| !p.is_empty())
            {
                return Endpoint::Unix(PathBuf::from(p));
            }
        }
        Endpoint::Unix(daemon.join("ccccd.sock"))
    }
}

/// Why a call did not produce a daemon response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached, or went away before answering.
    #[error("daemon unavailable ({phase}): {reason} [{endpoint}]")]
    Unavailable { phase: &'static str, reason: String, endpoint: String },
    /// The daemon answered `ok:false`.
    #[error("{0}")]
    Daemon(ErrorBody),
}

impl ClientError {
    /// The error as an IPC error body (`daemon_unavailable` for transport failures, as the
    /// reference client synthesizes).
    pub fn to_body(&self, op: &str) -> ErrorBody {
        match self {
            ClientError::Daemon(b) => b.clone(),
            ClientError::Unavailable { phase, reason, endpoint } => ErrorBody::new("daemon_unavailable", format!("daemon unavailable: {reason}"))
                .with_details(serde_json::json!({"phase": phase, "reason": reason, "op": op, "endpoint": endpoint})),
        }
    }
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}
impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

impl Conn {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
        }
    }
}

/// A client bound to one endpoint.
#[derive(Clone, Debug)]
pub struct Client {
    pub endpoint: Endpoint,
    pub timeout: Duration,
}

impl Client {
    /// A client for the daemon of the home at `home`.
    pub fn for_home(home: &Path) -> Client {
        Client { endpoint: Endpoint::discover(home), timeout: Duration::from_secs(60) }
    }

    pub fn with_timeout(mut self, t: Duration) -> Client {
        self.timeout = t;
        self
    }

    fn unavailable(&self, phase: &'static str, reason: impl ToString) -> ClientError {
        ClientError::Unavailable { phase, reason: reason.to_string(), endpoint: self.endpoint.to_string() }
    }

    fn connect(&self) -> Result<Conn, ClientError> {
        let conn = match &self.endpoint {
            Endpoint::Unix(p) => Conn::Unix(UnixStream::connect(p).map_err(|e| self.unavailable("connect", e))?),
            Endpoint::Tcp(h, port) => {
                let addr = format!("{h}:{port}");
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr).ok().and_then(|mut a| a.next()).ok_or_else(|| self.unavailable("connect", "bad address"))?;
                Conn::Tcp(TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| self.unavailable("connect", e))?)
            }
        };
        conn.set_read_timeout(Some(self.timeout)).map_err(|e| self.unavailable("connect", e))?;
        conn.set_write_timeout(Some(self.timeout)).map_err(|e| self.unavailable("connect", e))?;
        Ok(conn)
    }

    fn send_request(&self, op: &str, args: Value) -> Result<BufReader<Conn>, ClientError> {
        let mut conn = self.connect()?;
        let mut line = cccc_proto::json::to_py_string(&Request::new(op, args).to_value()).into_bytes();
        line.push(b'\n');
        conn.write_all(&line).map_err(|e| self.unavailable("send", e))?;
        Ok(BufReader::with_capacity(64 * 1024, conn))
    }

    fn read_line(&self, reader: &mut BufReader<Conn>) -> Result<Option<Vec<u8>>, ClientError> {
        let mut buf = Vec::with_capacity(1024);
        let n = reader.by_ref().take(MAX_RESPONSE_BYTES as u64 + 1).read_until(b'\n', &mut buf).map_err(|e| self.unavailable("read", e))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(self.unavailable("read", "response line too large"));
        }
        Ok(Some(buf))
    }

    /// Send one request and return the daemon's response envelope.
    pub fn call_raw(&self, op: &str, args: Value) -> Result<Response, ClientError> {
        let mut reader = self.send_request(op, args)?;
        let line = self.read_line(&mut reader)?.ok_or_else(|| self.unavailable("read", "connection closed without a response"))?;
        serde_json::from_slice(&line).map_err(|e| self.unavailable("read", format!("invalid daemon response (not json): {e}")))
    }

    /// Send one request; `Ok(result)` or the daemon's error.
    pub fn call(&self, op: &str, args: Value) -> Result<Value, ClientError> {
        self.call_raw(op, args)?.into_result().map_err(ClientError::Daemon)
    }

    /// Open a stream op (`events_stream`): returns the handshake result and the item reader.
    /// The read timeout is removed after the handshake: items may be far apart.
    pub fn stream(&self, op: &str, args: Value) -> Result<(Value, Stream), ClientError> {
        let mut reader = self.send_request(op, args)?;
        let line = self.read_line(&mut reader)?.ok_or_else(|| self.unavailable("read", "connection closed before the handshake"))?;
        let resp: Response = serde_json::from_slice(&line).map_err(|e| self.unavailable("read", format!("invalid handshake: {e}")))?;
        let result = resp.into_result().map_err(ClientError::Daemon)?;
        reader.get_ref().set_read_timeout(None).map_err(|e| self.unavailable("read", e))?;
        Ok((result, Stream { reader, client: self.clone() }))
    }
}

/// Items of a stream, one JSON value per line.
pub struct Stream {
    reader: BufReader<Conn>,
    client: Client,
}

impl Stream {
    /// Set a read timeout for [`Stream::next_item`] (None = block).
    pub fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(t)
    }

    /// The next item; `Ok(None)` when the daemon closed the stream. Blank and non-JSON lines are
    /// skipped, as the reference client does.
    pub fn next_item(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            let Some(line) = self.client.read_line(&mut self.reader)? else { return Ok(None) };
            if let Ok(v) = serde_json::from_slice::<Value>(&line)
                && v.is_object()
            {
                return Ok(Some(v));
            }
        }
    }
}

impl Iterator for Stream {
    type Item = Value;
    fn next(&mut self) -> Option<Value> {
        self.next_item().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_prefers_addr_file_and_falls_back_to_socket() {
        let dir = std::env::temp_dir().join(format!("cccc-ipc-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("daemon")).unwrap();
        assert_eq!(Endpoint::discover(&dir), Endpoint::Unix(dir.join("daemon/ccccd.sock")));
        std::fs::write(dir.join("daemon/ccccd.addr.json"), r#"{"v":1,"transport":"tcp","host":"0.0.0.0","port":9765}"#).unwrap();
        assert_eq!(Endpoint::discover(&dir), Endpoint::Tcp("127.0.0.1".into(), 9765));
        std::fs::write(dir.join("daemon/ccccd.addr.json"), r#"{"v":1,"transport":"unix","path":"/x/y.sock"}"#).unwrap();
        assert_eq!(Endpoint::discover(&dir), Endpoint::Unix("/x/y.sock".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
