//! Reminders for open obligations (spec §5.5): the digest nudge.
//!
//! Every few seconds, for each enabled, live actor of an `active` group, the daemon looks at
//! what that actor owes — unanswered `reply_required` asks, unacknowledged attention messages,
//! an unread backlog — and, when something has waited longer than the group's timer, appends
//! one `system.notify` of kind `nudge` listing it (it then reaches a PTY actor's terminal like
//! any message). Each obligation is nudged at most `nudge_max_repeats_per_obligation` times,
//! nudges to one actor are spaced by `nudge_digest_min_interval_seconds`, and from the
//! `nudge_escalate_after_repeats`-th repeat of an unanswered ask the foreman is told too. An
//! obligation that is met simply stops appearing: its reminders stop with it.
//!
//! State lives in `state/automation.json` in the reference's shape (`actors.<id>.nudge_items`,
//! `last_nudge_at`, `resume_at`); keys we do not use are preserved.
//!
//! One deliberate difference (quirk §8.3): a timer of `0` means *off*, for every timer. In the
//! reference `unread_nudge_after_seconds: 0` (the new-group default!) means "immediately", and
//! since nudges are unread messages themselves, it keeps feeding itself.

use crate::index::Kind;
use crate::semantics::{is_for, obligation, obligation_recipients};
use crate::store::Group;
use serde_json::{Map, Value, json};

/// Effective timers of a group, in seconds (0 = off).
#[derive(Debug, Clone, PartialEq)]
pub struct Timers {
    pub reply_required: i64,
    pub attention: i64,
    pub unread: i64,
    pub digest_interval: i64,
    pub max_repeats: i64,
    pub escalate_after: i64,
}

pub fn timers(g: &Group) -> Timers {
    let a = g.doc.doc.get("automation").and_then(Value::as_object);
    let get = |k: &str| a.and_then(|m| m.get(k)).and_then(Value::as_i64).map(|v| v.max(0));
    let base = get("nudge_after_seconds").unwrap_or(300);
    Timers {
        reply_required: get("reply_required_nudge_after_seconds").unwrap_or(base),
        attention: get("attention_ack_nudge_after_seconds").unwrap_or(2 * base),
        unread: get("unread_nudge_after_seconds").unwrap_or(3 * base),
        digest_interval: get("nudge_digest_min_interval_seconds").unwrap_or(120),
        max_repeats: get("nudge_max_repeats_per_obligation").unwrap_or(3),
        escalate_after: get("nudge_escalate_after_repeats").unwrap_or(2),
    }
}

fn path(g: &Group) -> std::path::PathBuf {
    g.dir.join("state").join("automation.json")
}

fn load(g: &Group) -> Map<String, Value> {
    match crate::home::read_json(&path(g)) {
        Ok(Value::Object(m)) => m,
        _ => {
            let mut m = Map::new();
            m.insert("v".into(), json!(5));
            m
        }
    }
}

fn save(g: &Group, mut st: Map<String, Value>) {
    st.insert("updated_at".into(), json!(cccc_proto::ts::now()));
    if let Err(e) = crate::home::write_json_pretty(&path(g), &Value::Object(st)) {
        tracing::warn!(group = %g.id, error = %e, "cannot write automation.json");
    }
}

/// Group (re)started or resumed: timers count from now, past nudge counts are forgotten.
pub fn on_resume(g: &Group) {
    let mut st = load(g);
    let now = cccc_proto::ts::now();
    st.insert("resume_at".into(), json!(now));
    if let Some(Value::Object(actors)) = st.get_mut("actors") {
        for a in actors.values_mut() {
            if let Some(m) = a.as_object_mut() {
                m.insert("nudge_items".into(), json!({}));
                m.insert("last_nudge_at".into(), json!(now));
            }
        }
    }
    save(g, st);
}

struct Item {
    key: String,
    line: String,
    kind: u8, // 0 reply_required, 1 attention, 2 unread
}

