//! The PTY host process: owns one agent's pseudo-terminal and child process.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of terminal output kept for tail and attach.
const RING_BYTES: usize = 2 * 1024 * 1024;
/// How long the host stays up after the child exits, so a daemon can read the exit status.
const LINGER: Duration = Duration::from_secs(30);

/// Host arguments, as passed after `__pty-host`.
#[derive(Debug, Clone)]
pub struct HostArgs {
    pub socket: PathBuf,
    pub state: PathBuf,
    pub cwd: PathBuf,
    pub cols: u16,
    pub rows: u16,
    pub argv: Vec<String>,
}

impl HostArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--state".into(),
            self.state.display().to_string(),
            "--cwd".into(),
            self.cwd.display().to_string(),
            "--cols".into(),
            self.cols.to_string(),
            "--rows".into(),
            self.rows.to_string(),
            "--".into(),
        ];
        v.extend(self.argv.iter().cloned());
        v
    }

    pub fn parse(args: &[String]) -> Result<HostArgs, String> {
        let mut it = args.iter();
        let (mut socket, mut state, mut cwd, mut cols, mut rows) = (None, None, None, 120u16, 40u16);
        let mut argv = Vec::new();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--socket" => socket = Some(PathBuf::from(val()?)),
                "--state" => state = Some(PathBuf::from(val()?)),
                "--cwd" => cwd = Some(PathBuf::from(val()?)),
                "--cols" => cols = val()?.parse().map_err(|_| "bad --cols")?,
                "--rows" => rows = val()?.parse().map_err(|_| "bad --rows")?,
                "--" => {
                    argv = it.cloned().collect();
                    break;
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if argv.is_empty() {
            return Err("missing command after --".into());
        }
        Ok(HostArgs {
            socket: socket.ok_or("missing --socket")?,
            state: state.ok_or("missing --state")?,
            cwd: cwd.ok_or("missing --cwd")?,
            cols,
            rows,
            argv,
        })
    }
}

struct Shared {
    ring: VecDeque<u8>,
    /// Total bytes ever produced (the offset of the end of `ring`).
    total: u64,
    bracketed_paste: bool,
    last_output: Option<Instant>,
    exit: Option<Value>,
    subscribers: Vec<UnixStream>,
}

/// Entry point of `__pty-host`. Returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let a = match HostArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("__pty-host: {e}");
            return 2;
        }
    };
    match run(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("__pty-host: {e}");
            1
        }
    }
}

