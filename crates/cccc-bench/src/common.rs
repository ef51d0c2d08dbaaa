//! Shared by the bridge benches (`--telegram`, `--discord`): the in-process bridge thread,
//! phase markers and the exactly-once / in-order check, rates, the collection of a burst's
//! arrivals, and the markdown helpers.

use crate::procs::Daemon;
use crate::{Cfg, Kind, Lat, Target, fresh_home, ms};
use cccc_bridge::process::BridgeOptions;
use anyhow::{Result, anyhow};
use cccc_bridge::runner::StopToken;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// What one chat received of a phase: ids parsed from the markers, with arrival times.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqCheck {
    pub expected: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicates: usize,
    /// Arrivals whose id is lower than an earlier arrival's.
    pub out_of_order: usize,
}

impl SeqCheck {
    pub fn exact(&self) -> bool {
        self.delivered == self.expected && self.missing == 0 && self.duplicates == 0 && self.out_of_order == 0
    }
}

/// Check that `ids` (in arrival order) is exactly `0..expected`.
pub fn check_sequence(ids: &[usize], expected: usize) -> SeqCheck {
    let mut seen = vec![0usize; expected];
    let mut c = SeqCheck { expected, delivered: ids.len(), ..Default::default() };
    let mut hi: Option<usize> = None;
    for &i in ids {
        if i < expected {
            seen[i] += 1;
        }
        if hi.is_some_and(|h| i < h) {
            c.out_of_order += 1;
        }
        hi = Some(hi.map_or(i, |h| h.max(i)));
    }
    c.missing = seen.iter().filter(|&&n| n == 0).count();
    c.duplicates = seen.iter().map(|&n| n.saturating_sub(1)).sum::<usize>() + ids.iter().filter(|&&i| i >= expected).count();
    c
}

/// Sustained rate of arrivals `t` (sorted): (n − 1) / (last − first), per second.
pub fn sustained_rate(t: &[Duration]) -> Option<f64> {
    let (first, last) = (t.first()?, t.last()?);
    let span = last.checked_sub(*first)?.as_secs_f64();
    (t.len() >= 2 && span > 0.0).then(|| (t.len() - 1) as f64 / span)
}

