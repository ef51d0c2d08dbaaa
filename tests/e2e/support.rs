//! Test helpers: the real `cccc` binary as the daemon, on a real unix socket, in a temp home.

#![allow(dead_code)]

use cccc_ipc::Client;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `cccc` binary under test.
pub fn cccc_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cccc")
}

/// A running daemon (`cccc` with no arguments, the README's run command) on a temp home.
pub struct Daemon {
    pub home: PathBuf,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A fresh home and a daemon on it.
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new().prefix("cccc-e2e-").tempdir().unwrap();
        let home = dir.path().join("home");
        let mut d = Daemon::start_in(&home);
        d._dir = Some(dir);
        d
    }

    /// A daemon on an existing home directory (kept when the daemon goes).
    pub fn start_in(home: &Path) -> Daemon {
        Daemon::start_with_env(home, &[])
    }

    pub fn start_with_env(home: &Path, env: &[(&str, &str)]) -> Daemon {
        std::fs::create_dir_all(home).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("e2e-daemon.log")).unwrap();
        // `CCCC_E2E_DAEMON_BIN` runs the suite against another daemon build (e.g. a release
        // `ccccd`); by default the daemon is `cccc` itself.
        let bin = std::env::var("CCCC_E2E_DAEMON_BIN").unwrap_or_else(|_| cccc_bin().to_string());
        let mut cmd = Command::new(bin);
        cmd.env("CCCC_HOME", home).env("CCCC_LOG", "info").stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn cccc daemon");
        let d = Daemon { home: home.to_path_buf(), child: Some(child), _dir: None };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.client().with_timeout(Duration::from_secs(1)).call("ping", json!({})).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("daemon did not answer ping; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("e2e-daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn client(&self) -> Client {
        Client::for_home(&self.home).with_timeout(Duration::from_secs(30))
    }

    /// The full response envelope as JSON.
    pub fn call(&self, op: &str, args: Value) -> Value {
        let resp = self.client().call_raw(op, args).unwrap_or_else(|e| panic!("{op}: transport error: {e}"));
        serde_json::to_value(resp).unwrap()
    }

    /// Call and assert `ok`; returns `result`.
    #[track_caller]
    pub fn ok(&self, op: &str, args: Value) -> Value {
        let r = self.call(op, args.clone());
        assert_eq!(r["ok"], json!(true), "{op} {args} failed: {r}");
        r["result"].clone()
    }

    /// Call and assert an error; returns `error` (`{code, message, details}`).
    #[track_caller]
    pub fn err(&self, op: &str, args: Value) -> Value {
        let r = self.call(op, args.clone());
        assert_eq!(r["ok"], json!(false), "{op} {args} unexpectedly ok: {r}");
        assert_eq!(r["result"], json!({}), "error responses carry result {{}}");
        r["error"].clone()
    }

    /// Call and assert the error code.
    #[track_caller]
    pub fn err_code(&self, op: &str, args: Value, code: &str) -> Value {
        let e = self.err(op, args);
        assert_eq!(e["code"], json!(code), "{e}");
        e
    }

    /// Run the CLI against this home.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in(&self.home, args)
    }

    /// Send raw bytes on a fresh connection and return everything the daemon answers.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = UnixStream::connect(self.home.join("daemon/ccccd.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// Parsed lines of a group's ledger.jsonl (unparsable lines fail the test).
    pub fn ledger(&self, gid: &str) -> Vec<Value> {
        ledger_of(&self.home, gid)
    }

    /// SIGKILL the daemon.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `shutdown` and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = self.client().call("shutdown", json!({}));
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("daemon did not exit after shutdown");
        }
    }

    /// Has the daemon process exited?
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_pty_hosts(&self.home);
    }
}

/// PTY hosts outlive a killed daemon by design; a finished test ends them and their agents.
pub fn kill_pty_hosts(home: &Path) {
    let Ok(groups) = std::fs::read_dir(home.join("groups")) else { return };
    for g in groups.filter_map(Result::ok) {
        let Ok(runners) = std::fs::read_dir(g.path().join("state/runners/pty")) else { continue };
        for f in runners.filter_map(Result::ok) {
            if f.path().extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(f.path()).unwrap_or_default()) else { continue };
            for (key, group) in [("pid", true), ("host_pid", false)] {
                if let Some(pid) = v[key].as_i64().filter(|p| *p > 1) {
                    // SAFETY: kill(2) on pids recorded by our own test daemon.
                    unsafe { libc::kill(if group { -(pid as i32) } else { pid as i32 }, libc::SIGKILL) };
                }
            }
        }
    }
}

