//! `cccc-bench`: the same workload against up to three CCCC daemons in one run.
//!
//! * ours — `target/release/ccccd` (+ `target/release/cccc` for the CLI send),
//! * ref  — the reference `cccc-pair==0.4.32` (Python), in a venv,
//! * rs45 — CCCC's own Rust build `cccc-pair==0.4.45` (a binary wheel), in another venv.
//!
//! Each daemon gets fresh temporary CCCC_HOMEs (never ~/.cccc), runs in its own process group,
//! is stopped with the `shutdown` op, and every process it started is checked to be gone.
//! Everything is bounded in time and count. See `--help` and docs/benchmarks.md.

mod ledger;
mod procs;
mod pty;
mod report;
mod run;
mod common;
mod discord;
mod telegram;

use anyhow::{Context, Result, anyhow, bail};
use procs::{Daemon, Launch};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Ref,
    Rs45,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Ref => "ref",
            Kind::Rs45 => "rs45",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Ref => "0.4.32 (Python)",
            Kind::Rs45 => "0.4.45 (Rust)",
        }
    }
    fn parse(s: &str) -> Result<Kind> {
        Ok(match s.trim() {
            "ours" | "cccc-rs" => Kind::Ours,
            "ref" | "0.4.32" | "py" | "python" => Kind::Ref,
            "rs45" | "0.4.45" => Kind::Rs45,
            other => bail!("unknown daemon {other:?} (ours, ref, rs45)"),
        })
    }
}

const USAGE: &str = "\
cccc-bench: the same workload against our daemon, cccc-pair 0.4.32 (Python) and 0.4.45 (Rust)

usage: cargo run --release -p cccc-bench -- [--all | --daemons LIST] [options]

  --all                 all three daemons (the default)
  --daemons LIST        comma-separated subset of: ours, ref (0.4.32), rs45 (0.4.45)
  --duration SECS       length of each send-throughput phase per daemon (default 5)
  --rounds N            split each phase into N rounds that alternate between the daemons (default 10);
                        throughput = median of the per-round rates
  --clients N           concurrent clients of the second send phase (default 8)
  --starts N            cold starts measured (default 5, median reported)
  --cli-sends N         CLI sends measured (default 20, median reported)
  --events N            synthetic ledger size (default 100000)
  --inbox-calls N       inbox_list calls measured (default 200)
  --inbox-budget SECS   stop the inbox_list loop after this long (default 60)
  --markdown PATH       write the results into PATH (between the bench markers if present)
  --json PATH           write the raw figures as JSON
  --tmp DIR             where the temporary CCCC_HOMEs go (default $TMPDIR or /tmp)
  --keep                keep the temporary homes
  --no-build            do not run `cargo build --release -p cccc-daemon -p cccc-cli` first
  --no-setup            do not create missing venvs (pip install cccc-pair==0.4.32 / ==0.4.45)
  --ours-daemon PATH    (default target/release/ccccd)
  --ours-cli PATH       (default target/release/cccc)
  --venv-ref DIR        (default target/py-interop/venv-0.4.32)
  --venv-rs45 DIR       (default target/py-interop/venv-0.4.45)
  --rs45-mode MODE      message_mode of 0.4.45 sends: send (default, its CLI default) or mail

actors that run (ours only): --pty [--markdown PATH]
  delivery latency into a PTY agent's terminal (p50/p99) and the cost of 20 idle PTY actors

Telegram bridge, outbound (ours only; ≈ 3.5 min, not part of --all): --telegram [--markdown PATH]
  ledger append → fake Bot API sendMessage latency (p50/p99), and sustained outbound rates under
  Telegram's limits (1 msg/s per chat, 20/min per group chat, 30/s overall), with loss checks;
  --telegram-quick: the same phases with small counts (≈ 50 s, a smoke run)

Discord bridge, outbound (ours only; not part of --all): --discord [--markdown PATH]
  ledger append → fake Discord create-message latency (p50/p99), sustained outbound rates (one
  channel, ten channels; no pacer, the fake models no limits) and the cost of injected 429s,
  with loss checks; --discord-quick: the same phases with small counts (a smoke run)

profiling aid (no table): --profile-send N [--profile-wait SECS]
  start the first daemon of --daemons, set it up, print its pid, wait SECS (default 3; attach
  perf/strace now), run the send phase with N clients for --duration, print the figures, stop.
";

