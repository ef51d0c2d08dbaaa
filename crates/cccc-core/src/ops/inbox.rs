//! Inbox and read ops (spec §3.2, §3.3), plus two read-only additions of ours:
//! `ledger_tail` (the reference only has it over HTTP) and `obligations` (open asks and acks).

use super::{Args, b, by_or, group_id, s};
use crate::index::Kind;
use crate::semantics::{is_for, obligation, obligation_recipients};
use crate::store::{Group, Store};
use crate::{OpResult, err};
use serde_json::{Value, json};

/// Positions of unread messages addressed to `who`, oldest first. `kind_filter`:
/// `all` | `chat` | `notify`. `limit` 0 = all.
pub(crate) fn unread_positions(g: &Group, who: &str, kind_filter: &str, limit: usize) -> Vec<u32> {
    let ix = &g.ledger.index;
    let cursor = g.cursors.ts_of(who);
    let start = cursor.map(|c| ix.first_msg_after(c)).unwrap_or(0);
    let mut out = Vec::new();
    for &pos in &ix.msgs[start..] {
        let e = &ix.entries[pos as usize];
        if cursor.is_some_and(|c| e.ts <= c) {
            continue;
        }
        let kind_ok = match kind_filter {
            "chat" => e.kind == Kind::ChatMessage,
            "notify" => e.kind == Kind::SystemNotify,
            _ => true,
        };
        if kind_ok && is_for(&g.doc, ix, e, who) {
            out.push(pos);
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// Inbox permission (spec §2.8): user and foreman read any inbox, a peer only its own.
fn inbox_permission(g: &Group, by: &str, target: &str) -> OpResult<()> {
    if matches!(by, "user" | "" | "cli" | "system") {
        return Ok(());
    }
    if !g.doc.has_actor(by) {
        return Err(err("permission_denied", format!("unknown actor: {by}")));
    }
    if by == target || g.doc.role_of(by) == "foreman" {
        return Ok(());
    }
    Err(err("permission_denied", format!("permission denied: {by} cannot access inbox of {target}")))
}

fn kind_filter(args: &Args) -> OpResult<&str> {
    match s(args, "kind_filter") {
        "" | "all" => Ok("all"),
        k @ ("chat" | "notify") => Ok(k),
        other => Err(err("invalid_request", format!("invalid kind_filter: {other} (all, chat or notify)"))),
    }
}

fn require_recipient(g: &Group, who: &str) -> OpResult<()> {
    if who == "user" || g.doc.has_actor(who) || g.cursors.ts_of(who).is_some() {
        Ok(())
    } else {
        Err(err("actor_not_found", format!("actor not found: {who}")))
    }
}

pub fn inbox_list(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let who = super::actor_id(args)?;
    let by = by_or(args, "user");
    let filter = kind_filter(args)?;
    // Only an integer limit is honoured, as in the reference.
    let limit = args.get("limit").and_then(Value::as_u64).map(|n| n as usize).unwrap_or(50);
    store.read_group(gid, |g| {
        inbox_permission(g, by, who)?;
        require_recipient(g, who)?;
        let msgs = unread_positions(g, who, filter, limit).into_iter().map(|p| g.event_value(p)).collect::<OpResult<Vec<_>>>()?;
        Ok(json!({"messages": msgs, "cursor": g.cursors.brief(who)}))
    })
}

/// Move `who`'s cursor to `pos` and record a `chat.read` by `by`.
fn mark(g: &mut Group, who: &str, pos: u32, by: &str) -> OpResult<Value> {
    let ix = &g.ledger.index;
    let full = ix.id_of(pos);
    let ts = ix.entries[pos as usize].ts;
    g.cursors.advance(who, &full, &cccc_proto::ts::format(ts), ts);
    g.save_cursors()?;
    let a = g.append("chat.read", "", by, json!({"actor_id": who, "event_id": full}))?;
    Ok(a.event.to_value())
}

pub fn inbox_mark_read(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let who = super::actor_id(args)?;
    let event_id = s(args, "event_id");
    if event_id.is_empty() {
        return Err(err("missing_event_id", "missing event_id"));
    }
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        inbox_permission(g, by, who)?;
        let pos = g.ledger.index.resolve(event_id).ok_or_else(|| err("event_not_found", format!("event not found: {event_id}")))?;
        let e = &g.ledger.index.entries[pos as usize];
        if !matches!(e.kind, Kind::ChatMessage | Kind::SystemNotify) {
            return Err(err("invalid_event_kind", "only chat.message and system.notify events can be marked read"));
        }
        if !is_for(&g.doc, &g.ledger.index, e, who) {
            return Err(err("event_not_for_actor", format!("event is not addressed to actor: {who}")));
        }
        let self_ack = by == who
            && e.kind == Kind::ChatMessage
            && e.msg.as_ref().is_some_and(|m| m.attention)
            && g.ledger.index.sym_name(e.by) != who
            && !g.ledger.index.is_acked_by(who, pos);
        let event = mark(g, who, pos, by)?;
        // Reading your own attention message is the ack gesture (spec §3.3).
        let ack_event = if self_ack {
            let full = g.ledger.index.id_of(pos);
            g.append("chat.ack", "", by, json!({"actor_id": who, "event_id": full}))?.event.to_value()
        } else {
            Value::Null
        };
        Ok(json!({"cursor": g.cursors.full(who), "event": event, "ack_event": ack_event}))
    })
}

pub fn inbox_mark_all_read(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let who = super::actor_id(args)?;
    let by = by_or(args, "user");
    let filter = kind_filter(args)?;
    store.with_group(gid, |g| {
        inbox_permission(g, by, who)?;
        let Some(&last) = unread_positions(g, who, filter, 0).last() else {
            return Ok(json!({"cursor": g.cursors.brief(who), "event": null}));
        };
        let event = mark(g, who, last, by)?;
        Ok(json!({"cursor": g.cursors.full(who), "event": event}))
    })
}

/// `ledger_tail {group_id, limit?=50, kind?=all|chat|notify, before_event_id?, with_obligation_status?}`
/// → `{events, has_more, count}`: the last events, oldest first.
pub fn ledger_tail(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let limit = args.get("limit").or_else(|| args.get("lines")).and_then(Value::as_u64).unwrap_or(50).clamp(1, 5000) as usize;
    let kind = match s(args, "kind") {
        "" | "all" => "all",
        k @ ("chat" | "notify") => k,
        other => return Err(err("invalid_request", format!("invalid kind: {other} (all, chat or notify)"))),
    };
    let with_ob = b(args, "with_obligation_status");
    let before = s(args, "before_event_id");
    store.read_group(gid, |g| {
        let ix = &g.ledger.index;
        let end = if before.is_empty() {
            ix.entries.len()
        } else {
            ix.resolve(before).ok_or_else(|| err("event_not_found", format!("event not found: {before}")))? as usize
        };
        let mut picked = Vec::new();
        let mut has_more = false;
        for pos in (0..end).rev() {
            let e = &ix.entries[pos];
            let ok = match kind {
                "chat" => e.kind == Kind::ChatMessage,
                "notify" => e.kind == Kind::SystemNotify,
                _ => true,
            };
            if ok {
                if picked.len() == limit {
                    has_more = true;
                    break;
                }
                picked.push(pos as u32);
            }
        }
        picked.reverse();
        let mut events = Vec::with_capacity(picked.len());
        for pos in picked {
            let mut ev = g.event_value(pos)?;
            if with_ob && ix.entries[pos as usize].kind == Kind::ChatMessage {
                let mut st = serde_json::Map::new();
                for r in obligation_recipients(&g.doc, ix, &ix.entries[pos as usize]) {
                    st.insert(r.clone(), obligation(ix, pos, &r, g.cursors.ts_of(&r)));
                }
                ev["_obligation_status"] = Value::Object(st);
            }
            events.push(ev);
        }
        let count = events.len();
        Ok(json!({"events": events, "has_more": has_more, "count": count}))
    })
}

/// `obligations {group_id, actor_id?, include_closed?}` → `{obligations:[…]}`: per message with
/// `reply_required` or `attention`, per recipient, the status of what is owed.
pub fn obligations(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let only = s(args, "actor_id");
    let include_closed = b(args, "include_closed");
    store.read_group(gid, |g| {
        let ix = &g.ledger.index;
        let mut out = Vec::new();
        for &pos in &ix.msgs {
            let e = &ix.entries[pos as usize];
            let Some(m) = e.msg.as_ref() else { continue };
            if e.kind != Kind::ChatMessage || !(m.reply_required || m.attention) {
                continue;
            }
            for r in obligation_recipients(&g.doc, ix, e) {
                if !only.is_empty() && r != only {
                    continue;
                }
                let st = obligation(ix, pos, &r, g.cursors.ts_of(&r));
                if !include_closed && st["open"] != json!(true) {
                    continue;
                }
                let ev = g.ledger.read(pos).map_err(|er| err("internal_error", er.to_string()))?;
                let text = ev.data_str("text");
                let preview: String = text.chars().take(120).collect();
                out.push(json!({
                    "event_id": ev.id, "ts": ev.ts, "by": ev.by, "to": ev.data.get("to").cloned().unwrap_or(json!([])),
                    "text": preview, "recipient": r, "status": st,
                }));
            }
        }
        Ok(json!({"obligations": out}))
    })
}
