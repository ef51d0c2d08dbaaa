//! `--telegram`: the outbound path of the Telegram bridge, ledger → chat (ours only; the
//! reference's Telegram bridge cannot be pointed at a fake Bot API without patching it).
//!
//! Set-up: our daemon (`target/release/ccccd`, as for every other figure), bridge-testkit's
//! fake Bot API on 127.0.0.1 ([`FakeTelegram`]), and the bridge itself in this process
//! (`cccc_telegram::run_bridge` on its own tokio runtime, exactly what `cccc __im-bridge` runs).
//! Four groups share the one bot: `lat` (one private chat), `a` (one private chat), `c` (one
//! basic group chat) and `b` (40 private chats). Every chat is paired the way a user pairs it
//! (`/subscribe` in the chat, then `im_bind_chat` with the key). Messages are agent messages
//! to `user` (`send` with `by: lead`), which the bridge mirrors to every chat bound to the group.
//!
//! - **Latency**: `send` acknowledged (the event is durable) → the fake *received* the
//!   `sendMessage` request ([`Sent::at`]); both are `Instant`s of this process. One message at a
//!   time, each sent after the previous one arrived. The bridge's pacer would hold every message
//!   to one chat for up to 1 s, so the main figure runs the same runner and Telegram transport
//!   with the pacer removed ([`Unpaced`]; the fake's flood control is off too), after a few
//!   unmeasured warm-up messages. Two short series space messages 1.1 s apart, under every
//!   limit: without the pacer, then with the real bridge; the pair isolates the pacer's cost.
//! - **Throughput under the pacing limits**, real bridge, the fake's flood control on
//!   (Telegram's documented limits, so a bridge that exceeds them collects 429s, which are
//!   counted): (a) 120 messages appended in a burst to a group with one private chat
//!   (limit 1 msg/s per chat), together with (c) 40 to a group whose chat is a group chat
//!   (20 msgs/min per group chat; (a) and (c) together use 1.3 msg/s of the 30/s global budget);
//!   then (b) 30 messages to a group with 40 private chats (1,200 sends; the 30/s global limit
//!   binds, since 40 chats × 1/s > 30/s). Each chat's arrivals are checked: every message
//!   exactly once, in order.

use crate::common::{self, Bridge, Flow, SeqCheck, check_sequence, collect, f2, lat_ms, marked, marker, max_in_window, say, sustained_rate, write_section, yes};
use crate::procs::Daemon;
use crate::{Cfg, Lat, ms};
use anyhow::{Context, Result, anyhow, bail};
use bridge_testkit::telegram::{ChatRef, FakeTelegram, RateLimits, User};
use cccc_bridge::render::{Outbound, Profile};
use cccc_bridge::runner;
use cccc_bridge::{BotIdentity, BoxFuture, ChatTarget, DeliverOpts, Platform, PlatformRef, SendFailure, Update};
use cccc_telegram::{BridgeOptions, TelegramPlatform, TgPiece};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Latency samples without the pacer (after `warmup`).
    pub lat_n: usize,
    pub warmup: usize,
    /// Latency samples spaced `lat_paced_gap` apart: without the pacer, then with the real
    /// bridge (the same spacing both times, so the pair isolates the pacer).
    pub lat_paced_n: usize,
    pub lat_paced_gap: Duration,
    /// (a) messages to one private chat.
    pub a_n: usize,
    /// (c) messages to one group chat.
    pub c_n: usize,
    /// (b) private chats, and messages to each.
    pub b_chats: usize,
    pub b_n: usize,
}

