//! The CCCC daemon: the only writer of every ledger in a `CCCC_HOME`.
//!
//! # Shape
//!
//! * [`run_blocking`] takes the home's exclusive lock (`daemon/ccccd.lock`), binds
//!   `daemon/ccccd.sock` (mode 0600), writes `ccccd.pid` and `ccccd.addr.json`, and serves until
//!   a `shutdown` request, SIGTERM or SIGINT; on the way out it removes the socket, pid and
//!   address files (the lock and log stay, as in the reference).
//! * [`server`]: one request line, one response line, close (IPC v1). Operations run on
//!   blocking threads against the synchronous core (`cccc_core::ops`), behind `catch_unwind`:
//!   nothing a client sends can take the daemon down.
//! * [`stream`]: `events_stream`, the one long-lived connection, fed by a per-group broadcast
//!   of events *after* they are durable, with resume by `since_event_id`/`since_ts` and lag
//!   recovery from the ledger index so a slow subscriber loses nothing.
//!
//! Invariants: only this process writes ledgers (the CLI reads them for `tail` and otherwise
//! goes through IPC); a client hears `ok` only after its events are fsynced; a stream never
//! shows an event a crash could take back.

mod im;
mod server;
mod stream;
mod tick;

use cccc_core::home::Home;
use std::fs::{File, OpenOptions};
use std::io::Read;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("ccccd: already running (pid {pid}) for {home}")]
    AlreadyRunning { pid: String, home: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Take the single-instance lock of `home`, or say who holds it.
fn take_lock(home: &Home) -> Result<File, DaemonError> {
    std::fs::create_dir_all(home.daemon_dir())?;
    let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(home.lock_path())?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            if let Ok(mut p) = File::open(home.pid_path()) {
                let _ = p.read_to_string(&mut pid);
            }
            let pid = pid.trim().to_string();
            // An empty pid file means the other daemon is still starting up.
            Err(DaemonError::AlreadyRunning { pid: if pid.is_empty() { "starting".into() } else { pid }, home: home.root().display().to_string() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Entry point of the hidden `__pty-host` subcommand that every binary embedding the daemon
/// must dispatch to (the daemon spawns its own executable as each PTY actor's host).
pub fn pty_host_main(args: &[String]) -> i32 {
    cccc_core::pty::host::main(args)
}

/// Run the daemon for `home` until a `shutdown` request, SIGTERM or SIGINT. Blocks.
pub fn run_blocking(home: Home) -> Result<(), DaemonError> {
    let lock = take_lock(&home)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ccccd").build()?;
    let res = rt.block_on(server::serve(home));
    // Blocking op threads finish what they hold before the runtime is dropped.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    drop(lock);
    res
}
