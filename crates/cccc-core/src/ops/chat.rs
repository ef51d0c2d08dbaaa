//! Chat ops: send, reply, chat_ack, system_notify, notify_ack (spec §4.7, §2.7, §2.8, §3.6).

use super::{Args, b, by_or, group_id, raw_s, s};
use crate::index::Kind;
use crate::semantics::{canonicalize_to, is_for, names_user, to_reaches};
use crate::store::{Group, Store};
use crate::{OpResult, err};
use cccc_proto::ChatMessageData;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Text above this many UTF-8 bytes is spilled to a blob file (spec §2.2).
pub const SPILL_BYTES: usize = 32_000;

const NOTIFY_KINDS: &[&str] =
    &["nudge", "keepalive", "help_nudge", "actor_idle", "silence_check", "auto_idle", "automation", "status_change", "error", "info"];
const NOTIFY_PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];

fn priority(args: &Args) -> OpResult<&'static str> {
    match s(args, "priority") {
        "" | "normal" => Ok("normal"),
        "attention" => Ok("attention"),
        _ => Err(err("invalid_priority", "priority must be 'normal' or 'attention'")),
    }
}

fn insight(args: &Args) -> OpResult<Option<String>> {
    match args.get("insight") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else if t.chars().count() > 1200 {
                Err(err("invalid_insight", "insight must be at most 1200 characters"))
            } else {
                Ok(Some(t.to_string()))
            }
        }
        Some(_) => Err(err("invalid_insight", "insight must be a string")),
    }
}

fn opt_str(args: &Args, key: &str) -> Option<String> {
    let v = s(args, key);
    if v.is_empty() { None } else { Some(v.to_string()) }
}

/// Visible actors a canonical `to` reaches, minus the sender.
fn audience(g: &Group, to: &[String], by: &str) -> Vec<String> {
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    g.doc.actor_views().filter(|a| !a.internal && a.id != by && to_reaches(&g.doc, &to, by, a.id)).map(|a| a.id.to_string()).collect()
}

/// The audience check of spec §4.7 step 6.
fn check_audience(g: &Group, to: &[String], by: &str) -> OpResult<Vec<String>> {
    let targets_agents = to.is_empty() || to.iter().any(|t| t != "user");
    let aud = audience(g, to, by);
    if targets_agents && aud.is_empty() {
        let shown = if to.is_empty() { "@all".to_string() } else { to.join(", ") };
        return Err(err(
            "no_enabled_recipients",
            format!("No enabled recipients after excluding sender. Please specify 'to' explicitly, e.g. to=['user'], to=['@all'], or to=['peer-reviewer']. Current resolved recipients: {shown}"),
        )
        .with_details(json!({"to": to})));
    }
    Ok(aud)
}

fn validate_attachments(g: &Group, args: &Args) -> OpResult<Vec<Value>> {
    let Some(v) = args.get("attachments") else { return Ok(Vec::new()) };
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(err("invalid_attachments", "attachments must be a list")),
    };
    let mut out = Vec::new();
    for item in items {
        let path = item.get("path").and_then(Value::as_str).unwrap_or("").trim();
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(err("invalid_attachments", format!("attachment path must be relative to the group directory: {path:?}")));
        }
        let full = g.dir.join(path);
        let bytes = std::fs::read(&full).map_err(|e| err("invalid_attachments", format!("attachment not readable: {path}: {e}")))?;
        let kind = item.get("kind").and_then(Value::as_str).filter(|k| matches!(*k, "file" | "text" | "image")).unwrap_or("file");
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        out.push(json!({
            "kind": kind, "path": path,
            "title": item.get("title").and_then(Value::as_str).unwrap_or(""),
            "mime_type": item.get("mime_type").and_then(Value::as_str).unwrap_or(""),
            "bytes": bytes.len(), "sha256": sha,
        }));
    }
    Ok(out)
}

/// What a new chat message needs beyond the args.
struct Outgoing {
    to: Vec<String>,
    audience: Vec<String>,
    reply_to: Option<String>,
    quote_text: Option<String>,
}