fn openpty(cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (0, 0);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two fds into the out-params; null name/termios are allowed.
    let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by openpty and are owned by nobody else.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    // SAFETY: fcntl on a valid fd.
    unsafe { libc::fcntl(m.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((m, s))
}

fn write_state(path: &std::path::Path, v: &Value) {
    let _ = crate::home::write_json_pretty(path, v);
}

fn run(a: HostArgs) -> std::io::Result<()> {
    let (master, slave) = openpty(a.cols, a.rows)?;
    let mut cmd = Command::new(&a.argv[0]);
    cmd.args(&a.argv[1..])
        .current_dir(&a.cwd)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    if std::env::var_os("TERM").is_none() {
        cmd.env("TERM", "xterm-256color");
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let _ = std::fs::remove_file(&a.socket);
    let listener = UnixListener::bind(&a.socket)?;
    let started_at = cccc_proto::ts::now();
    let state_doc = |exit: Option<&Value>| {
        let mut v = json!({
            "v": 1, "kind": "pty", "pid": pid, "host_pid": std::process::id(), "started_at": started_at,
            "socket": a.socket.display().to_string(), "argv": a.argv,
        });
        if let Some(e) = exit {
            v["exit"] = e.clone();
        }
        v
    };
    write_state(&a.state, &state_doc(None));

    let shared = Arc::new(Mutex::new(Shared {
        ring: VecDeque::with_capacity(64 * 1024),
        total: 0,
        bracketed_paste: false,
        last_output: None,
        exit: None,
        subscribers: Vec::new(),
    }));
    let master_file = File::from(master);
    let writer = Arc::new(Mutex::new(master_file.try_clone()?));

    // Output pump: terminal → ring buffer and attached viewers.
    {
        let shared = shared.clone();
        let mut reader = master_file;
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let mut s = shared.lock().unwrap();
                if contains(chunk, b"\x1b[?2004h") {
                    s.bracketed_paste = true;
                }
                if contains(chunk, b"\x1b[?2004l") {
                    s.bracketed_paste = false;
                }
                s.ring.extend(chunk);
                let excess = s.ring.len().saturating_sub(RING_BYTES);
                s.ring.drain(..excess);
                s.total += n as u64;
                s.last_output = Some(Instant::now());
                s.subscribers.retain_mut(|sub| sub.write_all(chunk).is_ok());
            }
        });
    }

    // Control socket.
    {
        let (shared, writer) = (shared.clone(), writer.clone());
        let child_pid = pid;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (shared, writer) = (shared.clone(), writer.clone());
                std::thread::spawn(move || serve(conn, &shared, &writer, child_pid));
            }
        });
    }

    let status = child.wait()?;
    let exit = {
        use std::os::unix::process::ExitStatusExt;
        json!({"code": status.code(), "signal": status.signal(), "at": cccc_proto::ts::now()})
    };
    write_state(&a.state, &state_doc(Some(&exit)));
    {
        let mut s = shared.lock().unwrap();
        s.exit = Some(exit);
        // Viewers see EOF.
        for sub in s.subscribers.drain(..) {
            let _ = sub.shutdown(std::net::Shutdown::Both);
        }
    }
    // Stay reachable for a while so a daemon learns the exit status, unless released.
    let deadline = Instant::now() + LINGER;
    while Instant::now() < deadline && std::fs::metadata(&a.socket).is_ok() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&a.socket);
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn serve(conn: UnixStream, shared: &Arc<Mutex<Shared>>, writer: &Arc<Mutex<File>>, child_pid: u32) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap_or_else(|_| conn.try_clone().expect("clone")));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let mut out = conn;
    let reply = |out: &mut UnixStream, v: Value| {
        let _ = out.write_all(format!("{v}\n").as_bytes());
    };
    match req.get("op").and_then(Value::as_str).unwrap_or("") {
        "status" => {
            let s = shared.lock().unwrap();
            reply(
                &mut out,
                json!({
                    "ok": true, "pid": child_pid, "host_pid": std::process::id(), "running": s.exit.is_none(),
                    "exit": s.exit, "bracketed_paste": s.bracketed_paste, "output_bytes": s.total,
                    "idle_ms": s.last_output.map(|t| t.elapsed().as_millis() as u64),
                }),
            );
        }
        "write" => {
            let data = req.get("data").and_then(Value::as_str).unwrap_or("");
            let res = writer.lock().unwrap().write_all(data.as_bytes());
            match res {
                Ok(()) => reply(&mut out, json!({"ok": true})),
                Err(e) => reply(&mut out, json!({"ok": false, "error": e.to_string()})),
            }
        }
        "tail" => {
            let max = req.get("max_bytes").and_then(Value::as_u64).unwrap_or(64 * 1024) as usize;
            let s = shared.lock().unwrap();
            let skip = s.ring.len().saturating_sub(max);
            let bytes: Vec<u8> = s.ring.iter().skip(skip).copied().collect();
            reply(&mut out, json!({"ok": true, "text": String::from_utf8_lossy(&bytes), "output_bytes": s.total}));
        }
        "attach" => {
            // Replay the buffer, then stream live output until the viewer goes away.
            let mut s = shared.lock().unwrap();
            let max = req.get("replay_bytes").and_then(Value::as_u64).unwrap_or(64 * 1024) as usize;
            let skip = s.ring.len().saturating_sub(max);
            let bytes: Vec<u8> = s.ring.iter().skip(skip).copied().collect();
            let _ = out.write_all(format!("{}\n", json!({"ok": true, "running": s.exit.is_none()})).as_bytes());
            let _ = out.write_all(&bytes);
            let _ = out.set_write_timeout(Some(Duration::from_secs(2)));
            if s.exit.is_none()
                && let Ok(c) = out.try_clone()
            {
                s.subscribers.push(c);
            }
        }
        "resize" => {
            let cols = req.get("cols").and_then(Value::as_u64).unwrap_or(120) as u16;
            let rows = req.get("rows").and_then(Value::as_u64).unwrap_or(40) as u16;
            let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            let fd = writer.lock().unwrap().as_raw_fd();
            // SAFETY: TIOCSWINSZ on the pty master fd we own.
            let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
            reply(&mut out, json!({"ok": rc == 0}));
        }
        "kill" => {
            let sig = req.get("signal").and_then(Value::as_i64).unwrap_or(libc::SIGTERM as i64) as i32;
            // The child leads its own session: signal the whole process group.
            // SAFETY: kill(2) with a pid we spawned.
            unsafe { libc::kill(-(child_pid as i32), sig) };
            reply(&mut out, json!({"ok": true}));
        }
        other => reply(&mut out, json!({"ok": false, "error": format!("unknown op {other:?}")})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_args_round_trip() {
        let a = HostArgs {
            socket: "/s".into(),
            state: "/st".into(),
            cwd: "/w".into(),
            cols: 100,
            rows: 30,
            argv: vec!["sh".into(), "-c".into(), "echo --".into()],
        };
        let b = HostArgs::parse(&a.to_args()).unwrap();
        assert_eq!(b.argv, a.argv);
        assert_eq!((b.cols, b.rows), (100, 30));
        assert!(HostArgs::parse(&["--socket".into(), "/s".into()]).is_err());
    }
}
