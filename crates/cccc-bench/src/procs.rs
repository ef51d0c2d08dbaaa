//! Daemon processes: spawn in their own process group, wait for readiness, stop with the
//! `shutdown` op and make sure every process of the daemon (and whatever it forked) is gone.
//! Also /proc readers (process tree, VmRSS).

use anyhow::{Context, Result, anyhow, bail};
use cccc_ipc::{Client, ClientError, Endpoint};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One process as /proc/<pid>/stat tells it.
#[derive(Clone, Copy, Debug)]
struct ProcStat {
    pid: u32,
    state: u8,
    ppid: u32,
    pgrp: u32,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: the fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_ascii_whitespace();
    let state = it.next()?.bytes().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some(ProcStat { pid, state, ppid, pgrp })
}

fn all_procs() -> Vec<ProcStat> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter_map(read_stat).collect()
}

/// Live (non-zombie) descendants of `root`, not including `root`.
pub fn descendants(root: u32) -> Vec<u32> {
    let procs = all_procs();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for c in procs.iter().filter(|c| c.ppid == p && c.pid != root) {
            if !out.contains(&c.pid) {
                out.push(c.pid);
                frontier.push(c.pid);
            }
        }
    }
    out.retain(|&p| alive(p));
    out
}

/// Live members of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    all_procs().into_iter().filter(|p| p.pgrp == pgid && p.state != b'Z').map(|p| p.pid).collect()
}

/// A pid that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(read_stat(pid), Some(s) if s.state != b'Z' && s.state != b'X')
}

/// VmRSS of one process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// VmRSS of `root` plus every live descendant, in KiB, and how many processes were summed.
pub fn tree_rss_kib(root: u32) -> (u64, usize) {
    let mut pids = vec![root];
    pids.extend(descendants(root));
    let mut total = 0;
    let mut n = 0;
    for p in pids {
        if let Some(k) = rss_kib(p) {
            total += k;
            n += 1;
        }
    }
    (total, n)
}

fn kill9(pid: u32) {
    // By pid only; the `kill` utility avoids a libc dependency.
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// How to launch one daemon.
#[derive(Clone, Debug)]
pub struct Launch {
    pub argv: Vec<OsString>,
}

/// A daemon we started. Dropping it without `stop` kills it (and its descendants).
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    pub home: PathBuf,
    pub client: Client,
}

/// Where the daemon's stdout/stderr go: `<home>.log`.
pub fn log_path(home: &Path) -> PathBuf {
    let mut p = home.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

/// A client on the home's default socket (no discovery: the socket may not exist yet).
pub fn socket_client(home: &Path, timeout: Duration) -> Client {
    Client { endpoint: Endpoint::Unix(home.join("daemon").join("ccccd.sock")), timeout }
}

/// Is this a "nobody listens yet" error (retry), as opposed to a daemon answer?
fn not_listening(e: &ClientError) -> bool {
    matches!(e, ClientError::Unavailable { phase: "connect", .. })
}

impl Daemon {
    /// Spawn the daemon on `home` and call `probe_op(probe_args)` until it succeeds.
    /// Returns the daemon, the time from spawn to the first successful probe, and its result.
    pub fn start(launch: &Launch, home: &Path, probe_op: &str, probe_args: Value, timeout: Duration) -> Result<(Daemon, Duration, Value)> {
        // The log goes next to the home: 0.4.45 refuses a non-empty directory that is not yet a home.
        std::fs::create_dir_all(home)?;
        let log_path = log_path(home);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .current_dir(home.parent().unwrap_or(home))
            .env("CCCC_HOME", home)
            .env_remove("CCCC_GROUP_ID")
            .env_remove("CCCC_ACTOR_ID")
            .env_remove("CCCC_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let probe = socket_client(home, timeout);
        let t0 = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawn {:?}", launch.argv))?;
        let pid = child.id();
        let mut d = Daemon { child: Some(child), pid, home: home.to_path_buf(), client: socket_client(home, Duration::from_secs(120)) };
        loop {
            match probe.call(probe_op, probe_args.clone()) {
                Ok(v) => {
                    let dt = t0.elapsed();
                    d.client = Client::for_home(home).with_timeout(Duration::from_secs(120));
                    return Ok((d, dt, v));
                }
                Err(e) if not_listening(&e) => {}
                Err(e) => {
                    // The socket exists but the daemon is not ready to answer (e.g. an
                    // accept that closes): retry until the timeout, keep the last error.
                    if t0.elapsed() > timeout {
                        bail!("{probe_op} failed: {e}");
                    }
                }
            }
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("daemon exited early ({st}); see {}", log_path.display());
            }
            if t0.elapsed() > timeout {
                bail!("daemon did not answer {probe_op} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn rss(&self) -> (u64, usize) {
        tree_rss_kib(self.pid)
    }

    pub fn call(&self, op: &str, args: Value) -> Result<Value> {
        self.client.call(op, args).map_err(|e| anyhow!("{op}: {e}"))
    }

    /// `shutdown` op, wait for the daemon and every process it started to be gone.
    pub fn stop(mut self) -> Result<()> {
        let mut child = self.child.take().expect("running daemon");
        let before: Vec<u32> = descendants(self.pid);
        let shut = socket_client(&self.home, Duration::from_secs(10)).call("shutdown", json!({}));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => {
                    exited = true;
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait(); // reaps (or returns the status try_wait already saw)
        // Whatever the daemon forked must go away too.
        let deadline = Instant::now() + Duration::from_secs(10);
        let leftovers = loop {
            let mut left: Vec<u32> = before.iter().copied().filter(|&p| alive(p)).collect();
            for p in group_members(self.pid) {
                if !left.contains(&p) {
                    left.push(p);
                }
            }
            if left.is_empty() || Instant::now() > deadline {
                break left;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for &p in &leftovers {
            kill9(p);
        }
        if !exited {
            bail!("daemon pid {} did not exit within 30 s of shutdown ({shut:?}); killed", self.pid);
        }
        if !leftovers.is_empty() {
            bail!("daemon pid {} exited but left processes {leftovers:?}; killed", self.pid);
        }
        if let Err(e) = shut {
            bail!("shutdown op failed: {e}");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let kids = descendants(self.pid);
            let _ = child.kill();
            let _ = child.wait();
            for p in kids.into_iter().chain(group_members(self.pid)) {
                kill9(p);
            }
        }
    }
}
