//! Actor runtimes inside a group: starting and stopping sessions, noticing crashes, and
//! delivering messages into PTY actors' terminals.
//!
//! # Delivery
//!
//! Messages addressed to a PTY actor are typed into its terminal in ledger order, as one batch
//! per delivery (spec §5.3 rendering), at most one delivery in flight per actor, spaced by the
//! group's `delivery.min_interval_seconds`, and only while the group is `active` or `idle`
//! (`paused`/`stopped` queue). What to deliver is derived from the ledger, not from an in-memory
//! queue: each actor has a delivery cursor (`state/delivery.json`, the last event position typed
//! into its terminal), so nothing is lost across a daemon restart. The cursor is written *before*
//! the text is typed: a crash in between loses the typing (the message is still in the inbox),
//! but never types a message twice. A new session starts its cursor at the end of the ledger:
//! history is read through the inbox, not replayed into the terminal.
//!
//! Typing takes seconds (paste, wait, submit), so [`plan_deliveries`] runs under the group lock
//! and returns jobs; the daemon runs each job on its own thread and reports back with
//! [`finish_delivery`], which marks the batch read when `auto_mark_on_delivery` is on.

use crate::index::Kind;
use crate::pty::client as pty;
use crate::semantics::is_for;
use crate::store::Group;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Live-session bookkeeping of one actor (not persisted; rebuilt on start/reattach).
#[derive(Debug, Clone)]
pub struct Session {
    pub started: Instant,
    pub in_flight: bool,
    pub last_delivery: Option<Instant>,
    /// After a failed delivery, the next attempt waits until then.
    pub retry_at: Option<Instant>,
    pub preamble_sent: bool,
}

impl Session {
    pub fn new() -> Session {
        Session { started: Instant::now(), in_flight: false, last_delivery: None, retry_at: None, preamble_sent: false }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

/// Runtime state of a group kept beside the document.
#[derive(Debug, Default)]
pub struct Runtime {
    pub sessions: HashMap<String, Session>,
    /// Last exit of each PTY actor's process: `{code, signal, at}`.
    pub exits: HashMap<String, Value>,
    /// Delivery cursors: actor → index position of the last event typed into its terminal.
    pub delivered: HashMap<String, u32>,
    pub delivered_loaded: bool,
}

/// A batch to type into an actor's terminal.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub group_id: String,
    pub actor: String,
    pub paths: pty::Paths,
    pub text: String,
    pub submit: &'static str,
    pub bracketed_paste: bool,
    pub last_pos: u32,
    /// The delivery cursor before this batch (restored if nothing could be typed).
    pub prev_pos: Option<u32>,
    pub submit_delay: Duration,
}

/// How far a delivery got.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// Typed and submitted.
    Done,
    /// Nothing was typed: the batch goes back in the queue.
    NotTyped(String),
    /// Typed but not submitted: counted as delivered (never typed twice).
    NotSubmitted(String),
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn delivery_path(g: &Group) -> std::path::PathBuf {
    g.dir.join("state").join("delivery.json")
}

fn load_delivered(g: &mut Group) {
    if g.runtime.delivered_loaded {
        return;
    }
    g.runtime.delivered_loaded = true;
    if let Ok(Value::Object(m)) = crate::home::read_json(&delivery_path(g)) {
        for (actor, v) in m {
            if let Some(pos) = v.get("event_id").and_then(Value::as_str).and_then(|id| g.ledger.index.resolve(id)) {
                g.runtime.delivered.insert(actor, pos);
            }
        }
    }
}

fn save_delivered(g: &Group) -> std::io::Result<()> {
    let mut m = serde_json::Map::new();
    for (actor, pos) in &g.runtime.delivered {
        m.insert(actor.clone(), json!({"event_id": g.ledger.index.id_of(*pos), "updated_at": cccc_proto::ts::now()}));
    }
    crate::home::write_json_pretty(&delivery_path(g), &Value::Object(m))
}

/// The working directory of an actor: its own scope, else the group's active scope.
fn actor_cwd(g: &Group, id: &str) -> Result<std::path::PathBuf, String> {
    let own = g.doc.actor_value(id).and_then(|a| a.get("default_scope_key")).and_then(Value::as_str).unwrap_or("").to_string();
    let key = if own.is_empty() { g.doc.active_scope_key().to_string() } else { own };
    if key.is_empty() {
        return Err("no active scope for group".into());
    }
    g.doc.scope_url(&key).map(std::path::PathBuf::from).ok_or_else(|| format!("scope {key} is not attached"))
}

fn actor_env(g: &Group, id: &str, home: &std::path::Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(m)) = g.doc.actor_value(id).and_then(|a| a.get("env")) {
        env.extend(m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))));
    }
    if let Ok(Value::Object(m)) = crate::home::read_json(&g.dir.join("state").join("private_env").join(format!("{id}.json"))) {
        env.extend(m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))));
    }
    let inputrc = home.join("daemon").join("inputrc");
    if !inputrc.exists() {
        let _ = crate::home::atomic_write(&inputrc, b"set enable-bracketed-paste off\n");
    }
    env.push(("CCCC_HOME".into(), home.display().to_string()));
    env.push(("CCCC_GROUP_ID".into(), g.id.clone()));
    env.push(("CCCC_ACTOR_ID".into(), id.to_string()));
    env.push(("INPUTRC".into(), inputrc.display().to_string()));
    env
}

