//! `--discord`: the outbound path of the Discord bridge, ledger → channel (ours only; the
//! reference's Discord bridge cannot be pointed at a fake Discord without patching it).
//!
//! Set-up: our daemon (`target/release/ccccd`, as for every other figure), bridge-testkit's
//! fake Discord (REST + Gateway) on 127.0.0.1 ([`FakeDiscord`]), and the bridge itself in this
//! process (`cccc_discord::run_bridge` on its own tokio runtime, exactly what `cccc __im-bridge
//! --platform discord` runs). Every group's `im` names the fake's guild, so the bridge creates
//! one text channel per group (named after the group's title) and serves it without pairing.
//! Groups: `lat`, `one` (the single-channel bursts) and `m0`…`m9` (the multi-channel burst).
//! Messages are agent messages to `user` (`send` with `by: lead`).
//!
//! Discord has no pacer in our bridge (`pacer()` is `None`) and the fake does no bucket
//! accounting (it only answers 429 when told to), so every figure here is the bridge's own
//! ceiling, not Discord's limits (≈ 5 msgs / 5 s per channel, 50 requests/s global).
//!
//! - **Latency**: `send` acknowledged (the event is durable) → the fake *received* the
//!   `POST /channels/{id}/messages` ([`DMessage::created`]); one message at a time, each sent
//!   after the previous one arrived, after a few unmeasured warm-ups.
//! - **Throughput**: (1) a burst of `burst` messages appended to `one`; (2) `multi_n` messages to
//!   each of `multi_channels` groups, appended interleaved (aggregate rate); (3) the burst of (1)
//!   again with `faults` consecutive 429s (`retry_after` = `retry_after` s, not global) injected
//!   on the create-message route as the burst starts: the difference in all-in time is what
//!   honouring `retry_after` costs. Each channel's arrivals are checked: every message exactly
//!   once, in order.

use crate::common::{self, Bridge, Flow, SeqCheck, check_sequence, collect, f2, lat_ms, marked, marker, say, write_section, yes};
use crate::procs::Daemon;
use crate::{Cfg, Lat, ms};
use anyhow::{Result, anyhow, bail};
use bridge_testkit::discord::{FakeDiscord, Fault, Snowflake, normalize_channel_name, routes};
use cccc_bridge::runner;
use cccc_discord::BridgeOptions;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub lat_n: usize,
    pub warmup: usize,
    /// (1) and (3): messages to one channel.
    pub burst: usize,
    /// (2) channels, and messages to each.
    pub multi_channels: usize,
    pub multi_n: usize,
    /// (3) 429s injected, and their `retry_after` in seconds.
    pub faults: usize,
    pub retry_after: f64,
}

