//! The IPC v1 listener: one request line in, one response line out, then close.

use crate::DaemonError;
use crate::stream::{Bus, events_stream};
use cccc_core::home::Home;
use cccc_core::store::{Store, lock};
use cccc_proto::{ErrorBody, Request, Response};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// A request line longer than this is refused (as the reference's 2 MB cap).
pub const MAX_REQUEST_BYTES: usize = 2_000_000;
/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// State shared by every connection.
pub struct Shared {
    pub store: Arc<Store>,
    pub bus: Arc<Bus>,
    pub shutdown: watch::Sender<bool>,
    pub started: std::time::Instant,
    pub heartbeat: Duration,
    pub im: std::sync::Mutex<crate::im::Supervisor>,
    /// Wakes the tick early: a message for a PTY actor should not wait for the next second.
    pub kick: tokio::sync::Notify,
    /// Whether any group has a live PTY actor (kept by the tick): no kicks are needed otherwise.
    pub pty_live: std::sync::atomic::AtomicBool,
    active: AtomicUsize,
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    cccc_core::home::atomic_write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

pub async fn serve(home: Home) -> Result<(), DaemonError> {
    let sock = home.sock_path();
    // We hold the lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(&sock);
    // sun_path holds 108 bytes including the terminating NUL.
    let len = sock.as_os_str().len();
    if len > 107 {
        return Err(DaemonError::Io(std::io::Error::other(format!(
            "socket path too long ({len} bytes, the limit is 107): {}; use a shorter CCCC_HOME",
            sock.display()
        ))));
    }
    let listener = UnixListener::bind(&sock)?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    let pid = std::process::id();
    write_private(&home.pid_path(), format!("{pid}\n").as_bytes())?;
    let addr = json!({
        "v": 1, "transport": "unix", "path": sock.display().to_string(), "host": "", "port": 0,
        "pid": pid, "version": cccc_proto::COMPAT_VERSION, "ts": cccc_proto::ts::now(),
    });
    write_private(&home.addr_path(), format!("{}\n", cccc_proto::json::to_pretty_string(&addr)).as_bytes())?;
    tracing::info!(pid, socket = %sock.display(), home = %home.root().display(), "ccccd listening");

    if let Ok(exe) = std::env::current_exe() {
        cccc_core::pty::client::set_host_exe(exe);
    }
    let bus = Arc::new(Bus::default());
    let store = Arc::new(Store::new(home.clone(), Some(bus.publish_factory())));
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let heartbeat = std::env::var("CCCC_STREAM_HEARTBEAT_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(30.0);
    let shared = Arc::new(Shared {
        store: store.clone(),
        bus,
        shutdown,
        started: std::time::Instant::now(),
        heartbeat: Duration::from_secs_f64(heartbeat),
        im: Default::default(),
        kick: tokio::sync::Notify::new(),
        pty_live: std::sync::atomic::AtomicBool::new(false),
        active: AtomicUsize::new(0),
    });

    // Open every registered group in the background: start-up does not wait for history, and
    // groups that were running get their headless actors back.
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let ids: Vec<String> = cccc_core::store::lock(&store.registry).groups().keys().cloned().collect();
            for id in ids {
                if let Err(e) = store.slot(&id) {
                    tracing::warn!(group = %id, error = %e, "group not loaded");
                }
            }
        });
    }

    tokio::spawn(crate::tick::run(shared.clone()));

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, _)) => {
                    let shared = shared.clone();
                    shared.active.fetch_add(1, Ordering::SeqCst);
                    let rt = tokio::runtime::Handle::current();
                    // One blocking thread serves the whole request (read, apply, answer): every
                    // hop between threads costs context switches on a 2-core machine.
                    tokio::task::spawn_blocking(move || {
                        match conn.into_std() {
                            Ok(std_conn) => handle_blocking(shared.clone(), std_conn, &rt),
                            Err(e) => tracing::warn!(error = %e, "cannot take over connection"),
                        }
                        shared.active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown_rx.changed() => break,
            _ = sigterm.recv() => { tracing::info!("SIGTERM"); break }
            _ = sigint.recv() => { tracing::info!("SIGINT"); break }
        }
    }
    let _ = shared.shutdown.send(true);
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    // A clean shutdown stops the agents' processes and the bridges, as the reference does.
    {
        let store = store.clone();
        let shared2 = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in store.open_ids() {
                let _ = store.with_group(&id, |g| {
                    cccc_core::runtime::shutdown_sessions(g);
                    Ok(())
                });
            }
            lock(&shared2.im).stop_all(store.home.root());
        })
        .await;
    }
    // Let requests in flight finish (streams end on the shutdown signal).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shared.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_file(home.addr_path());
    let _ = std::fs::remove_file(home.pid_path());
    tracing::info!("ccccd stopped");
    Ok(())
}

fn invalid(message: &str, details: Value) -> Response {
    Response::err(ErrorBody::new("invalid_request", format!("invalid request: {message}")).with_details(details))
}