/// Append a chat.message with its side effects (spill, idle wake, auto-wake, headless notify).
fn append_message(g: &mut Group, args: &Args, by: &str, prio: &str, out: Outgoing) -> OpResult<(crate::ledger::Appended, Value)> {
    let ins = insight(args)?;
    if b(args, "require_peer_insight") && ins.is_none() && out.audience.iter().any(|a| g.doc.role_of(a) == "peer") {
        return Err(err("peer_insight_required", "an insight is required when messaging peers").with_details(json!({
            "delivery_state": "not_sent", "new_side_effects": false, "recommended_action": "resend with insight"
        })));
    }
    // Scope: from `path` (must be attached) or the active scope.
    let scope_key = match s(args, "path") {
        "" => g.doc.active_scope_key().to_string(),
        p => {
            let (key, url, _, _) = super::groups::detect_scope(std::path::Path::new(p));
            if !g.doc.scopes().iter().any(|sc| sc.get("scope_key").and_then(Value::as_str) == Some(&key)) {
                return Err(err("scope_not_attached", format!("scope not attached: {url}"))
                    .with_details(json!({"hint": format!("run: cccc attach {url} --group {}", g.id)})));
            }
            key
        }
    };
    let mut attachments = validate_attachments(g, args)?;
    let mut text = raw_s(args, "text").to_string();
    if text.trim().is_empty() && attachments.is_empty() {
        return Err(err("empty_message", "message text cannot be empty"));
    }
    // Idle wake: a message from a person (not an actor, not the system) makes the group active.
    if g.doc.state() == "idle" && !matches!(by, "system" | "") && !g.doc.has_actor(by) {
        g.doc.set_state("active");
        g.save()?;
        crate::automation::on_resume(g);
    }
    let id = cccc_proto::new_event_id();
    if text.len() > SPILL_BYTES {
        let rel = format!("state/ledger/blobs/chat.{id}.txt");
        let full = g.dir.join(&rel);
        // The reference stores the text with exactly one trailing newline; bytes and sha256
        // describe the original text.
        let stored = format!("{}\n", text.trim_end_matches('\n'));
        crate::home::atomic_write(&full, stored.as_bytes()).map_err(|e| err("internal_error", format!("cannot write {rel}: {e}")))?;
        let sha: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        attachments.push(json!({"kind": "text", "path": rel, "bytes": text.len(), "sha256": sha}));
        text = format!("[cccc] (chat text stored at {rel})");
    }
    let sender = g.doc.actor(by);
    let data = ChatMessageData {
        text,
        format: match s(args, "format") {
            "markdown" => "markdown".into(),
            _ => "plain".into(),
        },
        insight: ins,
        priority: prio.into(),
        reply_required: b(args, "reply_required"),
        to: out.to.clone(),
        reply_to: out.reply_to,
        quote_text: out.quote_text,
        source_platform: opt_str(args, "source_platform"),
        source_user_name: opt_str(args, "source_user_name"),
        source_user_id: opt_str(args, "source_user_id"),
        mention_user_ids: args.get("mention_user_ids").and_then(Value::as_array).cloned(),
        sender_title: sender.as_ref().filter(|a| !a.title.is_empty()).map(|a| a.title.to_string()),
        sender_runtime: sender.as_ref().map(|a| a.runtime.to_string()).filter(|r| !r.is_empty()),
        src_group_id: opt_str(args, "src_group_id"),
        src_event_id: opt_str(args, "src_event_id"),
        dst_group_id: opt_str(args, "dst_group_id"),
        dst_to: args.get("dst_to").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()),
        refs: args.get("refs").and_then(Value::as_array).cloned().unwrap_or_default(),
        attachments,
        client_id: opt_str(args, "client_id"),
        suggested_user_message: opt_str(args, "suggested_user_message").map(|m| m.chars().take(4000).collect()),
        ..Default::default()
    };
    let reply_required = data.reply_required;
    let attention = prio == "attention";
    let data = serde_json::to_value(&data).expect("chat data");
    let appended = g.append_with_id(id, "chat.message", &scope_key, by, data)?;
    let event = appended.event.to_value();

    // Headless actors learn of a message through a system.notify (spec §5.3).
    let (title, nprio) = match (reply_required, attention) {
        (true, true) => ("Need reply", "urgent"),
        (true, false) => ("Need reply", "high"),
        (false, true) => ("Needs acknowledgement", "urgent"),
        (false, false) => ("New message", "high"),
    };
    for actor in &out.audience {
        if g.doc.actor(actor).is_some_and(|a| a.runner == "headless") {
            g.append(
                "system.notify",
                "",
                "system",
                json!({
                    "kind": "info", "priority": nprio, "title": title,
                    "message": format!("New message from {by}. Check your inbox."),
                    "target_actor_id": actor, "context": {"event_id": appended.event.id, "from": by},
                    "requires_ack": false, "related_event_id": null,
                }),
            )?;
        }
    }
    // Auto-wake: addressed actors that are disabled or not live get started.
    for actor in &out.audience {
        let needs = g.doc.actor(actor).is_some_and(|a| !a.enabled) || !g.is_live(actor);
        if needs && let Err(e) = super::actors::start_actor(g, actor, by) {
            tracing::warn!(group = %g.id, actor = %actor, error = %e.message, "auto-wake failed");
        }
    }
    Ok((appended, event))
}

