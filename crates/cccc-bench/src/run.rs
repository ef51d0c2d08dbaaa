//! The workload, interleaved across the daemons under test.
//!
//! The machine is shared (2 cores, one disk): background load drifts over minutes. So instead of
//! benchmarking one daemon after the other, every phase is run in rounds, and each round visits
//! every daemon once (in a rotating order). Slow drifts then hit all daemons alike, and the
//! per-round spread shows how noisy the run was.

use crate::procs::Daemon;
use crate::{Cfg, Group, Load, Results, Target, fresh_home, ledger, ms, ping_version, send_load, setup};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(60);

/// Visit order of round `i`: rotate so no daemon is always first.
fn order(i: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + i) % n)
}

fn fail(r: &mut Results, what: &str, e: anyhow::Error) {
    let k = r.kind.map_or("?", |k| k.key());
    eprintln!("  [{k}] FAILED in {what}: {e:#}");
    if r.error.is_none() {
        r.error = Some(format!("{what}: {e:#}"));
    }
}

impl Load {
    fn absorb(&mut self, round: Load) {
        self.clients = round.clients;
        self.sends += round.sends;
        self.errors += round.errors;
        if self.first_error.is_none() {
            self.first_error = round.first_error.clone();
        }
        self.elapsed += round.elapsed;
        self.rounds.push(round.rate());
        self.lat.0.extend(round.lat.0);
    }
}

