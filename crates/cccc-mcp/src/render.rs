//! Text an LLM reads: compact, one fact per line, event ids in full (they are the arguments of
//! the next call).

use crate::Snapshot;
use serde_json::Value;
use std::fmt::Write;

/// Server instructions sent at `initialize`.
pub const INSTRUCTIONS: &str = "CCCC connects you to a working group: the human `user`, a foreman and peer agents. \
Only messages sent with these tools reach anyone; your terminal output is not delivered. \
Start with cccc_bootstrap; answer messages with cccc_message_reply (event_id from the delivery header or cccc_inbox_list); \
start new conversations with cccc_message_send; after handling your inbox call cccc_inbox_mark_read. Use cccc_help if unsure.";

/// `cccc_help` text.
pub const HELP: &str = "\
CCCC = a working group of the human `user`, a foreman (the first actor) and peers, talking through a durable \
ledger kept by the CCCC daemon. Only messages sent with these tools are delivered; your terminal output is not.

Tools
- cccc_bootstrap — who you are, the group, unread count, what you owe. Call it first.
- cccc_inbox_list(limit?, kind_filter?) — your unread messages, oldest first (listing does not mark them read).
- cccc_message_reply(event_id, text, to?, priority?, reply_required?) — answer a message; goes to its sender unless `to` is given. \
The ONLY way to close a REPLY REQUIRED ask; it also acknowledges an IMPORTANT message.
- cccc_message_send(text, to?, priority?, reply_required?) — a new message. `to`: actor ids, \"user\", \"@foreman\", \"@peers\", \"@all\"; \
omitted = the foreman (group default).
- cccc_inbox_mark_read(event_id?) — mark read up to and including event_id (cumulative); no event_id = everything. \
Marking an IMPORTANT message read yourself acknowledges it.
- cccc_ack(event_id) — acknowledge an IMPORTANT (attention) message without replying.
- cccc_group_status — members, roles, running state, open obligations (yours and those owed to you).

Markers in deliveries and the inbox
- IMPORTANT (priority attention): acknowledge it (reply, cccc_ack or mark read).
- REPLY REQUIRED: answer with cccc_message_reply(event_id=...). Reading or acking does not close it.

Loop: cccc_inbox_list → do the work → cccc_message_reply → cccc_inbox_mark_read(event_id=<last handled>).

Etiquette: keep messages short and concrete (what changed, what is next, what you need); reply in-thread rather \
than sending new messages; avoid routine @all; use attention/reply_required only when you truly need them.";

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn to_list(v: &Value) -> String {
    let to: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if to.is_empty() { "@all".to_string() } else { to.join(", ") }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}")).collect::<Vec<_>>().join("\n")
}

fn preview(text: &str, n: usize) -> String {
    let t = text.trim().replace('\n', " ");
    if t.chars().count() > n { format!("{}…", t.chars().take(n).collect::<String>()) } else { t }
}

/// Result of `send`/`reply`.
pub fn sent(what: &str, r: &Value) -> String {
    let ev = &r["event"];
    let d = &ev["data"];
    let mut out = format!("{what}: event_id={} to {}", s(ev, "id"), to_list(&d["to"]));
    if !s(d, "reply_to").is_empty() {
        let _ = write!(out, " (reply to {})", s(d, "reply_to"));
    }
    if s(d, "priority") == "attention" {
        out.push_str(" [IMPORTANT]");
    }
    if d["reply_required"] == Value::Bool(true) {
        out.push_str(" [REPLY REQUIRED]");
    }
    out.push('.');
    if let Some(ack) = r.get("ack_event").filter(|a| a.is_object()) {
        let _ = write!(out, "\nAlso acknowledged the IMPORTANT message {} (chat.ack {}).", s(&ack["data"], "event_id"), s(ack, "id"));
    }
    out
}

/// One inbox entry.
fn entry(out: &mut String, n: usize, ev: &Value) {
    let d = &ev["data"];
    let id = s(ev, "id");
    let ts = s(ev, "ts");
    match s(ev, "kind") {
        "chat.message" => {
            let _ = write!(out, "{n}. {id} | {ts} | {} → {}", s(ev, "by"), to_list(&d["to"]));
            if s(d, "priority") == "attention" {
                out.push_str(" | IMPORTANT");
            }
            if d["reply_required"] == Value::Bool(true) {
                out.push_str(" | REPLY REQUIRED");
            }
            if !s(d, "reply_to").is_empty() {
                let _ = write!(out, " | reply to {}", s(d, "reply_to"));
            }
            out.push('\n');
            if !s(d, "quote_text").is_empty() {
                let _ = writeln!(out, "   > \"{}\"", preview(s(d, "quote_text"), 80));
            }
            let text = s(d, "text");
            let _ = writeln!(out, "{}", indent(if text.is_empty() { "(no text)" } else { text }));
            if let Some(att) = d["attachments"].as_array().filter(|a| !a.is_empty()) {
                let paths: Vec<&str> = att.iter().map(|a| s(a, "path")).collect();
                let _ = writeln!(out, "   attachments: {}", paths.join(", "));
            }
        }
        "system.notify" => {
            let _ = writeln!(out, "{n}. {id} | {ts} | SYSTEM ({}) {}", s(d, "kind"), s(d, "title"));
            if !s(d, "message").is_empty() {
                let _ = writeln!(out, "{}", indent(s(d, "message")));
            }
        }
        other => {
            let _ = writeln!(out, "{n}. {id} | {ts} | {other} by {}", s(ev, "by"));
        }
    }
}