/// A replayed send: the original event, no new line (spec §4.7 step 3).
fn replay(g: &Group, by: &str, args: &Args, reply_to: Option<u32>) -> OpResult<Option<Value>> {
    let cid = s(args, "client_id");
    if cid.is_empty() {
        return Ok(None);
    }
    let Some(pos) = g.ledger.index.client_id_event(by, cid) else { return Ok(None) };
    if let Some(rt) = reply_to
        && !g.ledger.index.is_replied_by(by, rt)
    {
        // Same key but a different original: not a replay of this reply.
        return Ok(None);
    }
    let ev = g.event_value(pos)?;
    let id = ev["id"].clone();
    Ok(Some(json!({"event": ev, "event_id": id, "replayed": true})))
}

pub fn send(store: &Store, args: &Args) -> OpResult<Value> {
    let prio = priority(args)?;
    let gid = group_id(args)?;
    let by = by_or(args, "user").to_string();
    store.with_group(gid, |g| {
        if let Some(mut r) = replay(g, &by, args, None)? {
            let m = r.as_object_mut().unwrap();
            m.insert("task_id".into(), json!(""));
            m.insert("task_ref".into(), Value::Null);
            m.insert("task_created".into(), json!(false));
            m.insert("message_sent".into(), json!(true));
            m.insert("partial_failure".into(), json!(false));
            return Ok(r);
        }
        insight(args)?;
        let mut to = canonicalize_to(&g.doc, args.get("to"))?;
        if to.is_empty() && g.doc.default_send_to() == "foreman" {
            to = vec!["@foreman".into()];
        }
        let aud = check_audience(g, &to, &by)?;
        let reply_to = opt_str(args, "reply_to").map(|r| g.ledger.index.resolve(&r).map(|p| g.ledger.index.id_of(p)).unwrap_or(r));
        let out = Outgoing { to, audience: aud, reply_to, quote_text: opt_str(args, "quote_text") };
        let (_, event) = append_message(g, args, &by, prio, out)?;
        Ok(json!({"event": event}))
    })
}

/// Can `who` acknowledge the message at `pos`? (`user`: only when named; actors: addressed and
/// already a member when it was sent.)
fn addressed_for_ack(g: &Group, pos: u32, who: &str) -> bool {
    let ix = &g.ledger.index;
    let e = &ix.entries[pos as usize];
    if who == "user" {
        return names_user(ix, e);
    }
    if !is_for(&g.doc, ix, e, who) {
        return false;
    }
    g.doc.actor(who).and_then(|a| cccc_proto::ts::parse(a.created_at)).is_none_or(|c| c <= e.ts)
}

pub fn reply(store: &Store, args: &Args) -> OpResult<Value> {
    let prio = priority(args)?;
    let gid = group_id(args)?;
    let by = by_or(args, "user").to_string();
    let rt = s(args, "reply_to");
    if rt.is_empty() {
        return Err(err("missing_reply_to", "missing reply_to event_id"));
    }
    store.with_group(gid, |g| {
        let pos = g.ledger.index.resolve(rt).ok_or_else(|| err("event_not_found", format!("event not found: {rt}")))?;
        if let Some(mut r) = replay(g, &by, args, Some(pos))? {
            let m = r.as_object_mut().unwrap();
            m.insert("message_sent".into(), json!(true));
            m.insert("partial_failure".into(), json!(false));
            m.insert("ack_event".into(), Value::Null);
            return Ok(r);
        }
        let orig = g.ledger.read(pos).map_err(|e| err("internal_error", e.to_string()))?;
        let full_id = orig.id.clone();
        let mut to = canonicalize_to(&g.doc, args.get("to"))?;
        if to.is_empty() {
            if orig.by != by {
                to = vec![if orig.by == "@user" { "user".into() } else { orig.by.clone() }];
            } else {
                to = orig.data.get("to").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
                if to.is_empty() && g.doc.default_send_to() == "foreman" {
                    to = vec!["@foreman".into()];
                }
            }
        }
        let aud = check_audience(g, &to, &by)?;
        let otext = orig.data_str("text").trim();
        let quote = if otext.chars().count() > 100 { format!("{}...", otext.chars().take(100).collect::<String>()) } else { otext.to_string() };
        let out = Outgoing { to, audience: aud, reply_to: Some(full_id.clone()), quote_text: Some(quote) };
        let (_, event) = append_message(g, args, &by, prio, out)?;
        // Replying to an unacked attention message addressed to you acknowledges it.
        let mut ack_event = Value::Null;
        let ix = &g.ledger.index;
        let e = &ix.entries[pos as usize];
        if e.kind == Kind::ChatMessage
            && e.msg.as_ref().is_some_and(|m| m.attention)
            && orig.by != by
            && addressed_for_ack(g, pos, &by)
            && !ix.is_acked_by(&by, pos)
        {
            let a = g.append("chat.ack", "", &by, json!({"actor_id": by, "event_id": full_id}))?;
            ack_event = a.event.to_value();
        }
        Ok(json!({"event": event, "ack_event": ack_event}))
    })
}

