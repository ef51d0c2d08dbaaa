//! Finding, starting and stopping the background daemon.
//!
//! The background daemon is this same binary run as `cccc daemon run` in its own session, with
//! stdout and stderr appended to `$CCCC_HOME/daemon/ccccd.log` and its cwd in CCCC_HOME, as the
//! reference starts `ccccd`. Whether it is up is decided by `ping` only: files on disk can be
//! stale after a crash, an answer cannot.

use cccc_core::home::Home;
use cccc_ipc::{Client, ClientError};
use cccc_proto::Response;
use serde_json::{Value, json};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a liveness `ping` may take (the reference CLI uses 1 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `start` waits for a new daemon to answer, and `stop` for it to exit.
const WAIT: Duration = Duration::from_secs(10);
const START_POLL: Duration = Duration::from_millis(20);
const STOP_POLL: Duration = Duration::from_millis(50);
/// Lines of the log shown when a start fails.
const LOG_TAIL_LINES: usize = 20;

/// `ping` with a short timeout. The endpoint is discovered afresh each time: a daemon that
/// just started has only now written its address file.
pub fn ping(home: &Home) -> Result<Response, ClientError> {
    Client::for_home(home.root()).with_timeout(PING_TIMEOUT).call_raw("ping", json!({}))
}

/// The `ping` result if the daemon answers.
pub fn running(home: &Home) -> Option<Value> {
    ping(home).ok().filter(|r| r.ok).map(|r| r.result)
}

/// Why a start did not produce an answering daemon.
pub struct StartFailure {
    pub reason: String,
    pub log_path: PathBuf,
    /// What the new daemon wrote to the log (its last lines).
    pub log_tail: Vec<String>,
}

impl StartFailure {
    /// `ccccd: failed to start`, the reason and the log's last lines, on stderr.
    pub fn report(&self) {
        eprintln!("ccccd: failed to start: {}", self.reason);
        if self.log_tail.is_empty() {
            eprintln!("(nothing new in {})", self.log_path.display());
        } else {
            eprintln!("--- last lines of {} ---", self.log_path.display());
            for l in &self.log_tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Make sure a daemon answers: return its `ping` envelope, spawning one if none answers.
pub fn start(home: &Home) -> Result<Response, StartFailure> {
    if let Ok(r) = ping(home)
        && r.ok
    {
        return Ok(r);
    }
    let log_path = home.log_path();
    let fail = |reason: String, from: u64| StartFailure { reason, log_tail: log_tail_since(&log_path, from), log_path: log_path.clone() };
    if let Err(e) = fs::create_dir_all(home.daemon_dir()) {
        return Err(fail(format!("cannot create {}: {e}", home.daemon_dir().display()), u64::MAX));
    }
    let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut child = match spawn(home) {
        Ok(c) => c,
        Err(e) => return Err(fail(format!("cannot spawn the daemon: {e}"), log_start)),
    };
    let deadline = Instant::now() + WAIT;
    // After our child exits (another daemon won a start race, or it failed), give a winner a
    // moment to come up before reporting failure.
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    loop {
        if let Ok(r) = ping(home)
            && r.ok
        {
            return Ok(r);
        }
        if exited.is_none()
            && let Ok(Some(status)) = child.try_wait()
        {
            exited = Some((status, Instant::now()));
        }
        let now = Instant::now();
        if let Some((status, at)) = exited
            && now.duration_since(at) > Duration::from_secs(1)
        {
            return Err(fail(format!("the daemon exited ({status})"), log_start));
        }
        if now >= deadline {
            return Err(fail(format!("no answer to ping within {} s", WAIT.as_secs()), log_start));
        }
        std::thread::sleep(START_POLL);
    }
}

/// Spawn `<this exe> daemon run` detached: new session, stdin closed, output to the log.
fn spawn(home: &Home) -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let log = OpenOptions::new().create(true).append(true).open(home.log_path())?;
    let mut cmd = Command::new(exe);
    cmd.args(["daemon", "run"])
        // Absolute, so the child resolves the same home from its own cwd.
        .env("CCCC_HOME", home.root())
        // An agent's `cccc send` may be what starts the daemon; the daemon is nobody's actor.
        .env_remove("CCCC_ACTOR_ID")
        .env_remove("CCCC_GROUP_ID")
        .current_dir(home.root())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // A new session: the daemon outlives this terminal and ignores its Ctrl-C.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The last lines the log gained after byte offset `from`.
fn log_tail_since(path: &PathBuf, from: u64) -> Vec<String> {
    let Ok(mut f) = fs::File::open(path) else { return Vec::new() };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].iter().map(|l| l.to_string()).collect()
}

/// What `stop` achieved.
pub enum Stopped {
    /// Nothing answered `ping`.
    NotRunning,
    /// The daemon accepted `shutdown` and exited; its answer.
    Exited(Response),
    /// It accepted `shutdown` but was still alive when we gave up waiting.
    StillRunning(Response, i64),
}

/// Ask the daemon to shut down and wait until its process has exited (so its lock is free and
/// a new `start` works right away).
pub fn stop(home: &Home) -> Result<Stopped, ClientError> {
    let pid = match ping(home) {
        Ok(r) if r.ok => r.result.get("pid").and_then(Value::as_i64).unwrap_or(0),
        _ => return Ok(Stopped::NotRunning),
    };
    let resp = Client::for_home(home.root()).with_timeout(Duration::from_secs(10)).call_raw("shutdown", json!({}))?;
    if !resp.ok {
        return Ok(Stopped::Exited(resp));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let gone = if pid > 0 { !process_alive(pid) } else { !home.pid_path().exists() && !home.sock_path().exists() };
        if gone {
            return Ok(Stopped::Exited(resp));
        }
        if Instant::now() >= deadline {
            return Ok(Stopped::StillRunning(resp, pid));
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// Is `pid` a live process? A zombie (exited, not yet reaped by whoever spawned it) is not.
fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) != Some('Z'),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id() as i64));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i64;
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn log_tail_only_shows_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ccccd.log");
        fs::write(&p, "old run\n").unwrap();
        let from = fs::metadata(&p).unwrap().len();
        let mut text = String::from("old run\n");
        for i in 0..30 {
            text.push_str(&format!("line {i}\n"));
        }
        fs::write(&p, &text).unwrap();
        let tail = log_tail_since(&p, from);
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(tail.first().map(String::as_str), Some("line 10"));
        assert_eq!(tail.last().map(String::as_str), Some("line 29"));
        assert!(log_tail_since(&p, u64::MAX).is_empty());
    }
}