fn home_of(g: &Group) -> std::path::PathBuf {
    // groups/<gid> → home
    g.dir.parent().and_then(|p| p.parent()).map(|p| p.to_path_buf()).unwrap_or_default()
}

/// Start (or reattach to) a PTY actor's process.
pub fn start_pty(g: &mut Group, id: &str) -> Result<(), String> {
    let paths = pty::paths(&g.dir, id);
    if pty::status(&paths).is_some_and(|s| s["running"] == json!(true)) {
        // A host from an earlier daemon is still running this actor: reattach.
        g.runtime.sessions.entry(id.to_string()).or_default();
        return Ok(());
    }
    pty::release(&paths);
    let argv: Vec<String> = g
        .doc
        .actor_value(id)
        .and_then(|a| a.get("command"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if argv.is_empty() {
        return Err(format!("actor {id} has no command to run"));
    }
    let cwd = actor_cwd(g, id)?;
    let env = actor_env(g, id, &home_of(g));
    pty::spawn(&paths, &cwd, &argv, &env)?;
    load_delivered(g);
    // A new session starts after the current end of the ledger.
    if let Some(last) = g.ledger.index.entries.len().checked_sub(1) {
        g.runtime.delivered.insert(id.to_string(), last as u32);
        let _ = save_delivered(g);
    }
    g.runtime.exits.remove(id);
    g.runtime.sessions.insert(id.to_string(), Session::new());
    Ok(())
}

/// Stop an actor's session (process included for PTY actors).
pub fn stop_session(g: &mut Group, id: &str) {
    g.live.remove(id);
    g.runtime.sessions.remove(id);
    let is_pty = g.doc.actor(id).is_some_and(|a| a.runner == "pty");
    if is_pty {
        pty::stop(&pty::paths(&g.dir, id), Duration::from_secs(3));
    }
}

/// Daemon shutdown: end every PTY process of the group without touching the document, so the
/// next daemon starts them again (a crash, by contrast, leaves them running for reattach).
pub fn shutdown_sessions(g: &mut Group) {
    let ids: Vec<String> = g.live.keys().filter(|id| g.doc.actor(id).is_some_and(|a| a.runner == "pty")).cloned().collect();
    for id in ids {
        pty::stop(&pty::paths(&g.dir, &id), Duration::from_secs(3));
        g.live.remove(&id);
        g.runtime.sessions.remove(&id);
    }
}

/// On open: reattach to PTY hosts that survived, restart what should run.
pub fn reattach(g: &mut Group) -> Vec<String> {
    let mut lost = Vec::new();
    let pty_ids: Vec<(String, bool)> = g.doc.actor_views().filter(|a| a.runner == "pty" && !a.internal).map(|a| (a.id.to_string(), a.enabled)).collect();
    for (id, enabled) in pty_ids {
        let paths = pty::paths(&g.dir, &id);
        match pty::status(&paths) {
            Some(s) if s["running"] == json!(true) => {
                load_delivered(g);
                g.live.insert(id.clone(), pty::state(&paths).and_then(|v| v["started_at"].as_str().map(str::to_string)).unwrap_or_else(cccc_proto::ts::now));
                g.runtime.sessions.insert(id.clone(), Session { preamble_sent: true, ..Session::new() });
            }
            other => {
                if let Some(exit) = other.map(|s| s["exit"].clone()).filter(|e| !e.is_null()).or_else(|| pty::state(&paths).map(|v| v["exit"].clone()).filter(|e| !e.is_null())) {
                    g.runtime.exits.insert(id.clone(), exit);
                }
                pty::release(&paths);
                if enabled && g.doc.running_flag() {
                    lost.push(id);
                }
            }
        }
    }
    lost
}

/// Notice PTY actors whose process ended. Returns the ids that crashed (their `actor.stop` is
/// appended by the caller's op context here).
pub fn detect_exits(g: &mut Group) -> Vec<String> {
    let live_pty: Vec<String> = g.live.keys().filter(|id| g.doc.actor(id).is_some_and(|a| a.runner == "pty")).cloned().collect();
    let mut crashed = Vec::new();
    for id in live_pty {
        let paths = pty::paths(&g.dir, &id);
        let st = pty::status(&paths);
        if st.as_ref().is_some_and(|s| s["running"] == json!(true)) {
            continue;
        }
        let exit = st.map(|s| s["exit"].clone()).filter(|e| !e.is_null()).or_else(|| pty::state(&paths).map(|v| v["exit"].clone()));
        g.runtime.exits.insert(id.clone(), exit.unwrap_or(json!({"code": null, "signal": null, "at": cccc_proto::ts::now()})));
        pty::release(&paths);
        g.live.remove(&id);
        g.runtime.sessions.remove(&id);
        if let Some(a) = g.doc.actor_value_mut(&id) {
            a.insert("enabled".into(), json!(false));
        }
        crashed.push(id);
    }
    if !crashed.is_empty() {
        if !g.doc.actor_views().any(|a| a.enabled && !a.internal) {
            g.doc.set_running_flag(false);
        }
        let _ = g.save();
        for id in &crashed {
            let _ = g.append("actor.stop", "", "system", json!({"actor_id": id, "runner": "pty"}));
        }
    }
    crashed
}

fn to_label(to: &Value) -> String {
    let v: Vec<&str> = to.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if v.is_empty() { "@all".into() } else { v.join(", ") }
}

/// Render one event as the reference renders it in a terminal batch.
pub fn render_event(ev: &cccc_proto::Event) -> String {
    if ev.kind == "system.notify" {
        let title = ev.data_str("title");
        let msg = ev.data_str("message");
        let kind = ev.data_str("kind");
        return if msg.is_empty() { format!("[cccc] SYSTEM ({kind}): {title}") } else { format!("[cccc] SYSTEM ({kind}): {title}\n{msg}") };
    }
    let d = &ev.data;
    let mut header = format!("[cccc] {} → {}", ev.by, to_label(&d["to"]));
    let reply_to = ev.data_str("reply_to");
    if !reply_to.is_empty() {
        header.push_str(&format!(" (reply:{})", &reply_to[..reply_to.len().min(8)]));
    }
    let mut lines = Vec::new();
    if ev.data_str("priority") == "attention" {
        lines.push(format!("[cccc] IMPORTANT (event_id={}):", ev.id));
    }
    if d["reply_required"] == json!(true) {
        lines.push(format!("[cccc] REPLY REQUIRED (event_id={}): reply via cccc_message_reply.", ev.id));
    }
    let quote = ev.data_str("quote_text");
    if !quote.is_empty() {
        lines.push(format!("> \"{}\"", quote.chars().take(80).collect::<String>()));
    }
    let text = ev.data_str("text");
    if lines.is_empty() && !text.contains('\n') {
        return format!("{header}: {text}");
    }
    let mut out = format!("{header}:");
    for l in lines {
        out.push('\n');
        out.push_str(&l);
    }
    out.push('\n');
    out.push_str(text);
    out
}

const REMINDER: &str = "[cccc] Use cccc_message_reply for replies; use cccc_message_send for new messages. Terminal output is not delivered. Verify reply_to/to; avoid routine @all. Use cccc_help if unsure.";

fn preamble(g: &Group, id: &str) -> String {
    let team: Vec<&str> = g.doc.actor_views().filter(|a| !a.internal).map(|a| a.id).collect();
    format!(
        "[CCCC] You are {id} ({}) in group '{}'\ngroup_id: {}\nteam: {} actors ({})\nforeman: {}\nUse the cccc MCP tools: cccc_inbox_list, cccc_message_reply, cccc_message_send, cccc_ack, cccc_help.",
        g.doc.role_of(id),
        g.doc.title(),
        g.id,
        team.len(),
        team.join(", "),
        g.doc.foreman_id().unwrap_or("-"),
    )
}

/// Plan deliveries for every live PTY actor that has something to receive and may receive it
/// now. Marks those actors in flight and persists their delivery cursors (write-ahead).
pub fn plan_deliveries(g: &mut Group) -> Vec<DeliveryJob> {
    if !matches!(g.doc.state(), "active" | "idle") {
        return Vec::new();
    }
    load_delivered(g);
    let min_interval = g
        .doc
        .doc
        .get("delivery")
        .and_then(|d| d.get("min_interval_seconds"))
        .and_then(Value::as_f64)
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
        .unwrap_or_default();
    let ready_grace = env_ms("CCCC_PTY_READY_GRACE_MS", 1000);
    let submit_delay = env_ms(crate::pty::SUBMIT_DELAY_ENV, 1500);
    let ids: Vec<String> = g.live.keys().filter(|id| g.doc.actor(id).is_some_and(|a| a.runner == "pty")).cloned().collect();
    let mut jobs = Vec::new();
    for id in ids {
        let Some(sess) = g.runtime.sessions.get(&id).cloned() else { continue };
        if sess.in_flight || sess.last_delivery.is_some_and(|t| t.elapsed() < min_interval) || sess.retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let after = g.runtime.delivered.get(&id).copied();
        let ix = &g.ledger.index;
        let start = after.map(|p| p as usize + 1).unwrap_or(0);
        let pending: Vec<u32> = ix.msgs[ix.msgs.partition_point(|&p| (p as usize) < start)..]
            .iter()
            .copied()
            .filter(|&p| {
                let e = &ix.entries[p as usize];
                matches!(e.kind, Kind::ChatMessage | Kind::SystemNotify) && is_for(&g.doc, ix, e, &id)
            })
            .collect();
        if pending.is_empty() {
            continue;
        }
        let paths = pty::paths(&g.dir, &id);
        let Some(st) = pty::status(&paths) else { continue };
        // Start-up gate, before the first delivery only: wait until the program has printed and
        // gone quiet (it is ready for input), or 10 s.
        let quiet = st["output_bytes"].as_u64().unwrap_or(0) > 0 && st["idle_ms"].as_u64().is_some_and(|ms| ms >= ready_grace.as_millis() as u64);
        if !sess.preamble_sent && !quiet && sess.started.elapsed() < Duration::from_secs(10) {
            continue;
        }
        let mut blocks = Vec::new();
        if !sess.preamble_sent {
            blocks.push(preamble(g, &id));
        }
        let mut has_chat = false;
        for &p in &pending {
            let Ok(ev) = g.ledger.read(p) else { continue };
            has_chat |= ev.kind == "chat.message";
            blocks.push(render_event(&ev));
        }
        if pending.len() > 1 {
            blocks.insert(usize::from(!sess.preamble_sent), format!("[cccc] {} new messages:", pending.len()));
        }
        if has_chat {
            blocks.push(REMINDER.to_string());
        }
        let last_pos = *pending.last().unwrap();
        g.runtime.delivered.insert(id.clone(), last_pos);
        if let Err(e) = save_delivered(g) {
            tracing::warn!(group = %g.id, actor = %id, error = %e, "cannot persist delivery cursor; not delivering");
            continue;
        }
        let submit = match g.doc.actor_value(&id).and_then(|a| a.get("submit")).and_then(Value::as_str) {
            Some("none") => "",
            Some("newline") => "\n",
            _ => "\r",
        };
        if let Some(s) = g.runtime.sessions.get_mut(&id) {
            s.in_flight = true;
            s.preamble_sent = true;
        }
        jobs.push(DeliveryJob {
            group_id: g.id.clone(),
            actor: id,
            paths,
            text: blocks.join("\n\n"),
            submit,
            bracketed_paste: st["bracketed_paste"] == json!(true),
            last_pos,
            prev_pos: after,
            submit_delay,
        });
    }
    jobs
}

/// Type a planned batch (no group lock held: this sleeps between paste and submit).
pub fn run_delivery(job: &DeliveryJob) -> Delivered {
    let text = if job.bracketed_paste { format!("\x1b[200~{}\x1b[201~", job.text) } else { job.text.clone() };
    if let Err(e) = pty::write(&job.paths, &text) {
        return Delivered::NotTyped(e);
    }
    if !job.submit.is_empty() {
        std::thread::sleep(job.submit_delay);
        if let Err(e) = pty::write(&job.paths, job.submit) {
            return Delivered::NotSubmitted(e);
        }
    }
    Delivered::Done
}

/// Record the outcome of a delivery; once typed (and auto-mark on), the batch is read.
pub fn finish_delivery(g: &mut Group, job: &DeliveryJob, outcome: &Delivered) {
    let now = Instant::now();
    if let Some(s) = g.runtime.sessions.get_mut(&job.actor) {
        s.in_flight = false;
        s.last_delivery = Some(now);
        // Failed attempts retry after 5 s (spec §5.3).
        s.retry_at = if *outcome == Delivered::Done { None } else { Some(now + Duration::from_secs(5)) };
    }
    if let Delivered::NotTyped(e) = outcome {
        tracing::warn!(group = %g.id, actor = %job.actor, error = %e, "delivery failed; will retry");
        match job.prev_pos {
            Some(p) => g.runtime.delivered.insert(job.actor.clone(), p),
            None => g.runtime.delivered.remove(&job.actor),
        };
        let _ = save_delivered(g);
        return;
    }
    let auto_mark = g.doc.doc.get("delivery").and_then(|d| d.get("auto_mark_on_delivery")).and_then(Value::as_bool).unwrap_or(true);
    if !auto_mark {
        return;
    }
    let e_ts = g.ledger.index.entries[job.last_pos as usize].ts;
    if g.cursors.ts_of(&job.actor).is_some_and(|c| c >= e_ts) {
        return;
    }
    let full = g.ledger.index.id_of(job.last_pos);
    g.cursors.advance(&job.actor, &full, &cccc_proto::ts::format(e_ts), e_ts);
    let _ = g.save_cursors();
    let _ = g.append("chat.read", "", &job.actor, json!({"actor_id": job.actor, "event_id": full}));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, by: &str, data: Value) -> cccc_proto::Event {
        cccc_proto::Event { v: 1, id: "15e1b1fcab1b40e88a7c1bf7bf4637a9".into(), ts: String::new(), kind: kind.into(), group_id: "g".into(), scope_key: String::new(), by: by.into(), data }
    }

    #[test]
    fn renders_like_the_reference() {
        assert_eq!(render_event(&ev("chat.message", "user", json!({"text": "hi", "to": ["echoer"]}))), "[cccc] user → echoer: hi");
        let ask = render_event(&ev("chat.message", "user", json!({"text": "please ack", "to": [], "priority": "attention", "reply_required": true})));
        assert_eq!(
            ask,
            "[cccc] user → @all:\n[cccc] IMPORTANT (event_id=15e1b1fcab1b40e88a7c1bf7bf4637a9):\n[cccc] REPLY REQUIRED (event_id=15e1b1fcab1b40e88a7c1bf7bf4637a9): reply via cccc_message_reply.\nplease ack"
        );
        let reply = render_event(&ev("chat.message", "lead", json!({"text": "ok", "to": ["peer-a"], "reply_to": "abcdef0123456789", "quote_text": "q"})));
        assert_eq!(reply, "[cccc] lead → peer-a (reply:abcdef01):\n> \"q\"\nok");
        assert_eq!(render_event(&ev("system.notify", "system", json!({"kind": "nudge", "title": "T", "message": "M"}))), "[cccc] SYSTEM (nudge): T\nM");
    }
}