pub fn chat_ack(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let actor = super::actor_id(args)?;
    let event_id = s(args, "event_id");
    if event_id.is_empty() {
        return Err(err("missing_event_id", "missing event_id"));
    }
    let by = by_or(args, "user");
    if by != actor {
        return Err(err("permission_denied", "ack must be performed by the recipient (by must equal actor_id)"));
    }
    store.with_group(gid, |g| {
        if actor != "user" && !g.doc.has_actor(actor) {
            return Err(err("unknown_actor", format!("unknown actor: {actor}")));
        }
        let pos = g.ledger.index.resolve(event_id).ok_or_else(|| err("event_not_found", format!("event not found: {event_id}")))?;
        let e = &g.ledger.index.entries[pos as usize];
        if e.kind != Kind::ChatMessage {
            return Err(err("invalid_event_kind", "only chat.message events can be acknowledged"));
        }
        if g.ledger.index.sym_name(e.by) == actor {
            return Err(err("cannot_ack_own_message", "cannot acknowledge your own message"));
        }
        if !e.msg.as_ref().is_some_and(|m| m.attention) {
            return Err(err("not_an_attention_message", "message priority is not attention"));
        }
        if !addressed_for_ack(g, pos, actor) {
            return Err(err("event_not_for_actor", format!("event is not addressed to actor: {actor}")));
        }
        if g.ledger.index.is_acked_by(actor, pos) {
            return Ok(json!({"acked": true, "already": true, "event": null}));
        }
        let full = g.ledger.index.id_of(pos);
        let a = g.append("chat.ack", "", by, json!({"actor_id": actor, "event_id": full}))?;
        Ok(json!({"acked": true, "already": false, "event": a.event.to_value()}))
    })
}

pub fn system_notify(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "system");
    let kind = Some(s(args, "kind")).filter(|k| NOTIFY_KINDS.contains(k)).unwrap_or("info");
    let prio = Some(s(args, "priority")).filter(|p| NOTIFY_PRIORITIES.contains(p)).unwrap_or("normal");
    let target = opt_str(args, "target_actor_id");
    let context = args.get("context").filter(|c| c.is_object()).cloned().unwrap_or(json!({}));
    let related = opt_str(args, "related_event_id");
    store.with_group(gid, |g| {
        let a = g.append(
            "system.notify",
            "",
            by,
            json!({
                "kind": kind, "priority": prio, "title": raw_s(args, "title"), "message": raw_s(args, "message"),
                "target_actor_id": target, "context": context, "requires_ack": b(args, "requires_ack"), "related_event_id": related,
            }),
        )?;
        Ok(json!({"event": a.event.to_value()}))
    })
}

pub fn notify_ack(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let actor = super::actor_id(args)?;
    let nid = s(args, "notify_event_id");
    if nid.is_empty() {
        return Err(err("missing_notify_event_id", "missing notify_event_id"));
    }
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        let pos = g.ledger.index.resolve(nid).ok_or_else(|| err("event_not_found", format!("event not found: {nid}")))?;
        if g.ledger.index.entries[pos as usize].kind != Kind::SystemNotify {
            return Err(err("invalid_event_kind", "only system.notify events can be acknowledged with notify_ack"));
        }
        // Deduplicated (the reference appends again): a repeated ack returns the first one.
        if let Some(prev) = g.ledger.index.notify_ack_of(actor, pos) {
            return Ok(json!({"event": g.event_value(prev)?, "already": true}));
        }
        let full = g.ledger.index.id_of(pos);
        let a = g.append("system.notify_ack", "", by, json!({"notify_event_id": full, "actor_id": actor}))?;
        Ok(json!({"event": a.event.to_value()}))
    })
}
