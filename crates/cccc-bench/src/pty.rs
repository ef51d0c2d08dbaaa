//! `--pty`: the cost of actors that really run (ours only; the reference's terminal delivery
//! has fixed waits that make a latency comparison meaningless).
//!
//! - Delivery latency: `send` acknowledged (the event is durable) → the fake agent
//!   (tests/fixtures/fake_agent.py, a PTY actor) reads the line from its terminal. Both sides use
//!   CLOCK_MONOTONIC. Messages go one at a time (each waits for the previous one), with the
//!   paste→submit pause set to 0 so the figure is our pipeline; by default the daemon waits
//!   1.5 s before pressing submit, as agent TUIs need (and the reference does).
//! - Idle cost: 20 PTY actors running `cat`, after they settle: RSS of the daemon and of the 20
//!   terminal hosts, and their CPU use over 10 s.

use crate::procs::{Daemon, descendants, rss_kib};
use crate::{Cfg, Kind, Lat, Target, fresh_home, ms, setup};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn mono() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else { return 0 };
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the comm: state(0) ppid(1) … utime(11) stime(12).
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn is_host(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(11).any(|w| w == b"__pty-host\0"))
}

fn received(log: &Path, needle: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["line"].as_str().is_some_and(|s| s.ends_with(needle))).and_then(|v| v["t"].as_f64())
}

pub struct PtyResults {
    pub lat: Lat,
    pub daemon_rss_kib: u64,
    pub hosts_rss_kib: u64,
    pub hosts: usize,
    pub daemon_cpu_pct: f64,
    pub hosts_cpu_pct: f64,
}

pub fn run(cfg: &Cfg, messages: usize) -> Result<PtyResults> {
    // Our pipeline only: no paste→submit pause, short start-up grace.
    // SAFETY: set before any thread of ours reads the environment; the daemon inherits them.
    unsafe {
        std::env::set_var("CCCC_PTY_SUBMIT_DELAY_MS", "0");
        std::env::set_var("CCCC_PTY_READY_GRACE_MS", "100");
    }
    let t = Target::new(Kind::Ours, cfg);
    let (work, home) = fresh_home(cfg, t.kind, "pty")?;
    let res = (|| -> Result<PtyResults> {
        let (d, _, _) = Daemon::start(&t.launch, &home, "ping", json!({}), Duration::from_secs(60))?;
        let g = setup(&t, &d, &work.join("project"))?;
        let agent = cfg.root.join("tests/fixtures/fake_agent.py");
        let log = work.join("agent.log");
        d.call("actor_add", json!({"group_id": g.id, "actor_id": "agent", "runtime": "custom", "runner": "pty", "command": ["python3", agent], "env": {"FAKE_AGENT_LOG": log}}))?;
        let ready = Instant::now();
        loop {
            let tail = d.call("terminal_tail", json!({"group_id": g.id, "actor_id": "agent"}))?;
            if tail["text"].as_str().unwrap_or("").contains("fake-agent ready") {
                break;
            }
            if ready.elapsed() > Duration::from_secs(20) {
                bail!("fake agent did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut lats = Vec::with_capacity(messages);
        for i in 0..messages {
            let needle = format!("agent: lat-{i:04}");
            d.call("send", json!({"group_id": g.id, "text": format!("lat-{i:04}"), "to": ["agent"], "by": "user"}))?;
            let acked = mono();
            let deadline = Instant::now() + Duration::from_secs(10);
            let got = loop {
                if let Some(t) = received(&log, &needle) {
                    break t;
                }
                if Instant::now() > deadline {
                    bail!("message {i} not delivered within 10 s");
                }
                std::thread::sleep(Duration::from_micros(500));
            };
            lats.push(Duration::from_secs_f64((got - acked).max(0.0)));
        }
        // 20 idle PTY actors.
        for k in 0..20 {
            d.call("actor_add", json!({"group_id": g.id, "actor_id": format!("idle-{k:02}"), "runtime": "custom", "runner": "pty", "command": ["cat"]}))?;
        }
        d.call("actor_remove", json!({"group_id": g.id, "actor_id": "agent"}))?;
        std::thread::sleep(Duration::from_secs(3));
        let hosts: Vec<u32> = descendants(d.pid).into_iter().filter(|p| is_host(*p)).collect();
        let hosts_rss: u64 = hosts.iter().filter_map(|p| rss_kib(*p)).sum();
        let daemon_rss = rss_kib(d.pid).context("daemon RSS")?;
        let (d0, h0): (u64, u64) = (cpu_ticks(d.pid), hosts.iter().map(|p| cpu_ticks(*p)).sum());
        let window = Duration::from_secs(10);
        std::thread::sleep(window);
        let (d1, h1): (u64, u64) = (cpu_ticks(d.pid), hosts.iter().map(|p| cpu_ticks(*p)).sum());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let pct = |ticks: u64| ticks as f64 / hz / window.as_secs_f64() * 100.0;
        let out = PtyResults {
            lat: Lat(lats),
            daemon_rss_kib: daemon_rss,
            hosts_rss_kib: hosts_rss,
            hosts: hosts.len(),
            daemon_cpu_pct: pct(d1 - d0),
            hosts_cpu_pct: pct(h1 - h0),
        };
        d.stop()?;
        Ok(out)
    })();
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    res
}

pub const BEGIN: &str = "<!-- cccc-bench:pty:begin (generated by `cccc-bench --pty --markdown`) -->";
pub const END: &str = "<!-- cccc-bench:pty:end -->";

pub fn markdown(r: &PtyResults, messages: usize) -> String {
    format!(
        "{BEGIN}\n\n### Actors that run (ours)\n\n\
| metric | value |\n| --- | ---: |\n\
| delivery latency, `send` acknowledged → line read by the PTY agent: p50 | {:.2} ms |\n\
| delivery latency: p99 | {:.2} ms |\n\
| messages measured (one at a time) | {messages} |\n\
| 20 idle PTY actors: daemon RSS | {:.1} MiB |\n\
| 20 idle PTY actors: terminal hosts RSS, total ({} hosts) | {:.1} MiB |\n\
| 20 idle PTY actors: daemon CPU over 10 s | {:.2} % |\n\
| 20 idle PTY actors: hosts CPU over 10 s, total | {:.2} % |\n\n\
Latency is measured with the paste→submit pause set to 0 (`CCCC_PTY_SUBMIT_DELAY_MS=0`); by default\n\
the daemon pauses 1.5 s before pressing submit, as agent TUIs need, and that pause adds to these\n\
figures. The idle agents run `cat`; their own memory is not counted. Command:\n\
`cargo run --release -p cccc-bench -- --pty --markdown docs/benchmarks.md`.\n\n{END}\n",
        ms(r.lat.median().unwrap_or_default()),
        ms(r.lat.pct(0.99).unwrap_or_default()),
        r.daemon_rss_kib as f64 / 1024.0,
        r.hosts,
        r.hosts_rss_kib as f64 / 1024.0,
        r.daemon_cpu_pct,
        r.hosts_cpu_pct,
    )
}

/// Replace the PTY section of the markdown file, or append it.
pub fn write_markdown(path: &Path, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section.trim_end(), &text[b + END.len()..]),
        _ => format!("{}\n{section}", text.trim_end()),
    };
    std::fs::write(path, new)?;
    Ok(())
}