/// Result of `inbox_list`.
pub fn inbox(me: &str, r: &Value, limit: usize, filter: &str) -> String {
    let msgs = r["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if msgs.is_empty() {
        return format!("Inbox of {me} ({filter}): nothing unread.");
    }
    let mut out = format!("Inbox of {me} ({filter}): {} unread, oldest first", msgs.len());
    if msgs.len() >= limit {
        let _ = write!(out, " (showing the first {limit}; there may be more)");
    }
    out.push_str(":\n");
    for (i, ev) in msgs.iter().enumerate() {
        entry(&mut out, i + 1, ev);
    }
    let last = s(msgs.last().unwrap(), "id");
    let _ = write!(
        out,
        "\nNext: answer with cccc_message_reply(event_id=..., text=...) (required for REPLY REQUIRED); then cccc_inbox_mark_read(event_id={last})."
    );
    out
}

/// Result of `inbox_mark_read`.
pub fn marked(id: &str, r: &Value) -> String {
    let c = &r["cursor"];
    let mut out = format!("Marked read up to {} (ts {}).", if s(c, "event_id").is_empty() { id } else { s(c, "event_id") }, s(c, "ts"));
    if let Some(ack) = r.get("ack_event").filter(|a| a.is_object()) {
        let _ = write!(out, " This also acknowledged the IMPORTANT message {}.", s(&ack["data"], "event_id"));
    }
    out
}

/// Result of `inbox_mark_all_read`.
pub fn marked_all(r: &Value) -> String {
    if r["event"].is_null() {
        return "Nothing unread: inbox already clear.".into();
    }
    format!("Marked everything read up to {} (ts {}). (Marking all read does not acknowledge IMPORTANT messages: use cccc_ack.)", s(&r["cursor"], "event_id"), s(&r["cursor"], "ts"))
}

/// Result of `chat_ack`.
pub fn acked(id: &str, r: &Value) -> String {
    if r["already"] == Value::Bool(true) {
        format!("Already acknowledged {id}: nothing new recorded.")
    } else {
        let ev = &r["event"];
        let acked = if s(&ev["data"], "event_id").is_empty() { id } else { s(&ev["data"], "event_id") };
        format!("Acknowledged {acked} (chat.ack {}).", s(ev, "id"))
    }
}

fn actor_line(out: &mut String, me: &str, a: &Value) {
    let id = s(a, "id");
    let _ = write!(out, "- {id} [{}]", s(a, "role"));
    if !s(a, "title").is_empty() && s(a, "title") != id {
        let _ = write!(out, " \"{}\"", s(a, "title"));
    }
    let _ = write!(out, " runtime={} runner={}", s(a, "runtime"), s(a, "runner"));
    let running = a["running"] == Value::Bool(true);
    let _ = write!(out, " {}", if running { "running" } else { "not running" });
    if a["enabled"] == Value::Bool(false) {
        out.push_str(" (disabled)");
    }
    if !s(a, "effective_working_state").is_empty() && running {
        let _ = write!(out, " state={}", s(a, "effective_working_state"));
    }
    if let Some(n) = a["unread_count"].as_u64() {
        let _ = write!(out, " unread={n}");
    }
    if id == me {
        out.push_str("  ← you");
    }
    out.push('\n');
}

/// What an open obligation still needs.
fn needs(st: &Value) -> &'static str {
    let t = |k: &str| st[k] == Value::Bool(true);
    if t("reply_required") && !t("replied") {
        "REPLY REQUIRED"
    } else if t("attention") && !t("acked") {
        "ACK needed (IMPORTANT)"
    } else {
        "open"
    }
}

fn owed_by_me<'a>(me: &str, obs: &'a [Value]) -> Vec<&'a Value> {
    obs.iter().filter(|o| s(o, "recipient") == me).collect()
}

fn owed_to_me<'a>(me: &str, obs: &'a [Value]) -> Vec<&'a Value> {
    obs.iter().filter(|o| s(o, "by") == me && s(o, "recipient") != me).collect()
}