/// One CLI `send`, spawn to exit.
fn cli_send_once(t: &Target, home: &Path, group: &str, text: &str) -> Result<Duration> {
    let mut cmd = Command::new(&t.cli);
    cmd.args(["send", text, "--to", "peer-a", "--group", group]);
    if t.kind == crate::Kind::Rs45 && t.rs45_mode != "send" {
        cmd.args(["--mode", &t.rs45_mode]);
    }
    cmd.current_dir(home)
        .env("CCCC_HOME", home)
        .env_remove("CCCC_GROUP_ID")
        .env_remove("CCCC_ACTOR_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let s0 = Instant::now();
    let out = cmd.output().with_context(|| format!("spawn {}", t.cli.display()))?;
    let dt = s0.elapsed();
    if !out.status.success() {
        bail!("{} send failed ({}): {}", t.cli.display(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(dt)
}

fn count_in_file(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).map(|s| s.matches(needle).count()).unwrap_or(0)
}

struct Live {
    d: Daemon,
    g: Group,
    home: PathBuf,
}

fn stop_all(live: &mut [Option<Live>], results: &mut [Results], what: &str) {
    for (j, l) in live.iter_mut().enumerate() {
        if let Some(l) = l.take()
            && let Err(e) = l.d.stop()
        {
            fail(&mut results[j], what, e);
        }
    }
}

pub fn run_all(cfg: &Cfg, targets: &[Target], results: &mut [Results], homes: &mut Vec<PathBuf>) {
    let n = targets.len();
    let ok = |r: &Results| r.error.is_none();

    // 1. Cold start to first ping, a fresh home each time.
    eprintln!("-- cold starts ({} per daemon)", cfg.starts);
    for i in 0..cfg.starts {
        for j in order(i, n) {
            if !ok(&results[j]) {
                continue;
            }
            let t = &targets[j];
            let res = (|| -> Result<(Duration, String)> {
                let (work, home) = fresh_home(cfg, t.kind, &format!("start{i}"))?;
                homes.push(work);
                let (d, dt, v) = Daemon::start(&t.launch, &home, "ping", json!({}), BOOT)?;
                d.stop()?;
                Ok((dt, ping_version(&v)))
            })();
            match res {
                Ok((dt, v)) => {
                    results[j].starts.0.push(dt);
                    results[j].version = v;
                }
                Err(e) => fail(&mut results[j], "cold start", e),
            }
        }
    }
    for r in results.iter().filter(|r| ok(r)) {
        eprintln!("  [{}] start → ping median {:.1} ms", r.kind.unwrap().key(), ms(r.starts.median().unwrap_or_default()));
    }

    // 2. One long-running daemon each: setup, idle RSS.
    eprintln!("-- setup + idle RSS");
    let mut live: Vec<Option<Live>> = (0..n).map(|_| None).collect();
    for j in 0..n {
        if !ok(&results[j]) {
            continue;
        }
        let t = &targets[j];
        let res = (|| -> Result<(Live, Duration)> {
            let (work, home) = fresh_home(cfg, t.kind, "main")?;
            homes.push(work.clone());
            let (d, _, _) = Daemon::start(&t.launch, &home, "ping", json!({}), BOOT)?;
            let s0 = Instant::now();
            let g = setup(t, &d, &work.join("project"))?;
            let dt = s0.elapsed();
            for i in 0..3 {
                d.call("send", t.send_args(&g.id, &format!("warm-up {i}")))?;
            }
            Ok((Live { d, g, home }, dt))
        })();
        match res {
            Ok((l, dt)) => {
                results[j].setup = dt;
                live[j] = Some(l);
            }
            Err(e) => fail(&mut results[j], "setup", e),
        }
    }
    std::thread::sleep(Duration::from_millis(1500)); // let post-setup background work settle
    for j in 0..n {
        if let Some(l) = &live[j] {
            (results[j].idle_rss_kib, results[j].idle_procs) = l.d.rss();
            eprintln!("  [{}] idle RSS {} KiB in {} process(es)", targets[j].kind.key(), results[j].idle_rss_kib, results[j].idle_procs);
        }
    }

    // 3. send throughput/latency, 1 client then N clients, in rounds.
    let rounds = cfg.rounds.max(1);
    let per_round = cfg.duration.div_f64(rounds as f64);
    for (phase, clients) in [(1usize, 1usize), (2, cfg.clients)] {
        eprintln!("-- send, {clients} client(s): {rounds} rounds of {per_round:?} per daemon");
        for i in 0..rounds {
            for j in order(i, n) {
                let Some(l) = &live[j] else { continue };
                let round = send_load(&targets[j], &l.d, &l.g.id, clients, per_round);
                if round.sends == 0 {
                    let e = anyhow::anyhow!("no send succeeded: {}", round.first_error.clone().unwrap_or_default());
                    fail(&mut results[j], "send", e);
                }
                let dst = if phase == 1 { &mut results[j].send1 } else { &mut results[j].sendn };
                dst.absorb(round);
            }
        }
        for j in 0..n {
            let r = &results[j];
            let l = if phase == 1 { &r.send1 } else { &r.sendn };
            if l.sends > 0 {
                eprintln!(
                    "  [{}] {:.0} sends/s median of rounds (rounds {}), p50 {:.2} ms, p99 {:.2} ms, {} errors",
                    targets[j].kind.key(),
                    l.median_rate(),
                    l.rounds.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join("/"),
                    ms(l.lat.median().unwrap_or_default()),
                    ms(l.lat.pct(0.99).unwrap_or_default()),
                    l.errors
                );
            }
        }
    }
    for r in results.iter_mut() {
        for l in [&r.send1, &r.sendn] {
            if let Some(e) = &l.first_error {
                let note = format!("{} send errors with {} client(s), first: {e}", l.errors, l.clients);
                r.notes.push(note);
            }
        }
    }

    // 4. CLI send, spawn to exit; one untimed warm-up each.
    eprintln!("-- CLI send ({} per daemon)", cfg.cli_sends);
    let marker = format!("cli-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    for i in 0..=cfg.cli_sends {
        for j in order(i, n) {
            let Some(l) = &live[j] else { continue };
            if !ok(&results[j]) {
                continue;
            }
            match cli_send_once(&targets[j], &l.home, &l.g.id, &format!("{marker} #{i}")) {
                Ok(dt) if i > 0 => results[j].cli.0.push(dt),
                Ok(_) => {}
                Err(e) => fail(&mut results[j], "CLI send", e),
            }
        }
    }
    for j in 0..n {
        if let Some(l) = &live[j] {
            let landed = count_in_file(&l.home.join("groups").join(&l.g.id).join("ledger.jsonl"), &format!("{marker} #"));
            results[j].cli_landed = landed.saturating_sub(1);
            if results[j].cli_landed != cfg.cli_sends && ok(&results[j]) {
                let note = format!("CLI: {} of {} sends found in the ledger", results[j].cli_landed, cfg.cli_sends);
                results[j].notes.push(note);
            }
            eprintln!("  [{}] CLI send median {:.1} ms", targets[j].kind.key(), ms(results[j].cli.median().unwrap_or_default()));
        }
    }
    stop_all(&mut live, results, "stop after send phases");

    // 5. inbox on a synthetic ledger, in homes whose group was made by that daemon.
    eprintln!("-- inbox on a {}-event ledger", cfg.events);
    let mut prepared: Vec<Option<(PathBuf, Group, ledger::Expect)>> = (0..n).map(|_| None).collect();
    for j in 0..n {
        if !ok(&results[j]) {
            continue;
        }
        let t = &targets[j];
        let res = (|| -> Result<(PathBuf, Group, ledger::Expect)> {
            let (work, home) = fresh_home(cfg, t.kind, "inbox")?;
            homes.push(work.clone());
            let (d, _, _) = Daemon::start(&t.launch, &home, "ping", json!({}), BOOT)?;
            let g = setup(t, &d, &work.join("project"))?;
            std::thread::sleep(Duration::from_millis(300));
            d.stop()?;
            let expect = ledger::write(t.ledger_format(), &home, &g.id, &g.scope, cfg.events, 0x5eed_cccc)?;
            Ok((home, g, expect))
        })();
        match res {
            Ok(p) => {
                eprintln!(
                    "  [{}] ledger {:.1} MiB, {} unread for peer-a",
                    t.kind.key(),
                    p.2.ledger_bytes as f64 / 1048576.0,
                    p.2.unread
                );
                prepared[j] = Some(p);
            }
            Err(e) => fail(&mut results[j], "inbox preparation", e),
        }
    }
    let last_ts = prepared.iter().flatten().map(|p| p.2.last_ts).max().unwrap_or(0);
    while cccc_proto::ts::now_micros() <= last_ts + 1000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Start each (alone, so the load time is not shared) and time the first inbox answer.
    let mut live: Vec<Option<(Daemon, &'static str, Value)>> = (0..n).map(|_| None).collect();
    let mut firsts: Vec<Option<Value>> = (0..n).map(|_| None).collect();
    for j in 0..n {
        let Some((home, g, _)) = &prepared[j] else { continue };
        let (op, args) = targets[j].inbox(&g.id);
        match Daemon::start(&targets[j].launch, home, op, args.clone(), Duration::from_secs(300)) {
            Ok((d, first, v)) => {
                results[j].inbox_first = first;
                firsts[j] = Some(v);
                eprintln!("  [{}] first {op} answered {:.0} ms after spawn", targets[j].kind.key(), ms(first));
                live[j] = Some((d, op, args));
            }
            Err(e) => fail(&mut results[j], "inbox start", e),
        }
    }
    let mut last: Vec<Option<Value>> = (0..n).map(|_| None).collect();
    for i in 0..cfg.inbox_calls {
        let mut any = false;
        for j in order(i, n) {
            let Some((d, op, args)) = &live[j] else { continue };
            if results[j].inbox.0.iter().sum::<Duration>() > cfg.inbox_budget || !ok(&results[j]) {
                continue;
            }
            any = true;
            let s0 = Instant::now();
            match d.call(op, args.clone()) {
                Ok(v) => {
                    results[j].inbox.0.push(s0.elapsed());
                    last[j] = Some(v);
                }
                Err(e) => fail(&mut results[j], "inbox", e),
            }
        }
        if !any {
            break;
        }
    }
    for j in 0..n {
        let Some((d, op, _)) = live[j].take() else { continue };
        let expect = prepared[j].as_ref().map(|p| p.2.clone()).expect("prepared");
        let check = |v: &Option<Value>| -> (usize, bool) {
            let msgs = v.as_ref().and_then(|v| v.get("messages")).and_then(Value::as_array);
            let n = msgs.map_or(0, Vec::len);
            let first_ok = msgs.and_then(|m| m.first()).and_then(|m| m.get("id")).and_then(Value::as_str) == Some(expect.first_id.as_str());
            (n, first_ok)
        };
        let (n0, ok0) = check(&firsts[j]);
        let (n1, ok1) = check(&last[j]);
        let r = &mut results[j];
        r.inbox_returned = n1;
        r.inbox_first_ok = ok0 && ok1;
        if n0 != n1 || !(ok0 && ok1) || n1 != expect.unread.min(50) {
            r.notes.push(format!("{op}: returned {n1} messages (expected {}), oldest is the expected one: {}", expect.unread.min(50), ok0 && ok1));
        }
        if r.inbox.0.len() < cfg.inbox_calls && r.error.is_none() {
            r.notes.push(format!("{op}: only {} of {} calls fit in the {:?} budget", r.inbox.0.len(), cfg.inbox_calls, cfg.inbox_budget));
        }
        (r.loaded_rss_kib, r.loaded_procs) = d.rss();
        r.inbox_expect = Some(expect);
        eprintln!(
            "  [{}] {op}: p50 {:.2} ms, p99 {:.2} ms (n={}); RSS {} KiB",
            targets[j].kind.key(),
            ms(r.inbox.median().unwrap_or_default()),
            ms(r.inbox.pct(0.99).unwrap_or_default()),
            r.inbox.0.len(),
            r.loaded_rss_kib
        );
        if let Err(e) = d.stop() {
            fail(r, "stop after inbox", e);
        }
    }
}