#[derive(Clone, Debug)]
pub struct Cfg {
    pub root: PathBuf,
    pub kinds: Vec<Kind>,
    pub duration: Duration,
    pub rounds: usize,
    pub clients: usize,
    pub starts: usize,
    pub cli_sends: usize,
    pub events: usize,
    pub inbox_calls: usize,
    pub inbox_budget: Duration,
    pub markdown: Option<PathBuf>,
    /// `--pty`: measure actors that really run (ours only) instead of the three-daemon table.
    pub pty: bool,
    /// `--telegram` / `--telegram-quick`: the Telegram bridge's outbound path (ours only).
    pub telegram: Option<telegram::Plan>,
    /// `--discord` / `--discord-quick`: the Discord bridge's outbound path (ours only).
    pub discord: Option<discord::Plan>,
    pub json: Option<PathBuf>,
    pub tmp: PathBuf,
    pub keep: bool,
    pub build: bool,
    pub setup: bool,
    pub ours_daemon: PathBuf,
    pub ours_cli: PathBuf,
    pub venv_ref: PathBuf,
    pub venv_rs45: PathBuf,
    pub argv: Vec<String>,
    pub profile_send: Option<usize>,
    pub rs45_mode: String,
    pub profile_wait: Duration,
}

fn parse_args() -> Result<Cfg> {
    let root = std::env::var_os("CARGO_WORKSPACE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let root = root.canonicalize().unwrap_or(root);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Where `cargo build` (run by `prepare`, or by hand) puts our binaries.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => std::env::current_dir().unwrap_or(root.clone()).join(p),
        None => root.join("target"),
    };
    let mut c = Cfg {
        kinds: vec![Kind::Ours, Kind::Ref, Kind::Rs45],
        duration: Duration::from_secs(5),
        rounds: 10,
        clients: 8,
        starts: 5,
        cli_sends: 20,
        events: 100_000,
        inbox_calls: 200,
        inbox_budget: Duration::from_secs(60),
        markdown: None,
        pty: false,
        telegram: None,
        discord: None,
        json: None,
        tmp: std::env::temp_dir(),
        keep: false,
        build: true,
        setup: true,
        ours_daemon: target_dir.join("release/ccccd"),
        ours_cli: target_dir.join("release/cccc"),
        venv_ref: root.join("target/py-interop/venv-0.4.32"),
        venv_rs45: root.join("target/py-interop/venv-0.4.45"),
        root,
        argv: argv.clone(),
        profile_send: None,
        rs45_mode: "send".into(),
        profile_wait: Duration::from_secs(3),
    };
    let mut it = argv.into_iter();
    fn val(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String> {
        it.next().ok_or_else(|| anyhow!("{flag} needs a value"))
    }
    fn num<T: std::str::FromStr>(s: String, flag: &str) -> Result<T> {
        s.parse().map_err(|_| anyhow!("{flag}: not a number: {s}"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--all" => c.kinds = vec![Kind::Ours, Kind::Ref, Kind::Rs45],
            "--daemons" => c.kinds = val(&mut it, &a)?.split(',').map(Kind::parse).collect::<Result<_>>()?,
            "--duration" => c.duration = Duration::from_secs_f64(num(val(&mut it, &a)?, &a)?),
            "--rounds" => c.rounds = num(val(&mut it, &a)?, &a)?,
            "--clients" => c.clients = num(val(&mut it, &a)?, &a)?,
            "--starts" => c.starts = num(val(&mut it, &a)?, &a)?,
            "--cli-sends" => c.cli_sends = num(val(&mut it, &a)?, &a)?,
            "--events" => c.events = num(val(&mut it, &a)?, &a)?,
            "--inbox-calls" => c.inbox_calls = num(val(&mut it, &a)?, &a)?,
            "--inbox-budget" => c.inbox_budget = Duration::from_secs_f64(num(val(&mut it, &a)?, &a)?),
            "--markdown" => c.markdown = Some(val(&mut it, &a)?.into()),
            "--pty" => c.pty = true,
            "--telegram" => c.telegram = Some(telegram::Plan::full()),
            "--telegram-quick" => c.telegram = Some(telegram::Plan::quick()),
            "--discord" => c.discord = Some(discord::Plan::full()),
            "--discord-quick" => c.discord = Some(discord::Plan::quick()),
            "--json" => c.json = Some(val(&mut it, &a)?.into()),
            "--tmp" => c.tmp = val(&mut it, &a)?.into(),
            "--keep" => c.keep = true,
            "--no-build" => c.build = false,
            "--no-setup" => c.setup = false,
            "--ours-daemon" => c.ours_daemon = val(&mut it, &a)?.into(),
            "--ours-cli" => c.ours_cli = val(&mut it, &a)?.into(),
            "--venv-ref" => c.venv_ref = val(&mut it, &a)?.into(),
            "--venv-rs45" => c.venv_rs45 = val(&mut it, &a)?.into(),
            "--rs45-mode" => c.rs45_mode = val(&mut it, &a)?,
            "--profile-send" => c.profile_send = Some(num(val(&mut it, &a)?, &a)?),
            "--profile-wait" => c.profile_wait = Duration::from_secs_f64(num(val(&mut it, &a)?, &a)?),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if c.kinds.is_empty() || c.starts == 0 || c.cli_sends == 0 || c.clients == 0 || c.inbox_calls == 0 {
        bail!("counts must be positive");
    }
    if c.events < 1000 {
        bail!("--events must be at least 1000");
    }
    let rel = |p: PathBuf, root: &Path| if p.is_absolute() { p } else { std::env::current_dir().unwrap_or(root.to_path_buf()).join(p) };
    c.markdown = c.markdown.map(|p| rel(p, &c.root));
    c.json = c.json.map(|p| rel(p, &c.root));
    Ok(c)
}

/// How to run one daemon and its CLI.
pub struct Target {
    pub kind: Kind,
    pub launch: Launch,
    pub cli: PathBuf,
    pub rs45_mode: String,
}

impl Target {
    fn new(kind: Kind, cfg: &Cfg) -> Target {
        let os = |s: &str| OsString::from(s);
        let (argv, cli) = match kind {
            Kind::Ours => (vec![cfg.ours_daemon.clone().into_os_string(), os("run")], cfg.ours_cli.clone()),
            Kind::Ref => (
                vec![cfg.venv_ref.join("bin/python").into_os_string(), os("-m"), os("cccc.daemon_main"), os("run")],
                cfg.venv_ref.join("bin/cccc"),
            ),
            Kind::Rs45 => (vec![cfg.venv_rs45.join("bin/cccc").into_os_string(), os("daemon"), os("run")], cfg.venv_rs45.join("bin/cccc")),
        };
        Target { kind, launch: Launch { argv }, cli, rs45_mode: cfg.rs45_mode.clone() }
    }

    pub fn actor_add_args(&self, group: &str, id: &str) -> Value {
        match self.kind {
            // 0.4.45 derives the runner from the runtime and rejects `runner`.
            Kind::Rs45 => json!({"group_id": group, "actor_id": id, "runtime": "custom", "by": "user"}),
            _ => json!({"group_id": group, "actor_id": id, "runtime": "custom", "runner": "headless", "by": "user"}),
        }
    }

    pub fn send_args(&self, group: &str, text: &str) -> Value {
        let mut a = json!({"group_id": group, "text": text, "by": "user", "to": ["peer-a"]});
        if self.kind == Kind::Rs45 {
            // 0.4.45 requires the mode; `send` is its CLI default.
            a["message_mode"] = json!(self.rs45_mode);
        }
        a
    }

    /// The non-consuming inbox read: `inbox_list` (0.4.32, ours) or `inbox_peek` (0.4.45, which
    /// has no `inbox_list`).
    pub fn inbox(&self, group: &str) -> (&'static str, Value) {
        match self.kind {
            Kind::Rs45 => ("inbox_peek", json!({"group_id": group, "actor_id": "peer-a", "by": "user", "limit": 50})),
            _ => ("inbox_list", json!({"group_id": group, "actor_id": "peer-a", "by": "user", "limit": 50})),
        }
    }

    pub fn ledger_format(&self) -> ledger::Format {
        match self.kind {
            Kind::Rs45 => ledger::Format::Rs45,
            _ => ledger::Format::Ref,
        }
    }
}

/// Latency samples.
#[derive(Clone, Debug, Default)]
pub struct Lat(pub Vec<Duration>);

impl Lat {
    pub fn pct(&self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let mut v = self.0.clone();
        v.sort();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }
    pub fn median(&self) -> Option<Duration> {
        self.pct(0.5)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Load {
    pub clients: usize,
    pub sends: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub lat: Lat,
    /// sends/s of each round.
    pub rounds: Vec<f64>,
}

impl Load {
    /// Pooled rate: all sends over all rounds' time.
    pub fn rate(&self) -> f64 {
        self.sends as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Median of the per-round rates (robust to a burst of outside load hitting one round);
    /// the pooled rate when there are no rounds.
    pub fn median_rate(&self) -> f64 {
        if self.rounds.is_empty() {
            return self.rate();
        }
        let mut v = self.rounds.clone();
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Results {
    pub kind: Option<Kind>,
    pub version: String,
    pub starts: Lat,
    pub idle_rss_kib: u64,
    pub idle_procs: usize,
    pub setup: Duration,
    pub send1: Load,
    pub sendn: Load,
    pub cli: Lat,
    pub cli_landed: usize,
    pub inbox_first: Duration,
    pub inbox: Lat,
    pub inbox_returned: usize,
    pub inbox_first_ok: bool,
    pub inbox_expect: Option<ledger::Expect>,
    pub loaded_rss_kib: u64,
    pub loaded_procs: usize,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

/// A fresh work dir `<tmp>/cccc-bench-<pid>-<daemon>-<what>-<rand>/` holding an empty `home/`
/// (the CCCC_HOME), `home.log` (the daemon's output) and `project/` (the attached directory,
/// outside the home: homes refuse to attach themselves). Returns (work dir, home).
pub fn fresh_home(cfg: &Cfg, kind: Kind, what: &str) -> Result<(PathBuf, PathBuf)> {
    let work = cfg.tmp.join(format!("cccc-bench-{}-{}-{}-{}", std::process::id(), kind.key(), what, &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let home = cccc_home_guard(work.join("home"))?;
    std::fs::create_dir_all(&home)?;
    Ok((work, home))
}

fn cccc_home_guard(p: PathBuf) -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("HOME")
        && Path::new(&h).join(".cccc") == p
    {
        bail!("refusing to use ~/.cccc");
    }
    Ok(p)
}

pub struct Group {
    pub id: String,
    pub scope: String,
}

pub fn setup(t: &Target, d: &Daemon, project: &Path) -> Result<Group> {
    std::fs::create_dir_all(project)?;
    let r = d.call("group_create", json!({"title": "bench", "topic": "benchmark", "by": "user"}))?;
    let id = r.get("group_id").and_then(Value::as_str).context("group_create: no group_id")?.to_string();
    let r = d.call("attach", json!({"path": project.to_string_lossy(), "group_id": id, "by": "user"}))?;
    let scope = r.get("scope_key").and_then(Value::as_str).unwrap_or("").to_string();
    for actor in ["lead", "peer-a"] {
        d.call("actor_add", t.actor_add_args(&id, actor))?;
    }
    Ok(Group { id, scope })
}

pub fn send_load(t: &Target, d: &Daemon, group: &str, clients: usize, dur: Duration) -> Load {
    const MAX_PER_CLIENT: usize = 1_000_000;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (start, per) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let client = d.client.clone();
                let barrier = barrier.clone();
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(4096);
                    let (mut ok, mut errs, mut first) = (0usize, 0usize, None::<String>);
                    barrier.wait();
                    let deadline = Instant::now() + dur;
                    let mut i = 0;
                    while Instant::now() < deadline && i < MAX_PER_CLIENT {
                        let args = t.send_args(group, &format!("bench c{c} #{i}"));
                        let s0 = Instant::now();
                        let r = client.call("send", args);
                        let dt = s0.elapsed();
                        match r {
                            Ok(_) => {
                                ok += 1;
                                lat.push(dt);
                            }
                            Err(e) => {
                                errs += 1;
                                first.get_or_insert_with(|| e.to_string());
                            }
                        }
                        i += 1;
                    }
                    (ok, errs, first, lat, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        (start, hs.into_iter().map(|h| h.join().expect("client thread")).collect::<Vec<_>>())
    });
    let mut load = Load { clients, ..Default::default() };
    let end = per.iter().map(|p| p.4).max().unwrap_or(start);
    load.elapsed = end.duration_since(start);
    let mut lat = Vec::new();
    for (ok, errs, first, l, _) in per {
        load.sends += ok;
        load.errors += errs;
        if load.first_error.is_none() {
            load.first_error = first;
        }
        lat.extend(l);
    }
    load.lat = Lat(lat);
    load
}

pub fn ping_version(v: &Value) -> String {
    let ver = v.get("version").and_then(Value::as_str).unwrap_or("?");
    match v.get("server").and_then(Value::as_str).or_else(|| v.get("implementation").and_then(Value::as_str)) {
        Some(s) => format!("{ver} ({s})"),
        None => ver.to_string(),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// fdatasync()s per second on the filesystem of `dir` (bounded: 2 s or 20000 syncs).
fn fsync_rate(dir: &Path) -> Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let p = dir.join(format!("cccc-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&p)?;
    let line = [b'x'; 255];
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < Duration::from_secs(2) && n < 20_000 {
        f.write_all(&line)?;
        f.write_all(b"\n")?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&p);
    Ok(rate)
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("run {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

fn prepare(cfg: &Cfg) -> Result<()> {
    if cfg.kinds.contains(&Kind::Ours) && cfg.build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("building ours: cargo build --release -p cccc-daemon -p cccc-cli");
        run_cmd(Command::new(cargo).current_dir(&cfg.root).args(["build", "--release", "-q", "-p", "cccc-daemon", "-p", "cccc-cli"]), "cargo build")?;
    }
    if cfg.kinds.contains(&Kind::Ours) {
        for p in [&cfg.ours_daemon, &cfg.ours_cli] {
            if !p.exists() {
                bail!("{} is missing (cargo build --release -p cccc-daemon -p cccc-cli)", p.display());
            }
        }
    }
    if cfg.kinds.contains(&Kind::Ref) && !cfg.venv_ref.join("bin/cccc").exists() {
        if !cfg.setup {
            bail!("{} missing: bash tests/interop/setup_venv.sh {}", cfg.venv_ref.display(), cfg.venv_ref.display());
        }
        eprintln!("creating {} (cccc-pair==0.4.32)", cfg.venv_ref.display());
        run_cmd(Command::new("bash").current_dir(&cfg.root).arg("tests/interop/setup_venv.sh").arg(&cfg.venv_ref), "setup_venv.sh")?;
    }
    if cfg.kinds.contains(&Kind::Rs45) && !cfg.venv_rs45.join("bin/cccc").exists() {
        if !cfg.setup {
            bail!("{} missing: python3 -m venv DIR && DIR/bin/pip install cccc-pair==0.4.45", cfg.venv_rs45.display());
        }
        eprintln!("creating {} (cccc-pair==0.4.45)", cfg.venv_rs45.display());
        let py = if Command::new("python3.11").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) { "python3.11" } else { "python3" };
        run_cmd(Command::new(py).args(["-m", "venv"]).arg(&cfg.venv_rs45), "python -m venv")?;
        run_cmd(
            Command::new(cfg.venv_rs45.join("bin/pip")).args(["install", "-q", "--disable-pip-version-check", "--no-input", "cccc-pair==0.4.45"]),
            "pip install cccc-pair==0.4.45",
        )?;
    }
    if cfg.kinds.contains(&Kind::Rs45) {
        let out = Command::new(cfg.venv_rs45.join("bin/cccc")).arg("--version").output()?;
        let v = String::from_utf8_lossy(&out.stdout);
        if !v.contains("0.4.45") {
            bail!("{} --version says {v:?}, expected 0.4.45", cfg.venv_rs45.join("bin/cccc").display());
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("cccc-bench: {e:#}");
        std::process::exit(1);
    }
}

fn profile_send(cfg: &Cfg, clients: usize) -> Result<()> {
    let t = Target::new(cfg.kinds[0], cfg);
    let (work, home) = fresh_home(cfg, t.kind, "profile")?;
    let res = (|| -> Result<()> {
        let (d, _, _) = Daemon::start(&t.launch, &home, "ping", json!({}), Duration::from_secs(60))?;
        let g = setup(&t, &d, &work.join("project"))?;
        for i in 0..3 {
            d.call("send", t.send_args(&g.id, &format!("warm-up {i}")))?;
        }
        let mut pids = vec![d.pid];
        pids.extend(procs::descendants(d.pid));
        eprintln!("daemon pid {} (processes {pids:?}); sending in {:?}", d.pid, cfg.profile_wait);
        std::thread::sleep(cfg.profile_wait);
        // Round-trip floor: `ping` touches neither the ledger nor the blocking pool.
        let mut pings = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let s0 = Instant::now();
            d.call("ping", json!({}))?;
            pings.push(s0.elapsed());
        }
        let pings = Lat(pings);
        println!("{} ping x1: p50 {:.3} ms, p99 {:.3} ms", t.kind.key(), ms(pings.median().unwrap_or_default()), ms(pings.pct(0.99).unwrap_or_default()));
        let l = send_load(&t, &d, &g.id, clients, cfg.duration);
        println!(
            "{} send x{clients}: {} sends in {:.2} s = {:.0}/s, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, errors {}",
            t.kind.key(),
            l.sends,
            l.elapsed.as_secs_f64(),
            l.rate(),
            ms(l.lat.median().unwrap_or_default()),
            ms(l.lat.pct(0.9).unwrap_or_default()),
            ms(l.lat.pct(0.99).unwrap_or_default()),
            l.errors
        );
        d.stop()
    })();
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    res
}

fn real_main() -> Result<()> {
    let cfg = parse_args()?;
    if cfg.telegram.is_some() || cfg.discord.is_some() {
        // Ours only: never create the reference venvs for this mode.
        prepare(&Cfg { kinds: vec![Kind::Ours], ..cfg.clone() })?;
    } else {
        prepare(&cfg)?;
    }
    if let Some(n) = cfg.profile_send {
        return profile_send(&cfg, n);
    }
    if let Some(plan) = &cfg.telegram {
        let r = telegram::run(&cfg, plan)?;
        let section = telegram::markdown(&r);
        println!("{section}");
        for p in &r.problems {
            eprintln!("PROBLEM [telegram]: {p}");
        }
        if let Some(p) = &cfg.markdown {
            telegram::write_markdown(p, &section)?;
            eprintln!("wrote {}", p.display());
        }
        if !r.problems.is_empty() {
            bail!("the Telegram run found {} problem(s), see above", r.problems.len());
        }
        return Ok(());
    }
    if let Some(plan) = &cfg.discord {
        let r = discord::run(&cfg, plan)?;
        let section = discord::markdown(&r);
        println!("{section}");
        for p in &r.problems {
            eprintln!("PROBLEM [discord]: {p}");
        }
        if let Some(p) = &cfg.markdown {
            discord::write_markdown(p, &section)?;
            eprintln!("wrote {}", p.display());
        }
        if !r.problems.is_empty() {
            bail!("the Discord run found {} problem(s), see above", r.problems.len());
        }
        return Ok(());
    }
    if cfg.pty {
        let n = 100;
        let r = pty::run(&cfg, n)?;
        let section = pty::markdown(&r, n);
        println!("{section}");
        if let Some(p) = &cfg.markdown {
            pty::write_markdown(p, &section)?;
        }
        return Ok(());
    }
    let mut machine = report::Machine::probe();
    let psi0 = report::psi_totals();
    machine.fsync_per_s = fsync_rate(&cfg.tmp)?;
    eprintln!("{}", machine.summary());
    let started = Instant::now();
    let targets: Vec<Target> = cfg.kinds.iter().map(|&k| Target::new(k, &cfg)).collect();
    let mut all: Vec<Results> = cfg.kinds.iter().map(|&k| Results { kind: Some(k), ..Default::default() }).collect();
    let mut homes = Vec::new();
    run::run_all(&cfg, &targets, &mut all, &mut homes);
    machine.load_end = report::loadavg();
    machine.psi = report::psi_share(&psi0, &report::psi_totals(), started.elapsed());
    machine.fsync_end_per_s = fsync_rate(&cfg.tmp)?;
    machine.wall = started.elapsed();
    if !cfg.keep {
        for h in &homes {
            let _ = std::fs::remove_dir_all(h);
        }
    }
    let table = report::table(&cfg, &all);
    println!("{}", report::render_text(&table));
    for r in &all {
        for n in &r.notes {
            println!("note [{}]: {n}", r.kind.map_or("?", Kind::key));
        }
        if let Some(e) = &r.error {
            println!("ERROR [{}]: {e}", r.kind.map_or("?", Kind::key));
        }
    }
    if let Some(p) = &cfg.markdown {
        report::write_markdown(p, &cfg, &machine, &all, &table)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &cfg.json {
        std::fs::write(p, serde_json::to_string_pretty(&report::to_json(&cfg, &machine, &all))? + "\n")?;
        eprintln!("wrote {}", p.display());
    }
    if all.iter().any(|r| r.error.is_some()) {
        bail!("at least one daemon failed");
    }
    Ok(())
}
