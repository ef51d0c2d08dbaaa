//! The daemon's side of a PTY host: spawning it and talking to its socket.

use super::host::HostArgs;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static HOST_EXE: OnceLock<PathBuf> = OnceLock::new();
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Set the executable that runs `__pty-host` (the daemon's own binary). Without it, PTY actors
/// cannot start (a library user that never runs a daemon has no host to spawn).
pub fn set_host_exe(path: PathBuf) {
    let _ = HOST_EXE.set(path);
}

/// The daemon's own executable (also runs `__im-bridge`), once set.
pub fn host_exe() -> Option<PathBuf> {
    HOST_EXE.get().cloned()
}

/// Reap hosts that exited (they are our children until then).
pub fn reap() {
    let mut kids = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    kids.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
}

/// Where a PTY actor's host keeps its files.
#[derive(Clone, Debug)]
pub struct Paths {
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// Unix socket paths are limited to ~108 bytes; a long home gets a hashed socket in /tmp
/// (its path is recorded in the state file, which is what clients read).
pub fn paths(group_dir: &Path, actor: &str) -> Paths {
    let dir = group_dir.join("state").join("runners").join("pty");
    let mut socket = dir.join(format!("{actor}.sock"));
    if socket.as_os_str().len() > 100 {
        let h: String = Sha256::digest(socket.as_os_str().as_encoded_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        socket = std::env::temp_dir().join(format!("cccc-pty-{h}.sock"));
    }
    Paths { state: dir.join(format!("{actor}.json")), socket, log: dir.join(format!("{actor}.host.log")) }
}

/// One request to a host; `None` when the host is not reachable.
pub fn call(p: &Paths, req: Value, timeout: Duration) -> Option<Value> {
    let mut s = UnixStream::connect(&p.socket).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{req}\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

pub fn status(p: &Paths) -> Option<Value> {
    call(p, json!({"op": "status"}), Duration::from_secs(2))
}

/// The runner state file (`pid`, `started_at`, and `exit` once the child ended).
pub fn state(p: &Paths) -> Option<Value> {
    crate::home::read_json(&p.state).ok()
}

pub fn write(p: &Paths, data: &str) -> Result<(), String> {
    match call(p, json!({"op": "write", "data": data}), Duration::from_secs(5)) {
        Some(v) if v["ok"] == json!(true) => Ok(()),
        Some(v) => Err(v["error"].as_str().unwrap_or("write failed").to_string()),
        None => Err("terminal host not reachable".into()),
    }
}

pub fn tail(p: &Paths, max_bytes: usize) -> Option<String> {
    call(p, json!({"op": "tail", "max_bytes": max_bytes}), Duration::from_secs(2)).and_then(|v| v["text"].as_str().map(str::to_string))
}

/// Tell the host its exit status was seen: it removes its socket and exits.
pub fn release(p: &Paths) {
    let _ = std::fs::remove_file(&p.socket);
}

/// Stop the child (SIGTERM, then SIGKILL after `grace`) and release the host.
pub fn stop(p: &Paths, grace: Duration) {
    if status(p).is_some_and(|s| s["running"] == json!(true)) {
        call(p, json!({"op": "kill", "signal": libc::SIGTERM}), Duration::from_secs(2));
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if status(p).is_none_or(|s| s["running"] != json!(true)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if status(p).is_some_and(|s| s["running"] == json!(true)) {
            call(p, json!({"op": "kill", "signal": libc::SIGKILL}), Duration::from_secs(2));
        }
    }
    release(p);
}

/// Start a host running `argv` in `cwd` with `env` added. Returns once its socket answers.
pub fn spawn(p: &Paths, cwd: &Path, argv: &[String], env: &[(String, String)]) -> Result<(), String> {
    let exe = HOST_EXE.get().ok_or("PTY actors need a running daemon (no terminal host executable set)")?;
    if let Some(dir) = p.state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&p.state);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&p.log).map_err(|e| format!("cannot open {}: {e}", p.log.display()))?;
    let args = HostArgs { socket: p.socket.clone(), state: p.state.clone(), cwd: cwd.to_path_buf(), cols: 120, rows: 40, argv: argv.to_vec() };
    let mut cmd = Command::new(exe);
    cmd.arg("__pty-host").args(args.to_args()).envs(env.iter().cloned()).stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
    // SAFETY: setsid is async-signal-safe; the host leaves the daemon's session so it outlives it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start terminal host: {e}"))?;
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(s) = status(p) {
            if s["running"] == json!(true) {
                return Ok(());
            }
            let exit = s["exit"].clone();
            release(p);
            return Err(format!("command exited at once ({exit}): {}", argv.join(" ")));
        }
        if let Ok(text) = std::fs::read_to_string(&p.log)
            && text.contains("__pty-host:")
        {
            return Err(text.lines().rev().find(|l| l.contains("__pty-host:")).unwrap_or("").to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("terminal host did not come up within 10 s".into())
}
