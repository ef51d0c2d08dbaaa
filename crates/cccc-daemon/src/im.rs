//! Supervision of IM bridge processes.
//!
//! One bridge process per bot credential serves every group configured with it. Each tick the
//! supervisor computes which credentials should have a bridge (groups whose `im` is enabled and
//! whose token resolves in the daemon's environment), starts the missing ones as
//! `<our binary> __im-bridge --platform P --token-env VAR [--api-url URL]`, restarts crashed ones
//! with exponential backoff (1 s doubling to 60 s, reset after a minute of uptime), and stops
//! bridges nobody needs. A bridge that exits with code 4 (credential rejected) is not restarted
//! until the user runs `cccc im start` again; code 3 (another process holds the credential, e.g.
//! an orphan of a crashed daemon that still serves) is retried every 5 s, so we take over when
//! it ends. The supervisor's view goes to `state/im/<platform>_<cred>/supervisor.json`, which
//! `im_status` reads.

use cccc_core::ops::im::{canonical_all, credential_dir, credential_key, resolve_token};
use cccc_core::store::{Store, lock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program that runs a bridge: `CCCC_IM_BRIDGE_EXE` when set (tests use a stand-in),
/// else the `cccc` binary. The platform crates (teloxide, serenity) are linked into `cccc`
/// only, so a daemon running as `ccccd` starts the `cccc` that sits beside it.
fn bridge_exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CCCC_IM_BRIDGE_EXE") {
        return Some(PathBuf::from(p));
    }
    let me = cccc_core::pty::client::host_exe()?;
    if me.file_name().is_some_and(|n| n == "cccc") {
        return Some(me);
    }
    let sibling = me.with_file_name("cccc");
    Some(if sibling.is_file() { sibling } else { me })
}

/// What a bridge process is started with.
#[derive(Clone, Debug, PartialEq)]
struct Spec {
    platform: String,
    token_env: String,
    api_url: String,
}

struct Proc {
    spec: Spec,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    next_start: Instant,
    last_exit: Option<Value>,
}

#[derive(Default)]
pub struct Supervisor {
    procs: HashMap<String, Proc>,
}

fn backoff(restarts: u32) -> Duration {
    Duration::from_secs(1u64 << restarts.min(6)).min(Duration::from_secs(60))
}

impl Supervisor {
    /// Credentials that should have a bridge now.
    fn desired(store: &Store) -> HashMap<String, Spec> {
        let mut out = HashMap::new();
        let ids: Vec<String> = lock(&store.registry).groups().keys().cloned().collect();
        for id in ids {
            let Ok(slot) = store.slot(&id) else { continue };
            let g = lock(&slot.group);
            if g.deleted {
                continue;
            }
            for im in canonical_all(&g.doc.doc) {
            if im.get("enabled").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let platform = im["platform"].as_str().unwrap_or("").to_string();
            let (Ok(token), Some(token_env)) = (resolve_token(&im), im.get("bot_token_env").and_then(Value::as_str)) else { continue };
            let cred = credential_key(&platform, &token);
            if credential_dir(store.home.root(), &platform, &cred).join("rejected").exists() {
                continue;
            }
            let api_url = im.get("api_url").and_then(Value::as_str).unwrap_or("").to_string();
            out.entry(cred).or_insert(Spec { platform, token_env: token_env.to_string(), api_url });
            }
        }
        out
    }