impl Plan {
    pub fn full() -> Plan {
        Plan { lat_n: 200, warmup: 5, burst: 500, multi_channels: 10, multi_n: 100, faults: 5, retry_after: 0.5 }
    }
    /// A smoke run: same phases, small counts.
    pub fn quick() -> Plan {
        Plan { lat_n: 30, warmup: 3, burst: 50, multi_channels: 10, multi_n: 10, faults: 5, retry_after: 0.5 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DcResults {
    pub plan: Option<Plan>,
    pub lat: Lat,
    pub lat_check: SeqCheck,
    pub one: Flow,
    pub multi: Flow,
    pub retry: Flow,
    /// Create-message requests during (3): all of them, and those answered 429.
    pub retry_requests: usize,
    pub retry_429: usize,
    /// The longest gap between consecutive arrivals in (1) and in (3).
    pub one_max_gap: Duration,
    pub retry_max_gap: Duration,
    /// Create-message requests answered 429 outside (3), and non-429 errors overall.
    pub stray_429: usize,
    pub other_errors: usize,
    /// Create-message requests beyond one per message, (1) and (2).
    pub extra_requests: usize,
    /// `im_set` of every group → every channel created and served.
    pub setup: Duration,
    pub channels: usize,
    pub run: common::RunInfo,
    pub problems: Vec<String>,
}


const WAIT: Duration = Duration::from_secs(60);

struct World<'a> {
    d: &'a Daemon,
    dc: FakeDiscord,
    opts: BridgeOptions,
}

impl World<'_> {
    fn status(&self) -> Value {
        cccc_core::home::read_json(&cccc_discord::state_dir(&self.opts).join(runner::STATUS_FILE)).unwrap_or(Value::Null)
    }

    fn texts(&self, ch: Snowflake) -> Vec<(String, Instant)> {
        self.dc.bot_messages(ch).into_iter().map(|m| (m.content, m.created)).collect()
    }

    /// Send one probe to `gid` and wait until its channel has it.
    fn probe(&self, gid: &str, ch: Snowflake, i: usize) -> Result<()> {
        let tag = marked("probe", i);
        say(self.d, gid, &tag)?;
        if !self.dc.wait_for(WAIT, |dc| dc.bot_messages(ch).iter().any(|m| m.content.contains(&tag))) {
            bail!("probe {tag} did not reach the channel of group {gid} within {WAIT:?}");
        }
        Ok(())
    }

    /// One message at a time: `send` acknowledged → the fake received the create-message request.
    fn latency(&self, gid: &str, ch: Snowflake, phase: &str, n: usize, warmup: usize) -> Result<(Lat, SeqCheck)> {
        let mut lats = Vec::with_capacity(n);
        for i in 0..warmup + n {
            let tag = marked(phase, i);
            say(self.d, gid, &tag)?;
            let acked = Instant::now();
            let mut at = None;
            let ok = self.dc.wait_for(Duration::from_secs(30), |dc| {
                at = dc.bot_messages(ch).iter().rev().find(|m| m.content.contains(&tag)).map(|m| m.created);
                at.is_some()
            });
            let at = at.filter(|_| ok).ok_or_else(|| anyhow!("{phase}: message {i} did not arrive within 30 s"))?;
            if i >= warmup {
                lats.push(at.saturating_duration_since(acked));
            }
        }
        let ids: Vec<usize> = self.dc.bot_messages(ch).iter().filter_map(|m| marker(phase, &m.content)).collect();
        Ok((Lat(lats), check_sequence(&ids, warmup + n)))
    }

    /// Create-message requests received since `t` to the channels `chs`: (all, 429s, other errors).
    fn requests_since(&self, t: Instant, chs: &[Snowflake]) -> (usize, usize, usize) {
        let reqs: Vec<_> = self
            .dc
            .requests(routes::CREATE_MESSAGE)
            .into_iter()
            .filter(|r| r.at >= t && chs.iter().any(|c| r.path == format!("/channels/{c}/messages")))
            .collect();
        let too_many = reqs.iter().filter(|r| r.status == 429).count();
        let other = reqs.iter().filter(|r| r.status != 200 && r.status != 429).count();
        (reqs.len(), too_many, other)
    }
}

fn max_gap(t: &[Duration]) -> Duration {
    t.windows(2).map(|x| x[1] - x[0]).max().unwrap_or_default()
}

pub fn run(cfg: &Cfg, plan: &Plan) -> Result<DcResults> {
    let mut out = DcResults { plan: Some(plan.clone()), ..Default::default() };
    out.run = common::run_with_daemon(cfg, "discord", |d, work, home| run_phases(d, work, home, plan, &mut out))?;
    Ok(out)
}

fn run_phases(d: &Daemon, work: &Path, home: &Path, plan: &Plan, out: &mut DcResults) -> Result<()> {
    let dc = FakeDiscord::start();
    let guild = dc.guild("Bench");
    // The token variable exists only in the bridge's injected lookup: the daemon's environment
    // does not have it, so its supervisor never starts a bridge process of its own.
    let var = format!("CCCC_DC_BENCH_TOKEN_{}", std::process::id());
    if std::env::var_os(&var).is_some() {
        bail!("{var} is set in the environment; the daemon would start its own bridge");
    }
    let mut names: Vec<String> = vec!["lat".into(), "one".into()];
    names.extend((0..plan.multi_channels).map(|k| format!("m{k}")));
    let im = json!({"platform": "discord", "bot_token_env": var, "api_url": dc.api_base(), "guild_id": guild.to_string()});
    let t0 = Instant::now();
    let groups: Vec<String> = names.iter().map(|n| common::create_group(d, work, &format!("dc-bench {n}"), n, im.clone())).collect::<Result<_>>()?;
    let mut opts = BridgeOptions::new(home, dc.token());
    opts.api_url = Some(dc.api_base());
    let token = dc.token();
    opts.env = Arc::new(move |name: &str| (name == var).then(|| token.clone()));
    // A shorter wait for updates (a quicker stop); scan/pass/status keep `__im-bridge`'s defaults.
    opts.poll_timeout_secs = 2;
    let w = World { d, dc, opts };

    eprintln!("discord: {} groups, waiting for their channels", groups.len());
    let bridge = Bridge::real(w.opts.clone(), cccc_discord::run_bridge);
    let want: Vec<String> = names.iter().map(|n| normalize_channel_name(&format!("dc-bench {n}"), 0)).collect();
    let mut chans: Vec<Snowflake> = Vec::new();
    let ok = w.dc.wait_for(WAIT, |dc| {
        let have = dc.channels(guild);
        chans = want.iter().filter_map(|n| have.iter().find(|c| c.kind == 0 && &c.name == n).map(|c| c.id)).collect();
        chans.len() == want.len()
    });
    if !ok {
        bail!("only {} of {} channels were created within {WAIT:?}", chans.len(), want.len());
    }
    for (k, (g, c)) in groups.iter().zip(&chans).enumerate() {
        w.probe(g, *c, k)?;
    }
    out.setup = t0.elapsed();
    out.channels = chans.len();
    let (lat_g, lat_c) = (&groups[0], chans[0]);
    let (one_g, one_c) = (&groups[1], chans[1]);
    let (multi_g, multi_c) = (&groups[2..], &chans[2..]);
    let fetch = |c: Snowflake| w.texts(c);

    // Latency.
    eprintln!("discord: latency, {} messages one at a time", plan.lat_n);
    let (l, chk) = w.latency(lat_g, lat_c, "lat", plan.lat_n, plan.warmup)?;
    out.lat = l;
    out.lat_check = chk;

    // (1) one channel.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("discord: (1) burst of {} to one channel", plan.burst);
    out.one = Flow { chats: 1, per_chat: plan.burst, ..Default::default() };
    let start = Instant::now();
    for i in 0..plan.burst {
        say(d, one_g, &marked("one", i))?;
    }
    out.one.append = start.elapsed();
    collect(fetch, start, &mut [(&[one_c][..], "one", &mut out.one)], Duration::from_secs(120));
    out.one_max_gap = max_gap(&out.one.arrivals);
    let (n1, tm1, e1) = w.requests_since(start, &[one_c]);

    // (2) many channels.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("discord: (2) {} channels × {} messages", plan.multi_channels, plan.multi_n);
    out.multi = Flow { chats: plan.multi_channels, per_chat: plan.multi_n, ..Default::default() };
    let start = Instant::now();
    for i in 0..plan.multi_n {
        for g in multi_g {
            say(d, g, &marked("m", i))?;
        }
    }
    out.multi.append = start.elapsed();
    collect(fetch, start, &mut [(multi_c, "m", &mut out.multi)], Duration::from_secs(120));
    let (n2, tm2, e2) = w.requests_since(start, multi_c);

    // (3) the burst of (1) with 429s injected.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("discord: (3) burst of {} to one channel, {} × 429 (retry_after {} s) injected", plan.burst, plan.faults, plan.retry_after);
    out.retry = Flow { chats: 1, per_chat: plan.burst, ..Default::default() };
    let start = Instant::now();
    w.dc.fail_next(routes::CREATE_MESSAGE, Fault::TooManyRequests { retry_after: plan.retry_after, global: false }, plan.faults);
    for i in 0..plan.burst {
        say(d, one_g, &marked("r", i))?;
    }
    out.retry.append = start.elapsed();
    collect(fetch, start, &mut [(&[one_c][..], "r", &mut out.retry)], Duration::from_secs(120));
    out.retry_max_gap = max_gap(&out.retry.arrivals);
    let (n3, tm3, e3) = w.requests_since(start, &[one_c]);
    out.retry_requests = n3;
    out.retry_429 = tm3;

    let status = w.status();
    bridge.stop()?;

    out.stray_429 = tm1 + tm2;
    out.other_errors = e1 + e2 + e3;
    out.extra_requests = (n1 + n2).saturating_sub(plan.burst + plan.multi_channels * plan.multi_n);
    if !out.lat_check.exact() {
        let c = &out.lat_check;
        out.problems.push(format!("latency: {} of {} delivered, {} missing, {} duplicates, {} out of order", c.delivered, c.expected, c.missing, c.duplicates, c.out_of_order));
    }
    out.problems.extend(out.one.problems("(1) one channel"));
    out.problems.extend(out.multi.problems("(2) many channels"));
    out.problems.extend(out.retry.problems("(3) one channel with 429s"));
    if out.stray_429 > 0 {
        out.problems.push(format!("{} create-message requests were answered 429 outside phase (3) (the fake only answers 429 when told to)", out.stray_429));
    }
    if out.other_errors > 0 {
        out.problems.push(format!("{} create-message requests failed (not 429)", out.other_errors));
    }
    if out.extra_requests > 0 {
        out.problems.push(format!("{} create-message requests more than messages in (1)+(2) with no fault injected", out.extra_requests));
    }
    if out.retry_429 != plan.faults {
        out.problems.push(format!("(3): {} of the {} injected 429s were seen", out.retry_429, plan.faults));
    }
    if let Some(chats) = status["chats"].as_object() {
        for (k, v) in chats {
            if let Some(e) = v["last_error"].as_str().filter(|e| !e.is_empty()) {
                out.problems.push(format!("bridge status: chat {k}: last_error {e}"));
            }
        }
    }
    Ok(())
}

// ---- report -------------------------------------------------------------------------------

pub const BEGIN: &str = "<!-- cccc-bench:discord:begin (generated by `cccc-bench --discord --markdown`) -->";
pub const END: &str = "<!-- cccc-bench:discord:end -->";

pub fn markdown(r: &DcResults) -> String {
    let p = r.plan.clone().unwrap_or_else(Plan::full);
    let all_in = |f: &Flow| f.arrivals.last().map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    let all_in_rate = |f: &Flow| f.arrivals.last().filter(|d| !d.is_zero()).map_or("–".into(), |d| format!("{:.1}", f.expected() as f64 / d.as_secs_f64()));
    let exact = |f: &Flow| format!("{} ({} of {})", yes(f.exact()), f.delivered(), f.expected());
    let max_lat = r.lat.0.iter().max().map_or("–".into(), |d| format!("{:.2}", ms(*d)));
    let mut s = format!("{BEGIN}\n\n### Discord bridge, outbound (ours)\n\n");
    s.push_str(&r.run.line());
    s.push_str("| metric | value | every message once, in order |\n| --- | ---: | :---: |\n");
    s.push_str(&format!(
        "| latency, `send` acknowledged → fake received `POST /channels/{{id}}/messages` ({} msgs, one at a time): p50 / p99 / max | {} / {} / {} ms | {} ({} of {}) |\n",
        p.lat_n,
        lat_ms(&r.lat, 0.5),
        lat_ms(&r.lat, 0.99),
        max_lat,
        yes(r.lat_check.exact()),
        r.lat_check.delivered,
        r.lat_check.expected
    ));
    s.push_str(&format!(
        "| (1) 1 channel, burst of {}: sustained rate (all-in rate; all in; longest gap) | {} msg/s ({} msg/s; {}; {:.0} ms) | {} |\n",
        p.burst,
        f2(r.one.rate()),
        all_in_rate(&r.one),
        all_in(&r.one),
        ms(r.one_max_gap),
        exact(&r.one)
    ));
    s.push_str(&format!(
        "| (2) {} channels × {} msgs ({} sends): aggregate sustained rate (all-in rate; all in; per channel) | {} msg/s ({} msg/s; {}; {} msg/s) | {} |\n",
        p.multi_channels,
        p.multi_n,
        p.multi_channels * p.multi_n,
        f2(r.multi.rate()),
        all_in_rate(&r.multi),
        all_in(&r.multi),
        r.multi.chat_rate.map_or("–".into(), |(lo, hi)| format!("{lo:.1}–{hi:.1}")),
        exact(&r.multi)
    ));
    let cost = match (r.retry.arrivals.last(), r.one.arrivals.last()) {
        (Some(a), Some(b)) => format!("{:+.2} s", a.as_secs_f64() - b.as_secs_f64()),
        _ => "–".into(),
    };
    s.push_str(&format!(
        "| (3) as (1) with {} × 429 (`retry_after` {} s) injected: sustained rate (all in; cost vs (1); longest gap) | {} msg/s ({}; {cost}; {:.0} ms) | {} |\n",
        p.faults,
        p.retry_after,
        f2(r.retry.rate()),
        all_in(&r.retry),
        ms(r.retry_max_gap),
        exact(&r.retry)
    ));
    s.push_str(&format!(
        "| (3) create-message requests / answered 429 | {} / {} |  |\n",
        r.retry_requests, r.retry_429
    ));
    s.push_str(&format!(
        "| bursts appended (all `send`s acknowledged): (1) / (2) / (3) | {:.0} / {:.0} / {:.0} ms |  |\n",
        ms(r.one.append),
        ms(r.multi.append),
        ms(r.retry.append)
    ));
    s.push_str(&format!(
        "| set-up: `im_set` of {} groups → every channel created and a probe delivered in each | {:.1} s |  |\n\n",
        r.channels,
        r.setup.as_secs_f64()
    ));
    if r.problems.is_empty() {
        s.push_str("No message was lost, duplicated or reordered; no request failed except the injected 429s.\n\n");
    } else {
        s.push_str("**Problems found in this run:**\n\n");
        for pr in &r.problems {
            s.push_str(&format!("- **{pr}**\n"));
        }
        s.push('\n');
    }
    s.push_str(
        "Sustained rates are (n − 1) / (last arrival − first arrival), from the fake's arrival times;\n\
\"all in\" is from the first `send` of the burst to the last arrival, and the all-in rate is the\n\
burst size over that. The latency series starts with unmeasured warm-up messages (counted in the\n\
last column). The fake does not model Discord's rate limits, so these are the bridge's own\n\
ceilings. No reference figure: the reference's Discord bridge cannot be pointed at a fake\n\
Discord. Command: `cargo run --release -p cccc-bench -- --discord --markdown docs/benchmarks.md`\n\
(not part of `--all`).\n\n",
    );
    s.push_str(END);
    s.push('\n');
    s
}

/// Replace the Discord section of the markdown file, or append it.
pub fn write_markdown(path: &Path, section: &str) -> Result<()> {
    write_section(path, BEGIN, END, section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_renders_and_replaces_only_itself() {
        let dir = std::env::temp_dir().join(format!("cccc-bench-dc-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.md");
        let tg = format!("{}\nx\n{}\n", crate::telegram::BEGIN, crate::telegram::END);
        std::fs::write(&p, format!("# B\n\n{tg}")).unwrap();
        let r = DcResults { plan: Some(Plan::quick()), ..Default::default() };
        let s1 = markdown(&r);
        assert!(s1.contains("Discord bridge") && s1.ends_with(&format!("{END}\n")));
        write_markdown(&p, &s1).unwrap();
        let t1 = std::fs::read_to_string(&p).unwrap();
        assert!(t1.contains(&tg) && t1.contains(BEGIN));
        std::fs::write(&p, format!("{t1}\n## after\n")).unwrap();
        write_markdown(&p, &s1).unwrap();
        let t2 = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t2.matches(BEGIN).count(), 1);
        assert!(t2.contains(&tg) && t2.ends_with("## after\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn max_gap_of_arrivals() {
        let t: Vec<Duration> = [0, 10, 510, 520].iter().map(|&m| Duration::from_millis(m)).collect();
        assert_eq!(max_gap(&t), Duration::from_millis(500));
        assert_eq!(max_gap(&[]), Duration::ZERO);
    }
}