/// Append due nudges. Returns how many `system.notify` events were appended.
pub fn tick(g: &mut Group, now: i64) -> usize {
    if g.doc.state() != "active" || g.live.is_empty() {
        return 0;
    }
    let t = timers(g);
    if t.reply_required == 0 && t.attention == 0 && t.unread == 0 {
        return 0;
    }
    let mut st = load(g);
    let resume_at = st.get("resume_at").and_then(Value::as_str).and_then(cccc_proto::ts::parse).unwrap_or(0);
    let actors: Vec<String> = g.doc.actor_views().filter(|a| a.enabled && !a.internal && g.live.contains_key(a.id)).map(|a| a.id.to_string()).collect();
    let mut appended = 0;
    let mut changed = false;
    for actor in actors {
        let due = due_items(g, &actor, &t, resume_at, now);
        let mut astate = st.get("actors").and_then(|a| a.get(&actor)).and_then(Value::as_object).cloned().unwrap_or_default();
        let mut items = astate.get("nudge_items").and_then(Value::as_object).cloned().unwrap_or_default();
        // Forget obligations that were met (or are no longer due).
        let before = items.len();
        items.retain(|k, _| due.iter().any(|i| &i.key == k));
        changed |= items.len() != before;
        let count = |items: &Map<String, Value>, k: &str| items.get(k).and_then(|v| v.get("count")).and_then(Value::as_i64).unwrap_or(0);
        let fresh: Vec<&Item> = due.iter().filter(|i| count(&items, &i.key) < t.max_repeats).collect();
        let last = astate.get("last_nudge_at").and_then(Value::as_str).and_then(cccc_proto::ts::parse).unwrap_or(i64::MIN);
        let spaced = last == i64::MIN || now - last >= t.digest_interval * 1_000_000;
        if fresh.is_empty() || !spaced {
            if changed {
                astate.insert("nudge_items".into(), Value::Object(items));
                st.entry("actors").or_insert_with(|| json!({})).as_object_mut().unwrap().insert(actor.clone(), Value::Object(astate));
            }
            continue;
        }
        let n = |k: u8| fresh.iter().filter(|i| i.kind == k).count();
        let mut parts = Vec::new();
        if n(0) > 0 {
            parts.push(format!("reply_required={}", n(0)));
        }
        if n(1) > 0 {
            parts.push(format!("attention_ack={}", n(1)));
        }
        if n(2) > 0 {
            parts.push("unread>0".to_string());
        }
        let mut lines: Vec<String> = fresh.iter().take(5).map(|i| i.line.clone()).collect();
        if fresh.len() > 5 {
            lines.push(format!("... and {} more pending item(s).", fresh.len() - 5));
        }
        let ts_now = cccc_proto::ts::format(now);
        if g
            .append(
                "system.notify",
                "",
                "system",
                json!({
                    "kind": "nudge", "priority": "normal", "title": format!("Action items pending ({})", parts.join(", ")),
                    "message": lines.join("\n"), "target_actor_id": actor, "context": {}, "requires_ack": false, "related_event_id": null,
                }),
            )
            .is_ok()
        {
            appended += 1;
        }
        let mut escalate = false;
        for i in &fresh {
            let c = count(&items, &i.key) + 1;
            items.insert(i.key.clone(), json!({"count": c, "last_nudged_at": ts_now}));
            escalate |= i.kind == 0 && c >= t.escalate_after;
        }
        if escalate && let Some(f) = g.doc.foreman_id().map(str::to_string).filter(|f| *f != actor) {
            let ok = g.append(
                "system.notify",
                "",
                "system",
                json!({
                    "kind": "nudge", "priority": "normal", "title": "Escalation: pending replies",
                    "message": format!("{actor} has repeated pending obligations. Please intervene if needed."),
                    "target_actor_id": f, "context": {}, "requires_ack": false, "related_event_id": null,
                }),
            );
            appended += usize::from(ok.is_ok());
        }
        astate.insert("nudge_items".into(), Value::Object(items));
        astate.insert("last_nudge_at".into(), json!(ts_now));
        astate.insert("last_nudge_event_id".into(), json!("digest"));
        st.entry("actors").or_insert_with(|| json!({})).as_object_mut().unwrap().insert(actor.clone(), Value::Object(astate));
        changed = true;
    }
    if changed {
        save(g, st);
    }
    appended
}

/// What `actor` owes that has waited past its timer.
fn due_items(g: &Group, actor: &str, t: &Timers, resume_at: i64, now: i64) -> Vec<Item> {
    let ix = &g.ledger.index;
    let cursor = g.cursors.ts_of(actor);
    let mut asks = Vec::new();
    let mut acks = Vec::new();
    let mut backlog = None;
    for &pos in &ix.msgs {
        let e = &ix.entries[pos as usize];
        if !is_for(&g.doc, ix, e, actor) {
            continue;
        }
        let base = e.ts.max(resume_at);
        let waited = |secs: i64| secs > 0 && now - base >= secs * 1_000_000;
        if backlog.is_none() && cursor.is_none_or(|c| e.ts > c) && waited(t.unread) {
            backlog = Some(e.ts);
        }
        if e.kind != Kind::ChatMessage || !obligation_recipients(&g.doc, ix, e).iter().any(|r| r == actor) {
            continue;
        }
        let st = obligation(ix, pos, actor, cursor);
        let id = ix.id_of(pos);
        let since = cccc_proto::ts::format(e.ts);
        if st["reply_required"] == json!(true) && st["replied"] != json!(true) {
            if waited(t.reply_required) {
                asks.push(Item {
                    key: format!("reply_required:{id}"),
                    line: format!("REPLY REQUIRED: event_id={id} (since {since}). Reply via cccc_message_reply(event_id={id}, ...)."),
                    kind: 0,
                });
            }
        } else if st["attention"] == json!(true) && st["acked"] != json!(true) && waited(t.attention) {
            acks.push(Item {
                key: format!("attention_ack:{id}"),
                line: format!("IMPORTANT awaiting ACK: event_id={id} (since {since}). Use cccc_inbox_mark_read(event_id={id})."),
                kind: 1,
            });
        }
    }
    let mut out = asks;
    out.extend(acks);
    if let Some(ts) = backlog {
        out.push(Item {
            key: "unread_backlog".into(),
            line: format!("Unread backlog: oldest from {}. Use cccc_inbox_list() to review.", cccc_proto::ts::format(ts)),
            kind: 2,
        });
    }
    out
}