pub(crate) async fn respond(w: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = w.write_all(&resp.to_line()).await;
        let _ = w.shutdown().await;
    })
    .await;
}

/// Read one request line from a blocking stream. `Err` carries the response to send instead.
fn read_request_blocking(reader: &mut std::io::BufReader<std::os::unix::net::UnixStream>) -> Result<Option<Vec<u8>>, Response> {
    use std::io::{BufRead, Read};
    let mut buf = Vec::with_capacity(1024);
    let n = match reader.by_ref().take(MAX_REQUEST_BYTES as u64 + 1).read_until(b'\n', &mut buf) {
        Ok(n) => n,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            return Err(invalid("request line not received in time", json!({"timeout_seconds": READ_TIMEOUT.as_secs()})));
        }
        Err(e) => return Err(invalid(&format!("cannot read request: {e}"), json!({}))),
    };
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_REQUEST_BYTES && buf.last() != Some(&b'\n') {
        return Err(invalid(&format!("request line too large: over {MAX_REQUEST_BYTES} bytes"), json!({"limit_bytes": MAX_REQUEST_BYTES})));
    }
    Ok(Some(buf))
}

fn respond_blocking(mut w: &std::os::unix::net::UnixStream, resp: &Response) {
    use std::io::Write;
    let _ = w.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = w.write_all(&resp.to_line());
    let _ = w.shutdown(std::net::Shutdown::Write);
}

/// The whole life of a one-shot request on one blocking thread; streaming ops go back to the
/// async runtime.
fn handle_blocking(shared: Arc<Shared>, conn: std::os::unix::net::UnixStream, rt: &tokio::runtime::Handle) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(read_half) = conn.try_clone() else { return };
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, read_half);
    let line = match read_request_blocking(&mut reader) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(resp) => return respond_blocking(&conn, &resp),
    };
    let req = match Request::parse(&line) {
        Ok(r) => r,
        Err(msg) => {
            tracing::debug!(error = %msg, "invalid request");
            return respond_blocking(&conn, &invalid(&msg, json!({"error": msg})));
        }
    };
    match req.op.as_str() {
        "events_stream" | "term_attach" => {
            // Long-lived: continue on the async runtime.
            drop(reader);
            let _ = conn.set_read_timeout(None);
            if conn.set_nonblocking(true).is_err() {
                return;
            }
            let _guard = rt.enter();
            let Ok(tconn) = UnixStream::from_std(conn) else { return };
            let (r, w) = tconn.into_split();
            let reader = BufReader::with_capacity(64 * 1024, r);
            let op = req.op.clone();
            let sh = shared.clone();
            shared.active.fetch_add(1, Ordering::SeqCst);
            rt.spawn(async move {
                if op == "events_stream" {
                    events_stream(sh.clone(), req.args, reader, w).await;
                } else {
                    crate::tick::term_attach(sh.clone(), req.args, reader, w).await;
                }
                sh.active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        "ping" => respond_blocking(&conn, &Response::ok(ping_result(&shared))),
        "shutdown" => {
            respond_blocking(&conn, &Response::ok(json!({"message": "shutting down"})));
            let _ = shared.shutdown.send(true);
        }
        _ => {
            let resp = apply(&shared.store, &req);
            respond_blocking(&conn, &resp);
            // Ops that can give a PTY actor something to read, or let it read again.
            if resp.ok && (shared.pty_live.load(Ordering::Relaxed) || req.op.starts_with("actor_")) && matches!(req.op.as_str(), "send" | "reply" | "system_notify" | "group_set_state" | "group_start" | "actor_start" | "actor_restart" | "actor_add") {
                shared.kick.notify_one();
            }
        }
    }
}

fn ping_result(shared: &Shared) -> Value {
    json!({
        "version": cccc_proto::COMPAT_VERSION, "pid": std::process::id(), "ts": cccc_proto::ts::now(),
        "ipc_v": cccc_proto::IPC_V, "capabilities": {"events_stream": true, "remote_access": false},
        "server": format!("cccc-rs/{}", env!("CARGO_PKG_VERSION")),
        "uptime_seconds": shared.started.elapsed().as_secs(),
    })
}

/// Apply a one-shot op; a panic inside it becomes `internal_error` for this request only.
fn apply(store: &Store, req: &Request) -> Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cccc_core::ops::dispatch(store, &req.op, &req.args))) {
        Ok(Some(Ok(v))) => Response::ok(v),
        Ok(Some(Err(e))) => Response::err(e),
        Ok(None) => Response::err(ErrorBody::new("unknown_op", format!("unknown op: {}", req.op))),
        Err(panic) => {
            let msg = panic_message(&panic);
            tracing::error!(op = %req.op, panic = %msg, "operation panicked");
            Response::err(ErrorBody::new("internal_error", format!("internal error in {}: {msg}", req.op)))
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}