/// Most arrivals in any window of length `w` (half-open), `t` sorted.
pub fn max_in_window(t: &[Duration], w: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The phase marker `bench-<phase>-<nnnn>` in a message text.
pub fn marker(phase: &str, text: &str) -> Option<usize> {
    let tag = format!("bench-{phase}-");
    let at = text.find(&tag)? + tag.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn marked(phase: &str, i: usize) -> String {
    format!("bench-{phase}-{i:04}")
}

/// One throughput phase.
#[derive(Clone, Debug, Default)]
pub struct Flow {
    pub chats: usize,
    pub per_chat: usize,
    /// Time to append the burst (all `send`s acknowledged).
    pub append: Duration,
    /// Arrival times (since the first `send` of the burst), all chats, sorted.
    pub arrivals: Vec<Duration>,
    /// Per-chat sustained rates (min, max), msgs/s.
    pub chat_rate: Option<(f64, f64)>,
    /// Arrivals up to the moment the first chat had received all of its messages (while every
    /// chat still had a backlog), sorted.
    pub saturated: Vec<Duration>,
    pub checks: Vec<SeqCheck>,
    /// Whether the wait for the arrivals timed out.
    pub timed_out: bool,
}

impl Flow {
    pub fn expected(&self) -> usize {
        self.chats * self.per_chat
    }
    pub fn delivered(&self) -> usize {
        self.checks.iter().map(|c| c.delivered).sum()
    }
    pub fn exact(&self) -> bool {
        !self.timed_out && self.checks.len() == self.chats && self.checks.iter().all(SeqCheck::exact)
    }
    pub fn rate(&self) -> Option<f64> {
        sustained_rate(&self.arrivals)
    }
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.timed_out {
            out.push(format!("{name}: timed out with {} of {} messages delivered", self.delivered(), self.expected()));
        }
        for (k, c) in self.checks.iter().enumerate() {
            if !c.exact() {
                out.push(format!(
                    "{name}: chat {k}: {} of {} delivered, {} missing, {} duplicates, {} out of order",
                    c.delivered, c.expected, c.missing, c.duplicates, c.out_of_order
                ));
            }
        }
        out
    }
}

// ---- the bridge thread ----------------------------------------------------------------------

/// A bridge on its own runtime thread (two workers, as `__im-bridge` runs).
pub struct Bridge {
    stop: StopToken,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Bridge {
    pub fn spawn<F, Fut>(f: F) -> Bridge
    where
        F: FnOnce(StopToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let stop = StopToken::new();
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-bridge".into())
            .spawn(move || {
                // Two workers, as `__im-bridge` runs.
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
                rt.block_on(f(s))
            })
            .expect("spawn the bridge thread");
        Bridge { stop, thread: Some(thread) }
    }

    pub fn stop(mut self) -> Result<()> {
        self.stop.stop();
        let r = self.thread.take().expect("running bridge").join().map_err(|_| anyhow!("the bridge thread panicked"))?;
        r.map_err(|e| anyhow!("bridge: {e}"))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Bridge {
    /// A platform crate's real `run_bridge` (credential lock, transport, everything), which
    /// must end with a clean stop.
    pub fn real<F, Fut>(opts: BridgeOptions, run_bridge: F) -> Bridge
    where
        F: FnOnce(BridgeOptions, StopToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = i32>,
    {
        Bridge::spawn(move |stop| async move {
            match run_bridge(opts, stop).await {
                cccc_bridge::process::EXIT_OK => Ok(()),
                code => Err(format!("run_bridge exited with {code}")),
            }
        })
    }
}

// ---- one run ------------------------------------------------------------------------------

/// When and where a bridge bench ran (the first line of its section).
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub date: String,
    pub wall: Duration,
    pub load_start: String,
    pub load_end: String,
    pub daemon_version: String,
}

impl RunInfo {
    pub fn line(&self) -> String {
        format!(
            "Run on {} (UTC date), {:.0} s wall time; load average at start / end {} / {}; daemon `ping`: {}.\n\n",
            self.date,
            self.wall.as_secs_f64(),
            self.load_start,
            self.load_end,
            self.daemon_version
        )
    }
}

/// Start our daemon in a fresh home named `label`, run `phases` against it (daemon, work
/// dir, home), stop it, and remove the work dir unless `--keep`.
pub fn run_with_daemon(cfg: &Cfg, label: &str, phases: impl FnOnce(&Daemon, &Path, &Path) -> Result<()>) -> Result<RunInfo> {
    let started = Instant::now();
    let now = cccc_proto::ts::now();
    let mut info = RunInfo { date: now.get(..10).unwrap_or(&now).to_string(), load_start: crate::report::loadavg(), ..Default::default() };
    let t = Target::new(Kind::Ours, cfg);
    let (work, home) = fresh_home(cfg, t.kind, label)?;
    let res = (|| -> Result<()> {
        let (d, _, ping) = Daemon::start(&t.launch, &home, "ping", json!({}), Duration::from_secs(60))?;
        info.daemon_version = crate::ping_version(&ping);
        let r = phases(&d, &work, &home);
        let stopped = d.stop();
        r?;
        stopped
    })();
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    res?;
    info.wall = started.elapsed();
    info.load_end = crate::report::loadavg();
    Ok(info)
}

// ---- collection ---------------------------------------------------------------------------

/// Wait (polling, so the bench stays off the fake's hot path) until every chat of every
/// `(chats, phase, flow)` holds `flow.per_chat` messages of its phase, then build the flows.
/// `fetch(chat)` is what the fake received in that chat, in arrival order: `(text, arrival)`.
pub fn collect<C: Copy>(fetch: impl Fn(C) -> Vec<(String, Instant)>, start: Instant, flows: &mut [(&[C], &str, &mut Flow)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let count = |c: C, phase: &str| fetch(c).iter().filter(|s| marker(phase, &s.0).is_some()).count();
    let timed_out = loop {
        let done = flows.iter().all(|(chats, phase, f)| chats.iter().all(|c| count(*c, phase) >= f.per_chat));
        if done {
            break false;
        }
        if Instant::now() > deadline {
            break true;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // A little longer: a duplicate right behind the last message must be seen too.
    std::thread::sleep(Duration::from_millis(1500));
    for (chats, phase, f) in flows.iter_mut() {
        f.timed_out = timed_out;
        let mut all = Vec::new();
        let mut rates = Vec::new();
        let mut first_done: Option<Duration> = None;
        for c in chats.iter() {
            let got: Vec<(usize, Duration)> = fetch(*c).iter().filter_map(|s| Some((marker(phase, &s.0)?, s.1.saturating_duration_since(start)))).collect();
            let ids: Vec<usize> = got.iter().map(|x| x.0).collect();
            f.checks.push(check_sequence(&ids, f.per_chat));
            let mut t: Vec<Duration> = got.iter().map(|x| x.1).collect();
            t.sort();
            if let Some(&last) = t.last() {
                first_done = Some(first_done.map_or(last, |f| f.min(last)));
            }
            rates.extend(sustained_rate(&t));
            all.extend(t);
        }
        all.sort();
        f.saturated = all.iter().copied().filter(|t| first_done.is_some_and(|f| *t <= f)).collect();
        f.arrivals = all;
        f.chat_rate = rates.iter().copied().fold(None, |acc: Option<(f64, f64)>, r| Some(acc.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r)))));
    }
}

// ---- markdown -----------------------------------------------------------------------------

pub fn f2(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

pub fn lat_ms(l: &Lat, q: f64) -> String {
    l.pct(q).map_or("–".into(), |d| format!("{:.2}", ms(d)))
}

pub fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**NO**" }
}

/// An agent message to `user` (`send` by `lead`), which a bridge mirrors to the group's chats.
pub fn say(d: &Daemon, gid: &str, text: &str) -> Result<Value> {
    d.call("send", json!({"group_id": gid, "text": text, "by": "lead", "to": ["user"]}))
}

/// A group titled `title` with a headless `lead` actor, attached to `work/project-<dir>`, and its
/// IM config set with `im_set` (`im` holds the platform's fields).
pub fn create_group(d: &Daemon, work: &Path, title: &str, dir: &str, im: Value) -> Result<String> {
    let r = d.call("group_create", json!({"title": title, "by": "user"}))?;
    let id = r["group_id"].as_str().ok_or_else(|| anyhow!("group_create: no group_id"))?.to_string();
    let project = work.join(format!("project-{dir}"));
    std::fs::create_dir_all(&project)?;
    d.call("attach", json!({"path": project.to_string_lossy(), "group_id": id, "by": "user"}))?;
    d.call("actor_add", json!({"group_id": id, "actor_id": "lead", "title": "Lead", "runtime": "custom", "runner": "headless", "by": "user"}))?;
    let mut args = json!({"group_id": id, "by": "user"});
    for (k, v) in im.as_object().into_iter().flatten() {
        args[k] = v.clone();
    }
    d.call("im_set", args)?;
    Ok(id)
}

/// Replace the section between `begin` and `end` in the markdown file, or append it.
pub fn write_section(path: &Path, begin: &str, end: &str, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section.trim_end(), &text[b + end.len()..]),
        _ => format!("{}\n\n{section}", text.trim_end()),
    };
    std::fs::write(path, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_check_finds_loss_duplicates_and_reordering() {
        assert!(check_sequence(&[0, 1, 2, 3], 4).exact());
        let c = check_sequence(&[0, 2, 3], 4);
        assert_eq!((c.missing, c.duplicates, c.out_of_order), (1, 0, 0));
        let c = check_sequence(&[0, 1, 1, 2, 3], 4);
        assert_eq!((c.missing, c.duplicates, c.out_of_order), (0, 1, 0));
        assert!(!c.exact());
        let c = check_sequence(&[0, 2, 1, 3], 4);
        assert_eq!((c.missing, c.duplicates, c.out_of_order), (0, 0, 1));
        assert!(!c.exact());
        let c = check_sequence(&[0, 1, 7], 2);
        assert_eq!(c.duplicates, 1);
        assert!(!check_sequence(&[], 1).exact());
    }

    #[test]
    fn rates_and_windows() {
        let t: Vec<Duration> = (0..11).map(|i| Duration::from_millis(1000 * i)).collect();
        assert!((sustained_rate(&t).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(sustained_rate(&t[..1]), None);
        assert_eq!(max_in_window(&t, Duration::from_millis(950)), 1);
        assert_eq!(max_in_window(&t, Duration::from_millis(1000)), 1);
        assert_eq!(max_in_window(&t, Duration::from_millis(1001)), 2);
        assert_eq!(max_in_window(&t, Duration::from_secs(60)), 11);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }

    #[test]
    fn markers_are_found_in_rendered_text() {
        assert_eq!(marker("a", "Lead → user\nbench-a-0042"), Some(42));
        assert_eq!(marker("a", "Lead → user\nbench-b-0042"), None);
        assert_eq!(marker("lat", &format!("x {}", marked("lat", 7))), Some(7));
    }
}