impl Plan {
    pub fn full() -> Plan {
        Plan { lat_n: 200, warmup: 5, lat_paced_n: 15, lat_paced_gap: Duration::from_millis(1100), a_n: 120, c_n: 40, b_chats: 40, b_n: 30 }
    }
    /// A smoke run (about 50 s): same phases, small counts.
    pub fn quick() -> Plan {
        Plan { lat_n: 30, warmup: 3, lat_paced_n: 6, lat_paced_gap: Duration::from_millis(1100), a_n: 8, c_n: 4, b_chats: 40, b_n: 8 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TgResults {
    pub plan: Option<Plan>,
    pub lat: Lat,
    pub lat_paced: Lat,
    /// Spaced like `lat_paced`, without the pacer.
    pub lat_spaced: Lat,
    pub lat_spaced_check: SeqCheck,
    pub lat_check: SeqCheck,
    pub lat_paced_check: SeqCheck,
    pub a: Flow,
    pub b: Flow,
    pub c: Flow,
    /// sendMessage answers during the throughput phases: 429s and other errors.
    pub too_many: usize,
    pub other_errors: usize,
    pub pairing: Duration,
    pub run: common::RunInfo,
    pub problems: Vec<String>,
}

// ---- the bridge without its pacer ---------------------------------------------------------

/// The Telegram transport with [`Platform::pacer`] removed; everything else delegates.
struct Unpaced(TelegramPlatform);

impl Platform for Unpaced {
    type Piece = TgPiece;
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn profile(&self) -> Profile {
        self.0.profile()
    }
    fn verify(&self) -> BoxFuture<'_, Result<BotIdentity, SendFailure>> {
        self.0.verify()
    }
    fn render(&self, parts: &[Outbound]) -> Vec<TgPiece> {
        self.0.render(parts)
    }
    fn deliver<'a>(&'a self, target: &'a ChatTarget, piece: &'a TgPiece, opts: &'a DeliverOpts) -> BoxFuture<'a, Result<String, SendFailure>> {
        self.0.deliver(target, piece, opts)
    }
    fn notice<'a>(&'a self, target: &'a ChatTarget, text: &'a str, reply_to_message: Option<&'a str>) -> BoxFuture<'a, Result<String, SendFailure>> {
        self.0.notice(target, text, reply_to_message)
    }
    fn mark_acked<'a>(&'a self, at: &'a PlatformRef, by_name: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        self.0.mark_acked(at, by_name)
    }
    fn answer_button<'a>(&'a self, callback_id: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        self.0.answer_button(callback_id, text)
    }
    fn next_updates(&self) -> BoxFuture<'_, Result<Vec<Update>, SendFailure>> {
        self.0.next_updates()
    }
    fn updates_handled(&self) {
        self.0.updates_handled()
    }
    fn pacer(&self) -> Option<cccc_bridge::outbox::pacing::Pacer> {
        None
    }
    fn is_group_chat(&self, target: &ChatTarget) -> bool {
        self.0.is_group_chat(target)
    }
}


/// The same runner and transport without the pacer (takes the credential lock too).
fn unpaced_bridge(opts: BridgeOptions) -> Bridge {
    Bridge::spawn(move |stop| async move {
        let _lock = cccc_bridge::process::acquire_lock(&cccc_telegram::lock_path(&opts)).map_err(|_| "the credential lock is held".to_string())?;
        let state_dir = cccc_telegram::state_dir(&opts);
        std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
        let mut platform = TelegramPlatform::new(&opts.token, opts.api_url.as_deref(), state_dir)?;
        platform.poll_timeout_secs = opts.poll_timeout_secs;
        runner::run(Arc::new(Unpaced(platform)), opts.runner_config("telegram"), stop).await.map_err(|e| format!("runner: {e}"))
    })
}

// ---- the world ----------------------------------------------------------------------------

struct Grp {
    id: String,
    chats: Vec<ChatRef>,
}

struct World<'a> {
    d: &'a Daemon,
    tg: FakeTelegram,
    opts: BridgeOptions,
    /// The same chats, as the bridge's status names them.
    chat_keys: Vec<String>,
}

const WAIT: Duration = Duration::from_secs(60);