fn obligations_block(out: &mut String, me: &str, obs: &Result<Vec<Value>, cccc_proto::ErrorBody>, others: bool) {
    let obs = match obs {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(out, "Obligations: unavailable ({}: {})", e.code, e.message);
            return;
        }
    };
    let mine = owed_by_me(me, obs);
    if mine.is_empty() {
        out.push_str("You owe nothing: no open REPLY REQUIRED asks or unacknowledged IMPORTANT messages.\n");
    } else {
        let _ = writeln!(out, "You owe ({}):", mine.len());
        for o in mine {
            let id = s(o, "event_id");
            let need = needs(&o["status"]);
            let how = if need == "REPLY REQUIRED" { format!("cccc_message_reply(event_id={id}, ...)") } else { format!("cccc_ack(event_id={id})") };
            let _ = writeln!(out, "- {id} from {} at {}: {need} → {how}\n   \"{}\"", s(o, "by"), s(o, "ts"), preview(s(o, "text"), 120));
        }
    }
    if others {
        let theirs = owed_to_me(me, obs);
        if !theirs.is_empty() {
            let _ = writeln!(out, "Waiting on others ({}):", theirs.len());
            for o in theirs {
                let _ = writeln!(out, "- {} → {}: {} \"{}\"", s(o, "event_id"), s(o, "recipient"), needs(&o["status"]), preview(s(o, "text"), 80));
            }
        }
    }
}

fn project_dir(g: &Value) -> String {
    let key = s(g, "active_scope_key");
    g["scopes"]
        .as_array()
        .and_then(|sc| sc.iter().find(|x| s(x, "scope_key") == key))
        .map(|x| s(x, "url").to_string())
        .unwrap_or_default()
}

/// `cccc_group_status`.
pub fn status(me: &str, snap: &Snapshot) -> String {
    let g = &snap.group;
    let mut out = format!("Group \"{}\" ({}) state={} running={}\n", s(g, "title"), snap.group_id, s(g, "state"), g["running"].as_bool().unwrap_or(false));
    if !s(g, "topic").is_empty() {
        let _ = writeln!(out, "Topic: {}", s(g, "topic"));
    }
    let dir = project_dir(g);
    if !dir.is_empty() {
        let _ = writeln!(out, "Project: {dir}");
    }
    let _ = writeln!(out, "Actors ({}; the foreman is the first):", snap.actors.len());
    for a in &snap.actors {
        actor_line(&mut out, me, a);
    }
    if !snap.actors.iter().any(|a| s(a, "id") == me) {
        let _ = writeln!(out, "WARNING: you ({me}) are not an actor of this group.");
    }
    obligations_block(&mut out, me, &snap.obligations, true);
    out.trim_end().to_string()
}

/// `cccc_bootstrap`.
pub fn bootstrap(me: &str, snap: &Snapshot) -> String {
    let g = &snap.group;
    let mine = snap.actors.iter().find(|a| s(a, "id") == me);
    let role = mine.map(|a| s(a, "role")).unwrap_or("");
    let mut out = format!("You are `{me}`");
    match mine {
        Some(a) => {
            let _ = write!(out, " (role: {role}");
            if !s(a, "title").is_empty() {
                let _ = write!(out, ", title \"{}\"", s(a, "title"));
            }
            out.push(')');
        }
        None => out.push_str(" (WARNING: not an actor of this group)"),
    }
    let _ = writeln!(out, " in CCCC working group \"{}\" ({}), state {}.", s(g, "title"), snap.group_id, s(g, "state"));
    if !s(g, "topic").is_empty() {
        let _ = writeln!(out, "Topic: {}", s(g, "topic"));
    }
    let dir = project_dir(g);
    if !dir.is_empty() {
        let _ = writeln!(out, "Project: {dir}");
    }
    match snap.actors.iter().find(|a| s(a, "role") == "foreman") {
        Some(f) if s(f, "id") == me => out.push_str("Foreman: you. You coordinate the peers and report to the user.\n"),
        Some(f) => {
            let _ = writeln!(out, "Foreman: {} — your lead; by default your messages go to them.", s(f, "id"));
        }
        None => out.push_str("Foreman: none.\n"),
    }
    let members: Vec<String> = snap.actors.iter().map(|a| format!("{} ({})", s(a, "id"), s(a, "role"))).collect();
    let _ = writeln!(out, "Members: {} and the human `user`.", members.join(", "));
    let unread = mine.and_then(|a| a["unread_count"].as_u64()).unwrap_or(0);
    if unread > 0 {
        let _ = writeln!(out, "Unread: {unread} → call cccc_inbox_list.");
    } else {
        out.push_str("Unread: 0.\n");
    }
    obligations_block(&mut out, me, &snap.obligations, role == "foreman");
    out.push_str("\nHow to work:\n");
    out.push_str(
        "- Only messages are delivered; terminal output is not. Answer with cccc_message_reply(event_id, text); new topics with cccc_message_send(text, to).\n\
         - REPLY REQUIRED asks are closed only by cccc_message_reply; IMPORTANT messages need an ack (reply, cccc_ack or cccc_inbox_mark_read).\n\
         - After handling your inbox call cccc_inbox_mark_read(event_id=<last handled>).\n\
         - Keep messages short and concrete; avoid routine @all. cccc_help has the details.",
    );
    out
}