pub fn cli_in(home: &Path, args: &[&str]) -> Output {
    Command::new(cccc_bin()).args(args).env("CCCC_HOME", home).env_remove("CCCC_ACTOR_ID").stdin(Stdio::null()).output().unwrap()
}

pub fn ledger_of(home: &Path, gid: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(home.join("groups").join(gid).join("ledger.jsonl")).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ledger line {l:?}: {e}"))).collect()
}

/// A group with an attached scope and two headless actors: `lead` (foreman) and `peer-a`.
pub fn group_with_actors(d: &Daemon) -> String {
    let gid = d.ok("group_create", json!({"title": "demo", "topic": "e2e"}))["group_id"].as_str().unwrap().to_string();
    let proj = d.home.parent().unwrap().join(format!("proj-{gid}"));
    d.ok("attach", json!({"path": proj.to_str().unwrap(), "group_id": gid}));
    for (id, title) in [("lead", "Lead"), ("peer-a", "Peer A")] {
        let r = d.ok("actor_add", json!({"group_id": gid, "actor_id": id, "title": title, "runtime": "custom", "runner": "headless"}));
        assert_eq!(r["running"], json!(true), "{r}");
    }
    gid
}

/// Events of one kind in the ledger.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

// ---- added for the checklist/CLI suites (append-only) -----------------------------------------

impl Daemon {
    /// A fresh home and a daemon on it, with extra environment (e.g. a short stream heartbeat).
    pub fn start_env(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("cccc-e2e-").tempdir().unwrap();
        let home = dir.path().join("home");
        let mut d = Daemon::start_with_env(&home, env);
        d._dir = Some(dir);
        d
    }

    /// Open an `events_stream` on a raw connection; returns the handshake line (as sent) and the
    /// stream positioned after it.
    pub fn stream(&self, args: Value) -> (String, RawStream) {
        let s = UnixStream::connect(self.home.join("daemon/ccccd.sock")).unwrap();
        let mut w = s.try_clone().unwrap();
        let req = json!({"v": 1, "op": "events_stream", "args": args});
        w.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut st = RawStream { r: std::io::BufReader::new(s) };
        let hs = match st.next(Duration::from_secs(10)) {
            Item::Line(l) => l,
            other => panic!("no events_stream handshake: {other:?}"),
        };
        (hs, st)
    }

    /// Wait (bounded) for the daemon process to exit; its status if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                return Some(st);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a stream read produced.
#[derive(Debug)]
pub enum Item {
    Line(String),
    Eof,
    Timeout,
}

/// One `events_stream` connection, read line by line with a timeout.
pub struct RawStream {
    r: std::io::BufReader<UnixStream>,
}

impl RawStream {
    /// The next line (without its newline), EOF, or a timeout.
    pub fn next(&mut self, within: Duration) -> Item {
        use std::io::BufRead;
        self.r.get_ref().set_read_timeout(Some(within)).unwrap();
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => Item::Eof,
            Ok(_) => Item::Line(line.trim_end_matches('\n').to_string()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Item::Timeout,
            Err(e) => panic!("stream read failed: {e}"),
        }
    }

    /// The next `{"t":"event"}` item's raw line, skipping heartbeats; panics on EOF or timeout.
    #[track_caller]
    pub fn event_line(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match self.next(left) {
                Item::Line(l) => {
                    let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad stream line {l:?}: {e}"));
                    if v["t"] == "event" {
                        return l;
                    }
                    if v["t"] != "heartbeat" {
                        panic!("unexpected stream item: {l}");
                    }
                }
                other => panic!("expected a stream event, got {other:?}"),
            }
        }
    }

    /// The next event (the `event` member of the next `{"t":"event"}` item).
    #[track_caller]
    pub fn event(&mut self, within: Duration) -> Value {
        let l = self.event_line(within);
        serde_json::from_str::<Value>(&l).unwrap()["event"].clone()
    }

    /// Every event item arriving within `within` (heartbeats skipped), until quiet or EOF.
    pub fn drain_events(&mut self, within: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let mut deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left) {
                Item::Line(l) => {
                    let v: Value = serde_json::from_str(&l).unwrap();
                    if v["t"] == "event" {
                        out.push(v["event"].clone());
                        deadline = Instant::now() + within;
                    }
                }
                Item::Eof | Item::Timeout => return out,
            }
        }
    }
}

/// Poll `f` every 50 ms until it yields a value; fail the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