impl World<'_> {
    fn status(&self) -> Value {
        cccc_core::home::read_json(&cccc_telegram::state_dir(&self.opts).join(runner::STATUS_FILE)).unwrap_or(Value::Null)
    }

    /// `/subscribe` in every chat, `im_bind_chat` with each key, wait until the bridge serves
    /// them all.
    fn pair(&mut self, pairs: &[(ChatRef, User, String)]) -> Result<()> {
        let before: Vec<usize> = pairs.iter().map(|(c, _, _)| self.tg.sent(*c).len()).collect();
        for (chat, user, _) in pairs {
            self.tg.send_text(*chat, user, "/subscribe");
        }
        if !self.tg.wait_for(|tg| pairs.iter().zip(&before).all(|((c, _, _), b)| tg.sent(*c).len() > *b), WAIT) {
            bail!("pairing: not every chat got its /subscribe answer within {WAIT:?}");
        }
        for ((chat, _, gid), b) in pairs.iter().zip(&before) {
            let reply = self.tg.sent(*chat)[*b].text.clone();
            let key = reply.split("--key ").nth(1).and_then(|r| r.split_whitespace().next()).ok_or_else(|| anyhow!("no pairing key in the /subscribe answer"))?;
            let r = self.d.call("im_bind_chat", json!({"group_id": gid, "key": key, "by": "user"}))?;
            self.chat_keys.push(r["chat_key"].as_str().context("im_bind_chat: no chat_key")?.to_string());
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.status();
            if pairs.iter().zip(&self.chat_keys[self.chat_keys.len() - pairs.len()..]).all(|((_, _, gid), ck)| s["chats"][ck]["group_id"] == json!(gid)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pairing: the bridge's status never listed every chat");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn say(&self, gid: &str, text: &str) -> Result<Value> {
        say(self.d, gid, text)
    }

    /// Send one probe to `g` and wait until every chat of it has it (the chats' event streams
    /// are then open, so a burst is live traffic, not a replayed backlog).
    fn probe(&self, g: &Grp, i: usize) -> Result<()> {
        let tag = marked("probe", i);
        self.say(&g.id, &tag)?;
        let chats = g.chats.clone();
        let ok = self.tg.wait_for(|tg| chats.iter().all(|c| tg.sent(*c).iter().any(|s| s.text.contains(&tag))), WAIT);
        if !ok {
            bail!("probe {tag} did not reach every chat of group {} within {WAIT:?}", g.id);
        }
        Ok(())
    }

    /// One message at a time to `g` (one chat): `send` acknowledged → the fake received it.
    fn latency(&self, g: &Grp, phase: &str, n: usize, warmup: usize, gap: Duration) -> Result<(Lat, SeqCheck)> {
        let chat = g.chats[0];
        let mut lats = Vec::with_capacity(n);
        let mut last_send = None::<Instant>;
        for i in 0..warmup + n {
            if let Some(t) = last_send {
                let next = t + gap;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            let tag = marked(phase, i);
            let t0 = Instant::now();
            self.say(&g.id, &tag)?;
            let acked = Instant::now();
            last_send = Some(t0);
            let mut at = None;
            let ok = self.tg.wait_for(
                |tg| {
                    at = tg.sent(chat).iter().rev().find(|s| s.text.contains(&tag)).map(|s| s.at);
                    at.is_some()
                },
                Duration::from_secs(30),
            );
            let at = at.filter(|_| ok).ok_or_else(|| anyhow!("{phase}: message {i} did not arrive within 30 s"))?;
            if i >= warmup {
                lats.push(at.saturating_duration_since(acked));
            }
        }
        let ids: Vec<usize> = self.tg.sent(chat).iter().filter_map(|s| marker(phase, &s.text)).collect();
        Ok((Lat(lats), check_sequence(&ids, warmup + n)))
    }
}

fn create_group(d: &Daemon, work: &Path, name: &str, token_var: &str, api_url: &str) -> Result<String> {
    common::create_group(d, work, &format!("tg-bench {name}"), name, json!({"platform": "telegram", "bot_token_env": token_var, "api_url": api_url}))
}

pub fn run(cfg: &Cfg, plan: &Plan) -> Result<TgResults> {
    let mut out = TgResults { plan: Some(plan.clone()), ..Default::default() };
    out.run = common::run_with_daemon(cfg, "telegram", |d, work, home| run_phases(d, work, home, plan, &mut out))?;
    Ok(out)
}

fn run_phases(d: &Daemon, work: &Path, home: &Path, plan: &Plan, out: &mut TgResults) -> Result<()> {
    let tg = FakeTelegram::start();
    // The token variable exists only in the bridge's injected lookup: the daemon's environment
    // does not have it, so its supervisor never starts a bridge process of its own.
    let var = format!("CCCC_TG_BENCH_TOKEN_{}", std::process::id());
    if std::env::var_os(&var).is_some() {
        bail!("{var} is set in the environment; the daemon would start its own bridge");
    }
    let groups: Vec<String> = ["lat", "a", "c", "b"].iter().map(|n| create_group(d, work, n, &var, &tg.api_url())).collect::<Result<_>>()?;
    let mut opts = BridgeOptions::new(home, tg.bot_token());
    opts.api_url = Some(tg.api_url());
    let token = tg.bot_token();
    opts.env = Arc::new(move |name: &str| (name == var).then(|| token.clone()));
    // Only the getUpdates long poll is shorter (a quicker stop); scan/pass/status keep the
    // defaults of `__im-bridge`.
    opts.poll_timeout_secs = 2;

    let mut users = HashMap::new();
    let mut user = |id: i64| users.entry(id).or_insert_with(|| tg.user(id, &format!("U{id}"))).clone();
    let lat = Grp { id: groups[0].clone(), chats: vec![tg.private_chat(2001)] };
    let a = Grp { id: groups[1].clone(), chats: vec![tg.private_chat(2002)] };
    let c = Grp { id: groups[2].clone(), chats: vec![tg.group_chat(-4001, "Ops room")] };
    let b = Grp { id: groups[3].clone(), chats: (0..plan.b_chats as i64).map(|k| tg.private_chat(3000 + k)).collect() };
    let mut pairs = Vec::new();
    for g in [&lat, &a, &c, &b] {
        for ch in &g.chats {
            let u = user(if ch.chat_id > 0 { ch.chat_id } else { 2999 });
            pairs.push((*ch, u, g.id.clone()));
        }
    }
    let mut w = World { d, tg, opts, chat_keys: Vec::new() };

    // 1. Pair every chat and measure latency with the pacer removed.
    eprintln!("telegram: pairing {} chats (bridge without pacer)", pairs.len());
    let bridge = unpaced_bridge(w.opts.clone());
    let t0 = Instant::now();
    w.pair(&pairs)?;
    out.pairing = t0.elapsed();
    eprintln!("telegram: latency, {} messages one at a time (no pacer)", plan.lat_n);
    w.probe(&lat, 0)?;
    let (l, chk) = w.latency(&lat, "lat", plan.lat_n, plan.warmup, Duration::ZERO)?;
    out.lat = l;
    out.lat_check = chk;
    eprintln!("telegram: latency without the pacer, {} messages {:?} apart", plan.lat_paced_n, plan.lat_paced_gap);
    std::thread::sleep(plan.lat_paced_gap);
    let (l, chk) = w.latency(&lat, "spaced", plan.lat_paced_n, 0, plan.lat_paced_gap)?;
    out.lat_spaced = l;
    out.lat_spaced_check = chk;
    bridge.stop()?;

    // 2. The real bridge from here on, the fake's flood control on.
    eprintln!("telegram: real bridge (pacer on), fake flood control on");
    let bridge = Bridge::real(w.opts.clone(), cccc_telegram::run_bridge);
    w.tg.set_rate_limits(Some(RateLimits::telegram()));
    for (k, g) in [&lat, &a, &c, &b].into_iter().enumerate() {
        w.probe(g, 1 + k)?;
    }
    // Let every per-chat bucket refill before measuring (the group bucket needs ~3.2 s).
    std::thread::sleep(Duration::from_millis(3500));
    w.tg.clear_requests();
    eprintln!("telegram: latency with the pacer, {} messages {:?} apart", plan.lat_paced_n, plan.lat_paced_gap);
    let (l, chk) = w.latency(&lat, "paced", plan.lat_paced_n, 0, plan.lat_paced_gap)?;
    out.lat_paced = l;
    out.lat_paced_check = chk;

    // (a) + (c): one private chat and one group chat, in one burst.
    std::thread::sleep(Duration::from_millis(1100));
    eprintln!("telegram: (a) {} messages to one private chat + (c) {} to one group chat (≈ {} s)", plan.a_n, plan.c_n, plan.a_n.max(plan.c_n * 19 / 6));
    out.a = Flow { chats: 1, per_chat: plan.a_n, ..Default::default() };
    out.c = Flow { chats: 1, per_chat: plan.c_n, ..Default::default() };
    let start = Instant::now();
    for i in 0..plan.a_n.max(plan.c_n) {
        if i < plan.a_n {
            w.say(&a.id, &marked("a", i))?;
        }
        if i < plan.c_n {
            w.say(&c.id, &marked("c", i))?;
        }
    }
    let append = start.elapsed();
    out.a.append = append;
    out.c.append = append;
    let expect = Duration::from_secs_f64((plan.a_n as f64).max(plan.c_n as f64 * 60.0 / 19.0));
    collect(|c: ChatRef| w.tg.sent(c).into_iter().map(|s| (s.text, s.at)).collect(), start, &mut [(&a.chats[..], "a", &mut out.a), (&c.chats[..], "c", &mut out.c)], expect * 2 + Duration::from_secs(30));

    // (b): 40 private chats of one group.
    std::thread::sleep(Duration::from_millis(1100));
    eprintln!("telegram: (b) {} messages to {} private chats (≈ {} s)", plan.b_n, plan.b_chats, plan.b_n * plan.b_chats / 29);
    out.b = Flow { chats: plan.b_chats, per_chat: plan.b_n, ..Default::default() };
    let start = Instant::now();
    for i in 0..plan.b_n {
        w.say(&b.id, &marked("b", i))?;
    }
    out.b.append = start.elapsed();
    let expect = Duration::from_secs_f64((plan.b_n * plan.b_chats) as f64 / 29.0);
    collect(|c: ChatRef| w.tg.sent(c).into_iter().map(|s| (s.text, s.at)).collect(), start, &mut [(&b.chats[..], "b", &mut out.b)], expect * 2 + Duration::from_secs(30));
    let gaps = Lat(out.b.saturated.windows(2).map(|x| x[1] - x[0]).collect());
    eprintln!(
        "telegram: (b) while every chat had a backlog: {} arrivals; gaps between consecutive arrivals: p10 {:.1} / p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms",
        out.b.saturated.len(),
        ms(gaps.pct(0.1).unwrap_or_default()),
        ms(gaps.pct(0.5).unwrap_or_default()),
        ms(gaps.pct(0.9).unwrap_or_default()),
        ms(gaps.pct(0.99).unwrap_or_default()),
        ms(gaps.0.iter().max().copied().unwrap_or_default())
    );

    let reqs = w.tg.requests("sendMessage");
    out.too_many = reqs.iter().filter(|r| r.status == 429).count();
    out.other_errors = reqs.iter().filter(|r| r.status != 200 && r.status != 429).count();
    let status = w.status();
    bridge.stop()?;

    for (name, chk) in [("latency (no pacer)", &out.lat_check), ("latency (no pacer, spaced)", &out.lat_spaced_check), ("latency (pacer)", &out.lat_paced_check)] {
        if !chk.exact() {
            out.problems.push(format!("{name}: {} of {} delivered, {} missing, {} duplicates, {} out of order", chk.delivered, chk.expected, chk.missing, chk.duplicates, chk.out_of_order));
        }
    }
    out.problems.extend(out.a.problems("(a) one private chat"));
    out.problems.extend(out.c.problems("(c) one group chat"));
    out.problems.extend(out.b.problems("(b) many private chats"));
    if out.too_many > 0 {
        let detail: Vec<String> = reqs
            .iter()
            .filter(|r| r.status == 429)
            .map(|r| {
                let text = r.params["text"].as_str().unwrap_or("");
                let what = ["a", "b", "c", "paced", "probe"].iter().find_map(|p| marker(p, text).map(|i| marked(p, i))).unwrap_or_default();
                format!("chat {} {what} ({})", r.chat_id.unwrap_or(0), r.description.as_deref().unwrap_or(""))
            })
            .collect();
        out.problems.push(format!("{} sendMessage requests were answered 429 (the bridge exceeded a limit): {}", out.too_many, detail.join("; ")));
    }
    if out.other_errors > 0 {
        out.problems.push(format!("{} sendMessage requests failed (not 429)", out.other_errors));
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

pub const BEGIN: &str = "<!-- cccc-bench:telegram:begin (generated by `cccc-bench --telegram --markdown`) -->";
pub const END: &str = "<!-- cccc-bench:telegram:end -->";

pub fn markdown(r: &TgResults) -> String {
    let p = r.plan.clone().unwrap_or_else(Plan::full);
    let span = |f: &Flow| f.arrivals.last().map_or("–".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    let max_lat = |l: &Lat| l.0.iter().max().map_or("–".into(), |d| format!("{:.2}", ms(*d)));
    let chat_rates = |f: &Flow| f.chat_rate.map_or("–".into(), |(lo, hi)| format!("{lo:.3}–{hi:.3}"));
    let exact = |f: &Flow| format!("{} ({} of {})", yes(f.exact()), f.delivered(), f.expected());
    let mut s = format!("{BEGIN}\n\n### Telegram bridge, outbound (ours)\n\n");
    s.push_str(&r.run.line());
    s.push_str("| metric | value | limit | within the limit | every message once, in order |\n| --- | ---: | ---: | :---: | :---: |\n");
    s.push_str(&format!(
        "| latency, `send` acknowledged → fake received `sendMessage`, no pacer ({} msgs, one at a time): p50 / p99 / max | {} / {} / {} ms |  |  | {} |\n",
        p.lat_n,
        lat_ms(&r.lat, 0.5),
        lat_ms(&r.lat, 0.99),
        max_lat(&r.lat),
        format_args!("{} ({} of {})", yes(r.lat_check.exact()), r.lat_check.delivered, r.lat_check.expected)
    ));
    s.push_str(&format!(
        "| the same, no pacer, {} msgs {:.1} s apart: p50 / max | {} / {} ms |  |  | {} |\n",
        p.lat_paced_n,
        p.lat_paced_gap.as_secs_f64(),
        lat_ms(&r.lat_spaced, 0.5),
        max_lat(&r.lat_spaced),
        format_args!("{} ({} of {})", yes(r.lat_spaced_check.exact()), r.lat_spaced_check.delivered, r.lat_spaced_check.expected)
    ));
    s.push_str(&format!(
        "| the same, real bridge (pacer on), {} msgs {:.1} s apart: p50 / max | {} / {} ms |  |  | {} |\n",
        p.lat_paced_n,
        p.lat_paced_gap.as_secs_f64(),
        lat_ms(&r.lat_paced, 0.5),
        max_lat(&r.lat_paced),
        format_args!("{} ({} of {})", yes(r.lat_paced_check.exact()), r.lat_paced_check.delivered, r.lat_paced_check.expected)
    ));
    let a_rate = r.a.rate();
    s.push_str(&format!(
        "| (a) 1 private chat, burst of {}: sustained rate | {} msg/s (all in {}) | 1 msg/s per chat | {} |  {} |\n",
        p.a_n,
        f2(a_rate),
        span(&r.a),
        yes(max_in_window(&r.a.arrivals, Duration::from_millis(950)) <= 1),
        exact(&r.a)
    ));
    let c_rate = r.c.rate().map(|x| x * 60.0);
    let c_win = max_in_window(&r.c.arrivals, Duration::from_secs(60));
    s.push_str(&format!(
        "| (c) 1 group chat, burst of {} (at the same time as (a)): sustained rate | {} msg/min (all in {}; most in any 60 s: {c_win}) | 20 msg/min per group chat | {} | {} |\n",
        p.c_n,
        f2(c_rate),
        span(&r.c),
        yes(c_win <= 20),
        exact(&r.c)
    ));
    let b_win = max_in_window(&r.b.arrivals, Duration::from_secs(1));
    s.push_str(&format!(
        "| (b) {} private chats × {} msgs ({} sends): sustained rate, all chats | {} msg/s (all in {}; most in any 1 s: {b_win}; per chat {} msg/s) | 30 msg/s global | {} | {} |\n",
        p.b_chats,
        p.b_n,
        p.b_chats * p.b_n,
        f2(r.b.rate()),
        span(&r.b),
        chat_rates(&r.b),
        yes(b_win <= 30),
        exact(&r.b)
    ));
    s.push_str(&format!(
        "| (b) the same, while every chat still had messages waiting (the first {} arrivals): sustained rate | {} msg/s | 30 msg/s global |  |  |\n",
        r.b.saturated.len(),
        f2(sustained_rate(&r.b.saturated))
    ));
    s.push_str(&format!(
        "| `sendMessage` answered 429 / other errors by the fake's flood control (throughput phases) | {} / {} |  | {} |  |\n",
        r.too_many,
        r.other_errors,
        yes(r.too_many == 0 && r.other_errors == 0)
    ));
    s.push_str(&format!(
        "| bursts appended (all `send`s acknowledged): (a)+(c) / (b) | {:.0} / {:.0} ms |  |  |  |\n",
        ms(r.a.append),
        ms(r.b.append)
    ));
    s.push_str(&format!("| pairing {} chats (`/subscribe` → `im_bind_chat` → served) | {:.1} s |  |  |  |\n\n", 3 + p.b_chats, r.pairing.as_secs_f64()));
    if r.problems.is_empty() {
        s.push_str("No message was lost, duplicated or reordered, and the fake never had to answer 429.\n\n");
    } else {
        s.push_str("**Problems found in this run:**\n\n");
        for pr in &r.problems {
            s.push_str(&format!("- **{pr}**\n"));
        }
        s.push('\n');
    }
    s.push_str(
        "Rates are sustained rates, (n − 1) / (last arrival − first arrival), from the fake's arrival\n\
times; \"all in\" is from the first `send` of the burst to the last arrival. The first latency series\n\
starts with unmeasured warm-up messages (counted in the last column). No reference figure:\n\
the reference's Telegram bridge cannot be pointed at a fake Bot API without patching it. Command:\n\
`cargo run --release -p cccc-bench -- --telegram --markdown docs/benchmarks.md` (≈ 3.5 min; not\n\
part of `--all`).\n\n",
    );
    s.push_str(END);
    s.push('\n');
    s
}

/// Replace the Telegram section of the markdown file, or append it.
pub fn write_markdown(path: &Path, section: &str) -> Result<()> {
    write_section(path, BEGIN, END, section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_replaces_only_itself() {
        let dir = std::env::temp_dir().join(format!("cccc-bench-tg-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.md");
        std::fs::write(&p, "# B\n\nhead\n").unwrap();
        let r = TgResults { plan: Some(Plan::quick()), ..Default::default() };
        let s1 = markdown(&r);
        write_markdown(&p, &s1).unwrap();
        let t1 = std::fs::read_to_string(&p).unwrap();
        assert!(t1.starts_with("# B\n\nhead\n\n") && t1.contains(BEGIN) && t1.contains(END));
        std::fs::write(&p, format!("{t1}\n## after\n")).unwrap();
        write_markdown(&p, &s1).unwrap();
        let t2 = std::fs::read_to_string(&p).unwrap();
        assert_eq!(t2.matches(BEGIN).count(), 1);
        assert!(t2.ends_with("## after\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