    fn spawn(home: &Path, exe: &Path, cred: &str, spec: &Spec) -> std::io::Result<Child> {
        let dir = credential_dir(home, &spec.platform, cred);
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("bridge.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("__im-bridge").args(["--platform", &spec.platform, "--token-env", &spec.token_env]);
        if !spec.api_url.is_empty() {
            cmd.args(["--api-url", &spec.api_url]);
        }
        cmd.env("CCCC_HOME", home).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // SAFETY: setsid is async-signal-safe; the bridge must not get the terminal's Ctrl-C.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// One supervision pass.
    pub fn tick(&mut self, store: &Store) {
        // `CCCC_IM_BRIDGE_EXE` replaces the bridge program (tests use a stand-in).
        let Some(exe) = bridge_exe() else { return };
        let home: PathBuf = store.home.root().to_path_buf();
        let desired = Self::desired(store);
        let now = Instant::now();
        for (cred, p) in self.procs.iter_mut() {
            let Some(child) = p.child.as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                let code = status.code();
                p.child = None;
                if p.started.elapsed() > Duration::from_secs(60) {
                    p.restarts = 0;
                }
                p.restarts += 1;
                p.next_start = now + if code == Some(3) { Duration::from_secs(5) } else { backoff(p.restarts) };
                p.last_exit = Some(json!({"code": code, "at": cccc_proto::ts::now()}));
                if code == Some(4) {
                    let _ = std::fs::write(credential_dir(&home, &p.spec.platform, cred).join("rejected"), b"credential rejected\n");
                }
                tracing::warn!(cred = %cred, code = ?code, "IM bridge exited");
            }
        }
        // Stop what is no longer wanted (or whose spec changed).
        let stale: Vec<String> = self.procs.iter().filter(|(c, p)| desired.get(*c) != Some(&p.spec)).map(|(c, _)| c.clone()).collect();
        for cred in stale {
            if let Some(mut p) = self.procs.remove(&cred) {
                if let Some(child) = p.child.as_mut() {
                    stop_child(child);
                }
                p.child = None;
                write_view(&home, &cred, &p, false);
            }
        }
        for (cred, spec) in desired {
            let p = self.procs.entry(cred.clone()).or_insert_with(|| Proc {
                spec: spec.clone(),
                child: None,
                started: now,
                restarts: 0,
                next_start: now,
                last_exit: None,
            });
            if p.child.is_none() && now >= p.next_start {
                match Self::spawn(&home, &exe, &cred, &spec) {
                    Ok(c) => {
                        tracing::info!(cred = %cred, platform = %spec.platform, pid = c.id(), "IM bridge started");
                        p.child = Some(c);
                        p.started = now;
                    }
                    Err(e) => {
                        p.restarts += 1;
                        p.next_start = now + backoff(p.restarts);
                        p.last_exit = Some(json!({"code": null, "error": e.to_string(), "at": cccc_proto::ts::now()}));
                    }
                }
            }
            write_view(&home, &cred, p, true);
        }
    }

    /// Stop every bridge (daemon shutdown).
    pub fn stop_all(&mut self, home: &Path) {
        for (cred, p) in self.procs.iter_mut() {
            if let Some(child) = p.child.as_mut() {
                stop_child(child);
            }
            p.child = None;
            write_view(home, cred, p, false);
        }
    }
}

fn stop_child(child: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn write_view(home: &Path, cred: &str, p: &Proc, desired: bool) {
    let dir = credential_dir(home, &p.spec.platform, cred);
    let v = json!({
        "platform": p.spec.platform, "token_env": p.spec.token_env, "api_url": p.spec.api_url, "desired": desired,
        "running": p.child.is_some(), "pid": p.child.as_ref().map(|c| c.id()), "restarts": p.restarts,
        "last_exit": p.last_exit, "updated_at": cccc_proto::ts::now(),
    });
    let prev = cccc_core::home::read_json(&dir.join("supervisor.json")).ok();
    // Only rewrite on change (besides the timestamp), to keep the disk quiet.
    let same = prev.as_ref().is_some_and(|prev| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().map(|m| m.remove("updated_at"));
            v
        };
        strip(prev) == strip(&v)
    });
    if !same {
        let _ = std::fs::create_dir_all(&dir);
        let _ = cccc_core::home::write_json_pretty(&dir.join("supervisor.json"), &v);
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), Duration::from_secs(60));
    }
}
