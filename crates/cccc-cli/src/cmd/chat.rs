//! Messages: `send`, `reply`, `inbox`, `read`, `ack`, `obligations`.

use crate::cli::{AckArgs, InboxArgs, ObligationsArgs, ReadArgs, ReplyArgs, SendArgs};
use crate::cmd::info::obligation_line;
use crate::ctx::{CmdResult, Ctx, Fail, actor_id, envelope, event_id_of, sender, split_to};
use crate::output::{event_line, outln, print_json, recipients, short_id, short_ts, str_of};
use serde_json::{Value, json};

fn env_actor() -> Option<String> {
    std::env::var("CCCC_ACTOR_ID").ok()
}

pub fn send(ctx: &Ctx, a: &SendArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let mut args = json!({
        "group_id": gid, "text": a.text, "by": sender(&a.by, env_actor()), "to": split_to(&a.to),
        "path": a.path.clone().unwrap_or_default(), "priority": a.priority.as_str(), "reply_required": a.reply_required,
    });
    if let Some(k) = &a.client_id {
        args["client_id"] = json!(k);
    }
    ctx.run("send", args, |r| {
        let ev = &r["event"];
        let replayed = if r["replayed"] == json!(true) { " (already sent with this --client-id)" } else { "" };
        outln!("sent {} to {}{replayed}", str_of(ev, "id"), recipients(ev["data"].get("to")));
    })
}

pub fn reply(ctx: &Ctx, a: &ReplyArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let mut args = json!({
        "group_id": gid, "text": a.text, "by": sender(&a.by, env_actor()), "reply_to": a.event_id.trim(), "to": split_to(&a.to),
        "priority": a.priority.as_str(), "reply_required": a.reply_required,
    });
    if let Some(k) = &a.client_id {
        args["client_id"] = json!(k);
    }
    ctx.run("reply", args, |r| {
        let ev = &r["event"];
        let data = &ev["data"];
        outln!("replied {} to {} (re {})", str_of(ev, "id"), recipients(data.get("to")), short_id(str_of(data, "reply_to")));
        if !event_id_of(r, "ack_event").is_empty() {
            outln!("acknowledged {}", short_id(str_of(data, "reply_to")));
        }
    })
}

pub fn inbox(ctx: &Ctx, a: &InboxArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let who = actor_id(&a.actor.actor_id)?;
    let args = json!({"group_id": gid, "actor_id": who, "by": a.by, "limit": a.limit, "kind_filter": a.kind_filter.as_str()});
    let listed = ctx.call("inbox_list", args)?;
    let messages = listed.result.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let last_id = messages.last().map(|m| str_of(m, "id").to_string());
    let (true, true, Some(last_id)) = (listed.ok, a.mark_read, last_id) else {
        return ctx.finish(listed, |r| print_inbox(&who, r, a.limit));
    };
    // --mark-read: move the cursor to the last message listed, as the reference does.
    let marked = ctx.call("inbox_mark_read", json!({"group_id": gid, "actor_id": who, "event_id": last_id, "by": a.by}))?;
    if ctx.json {
        // The reference prints this combined object (without `v`); a failed mark prints its envelope.
        if marked.ok {
            print_json(&json!({"ok": true, "result": {"messages": messages, "marked": marked.result}}));
        } else {
            print_json(&envelope(&marked));
        }
        return Ok(if marked.ok { 0 } else { 2 });
    }
    print_inbox(&who, &listed.result, a.limit);
    ctx.finish(marked, |m| print_marked(&who, m))
}

fn print_inbox(who: &str, r: &Value, limit: u64) {
    let list = r.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        outln!("no unread messages for {who}");
        return;
    }
    for m in list {
        outln!("{}", event_line(m));
    }
    let more = if limit > 0 && list.len() as u64 >= limit { " (limit reached; more may be waiting)" } else { "" };
    outln!("{} unread for {who}{more}", list.len());
}

fn print_marked(who: &str, m: &Value) {
    let cursor = &m["cursor"];
    outln!("marked read for {who} up to {} ({})", short_id(str_of(cursor, "event_id")), short_ts(str_of(cursor, "ts")));
    if !event_id_of(m, "ack_event").is_empty() {
        outln!("acknowledged {}", short_id(str_of(&m["ack_event"]["data"], "event_id")));
    }
}

pub fn read(ctx: &Ctx, a: &ReadArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let who = actor_id(&a.actor.actor_id)?;
    ctx.run("inbox_mark_read", json!({"group_id": gid, "actor_id": who, "event_id": a.event_id.trim(), "by": a.by}), |m| print_marked(&who, m))
}

pub fn ack(ctx: &Ctx, a: &AckArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let who = actor_id(&a.actor.actor_id)?;
    let event_id = a.event_id.trim();
    // Only the recipient may acknowledge, so `by` is the actor itself.
    ctx.run("chat_ack", json!({"group_id": gid, "actor_id": who, "event_id": event_id, "by": who}), |r| {
        if r["already"] == json!(true) {
            outln!("{} was already acknowledged by {who}", short_id(event_id));
        } else {
            outln!("acknowledged {} as {who}", short_id(event_id));
        }
    })
}

pub fn obligations(ctx: &Ctx, a: &ObligationsArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let mut args = json!({"group_id": gid, "include_closed": a.all});
    if let Some(who) = a.actor_id.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        args["actor_id"] = json!(who);
    }
    let resp = ctx.call("obligations", args)?;
    if resp.error.as_ref().is_some_and(|e| e.code == "unknown_op") && !ctx.json {
        return Err(Fail::reject("unknown_op", "this daemon has no `obligations` op (it is an extension of the Rust daemon)"));
    }
    ctx.finish(resp, |r| {
        let list = r.get("obligations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if list.is_empty() {
            outln!("{} in {gid}", if a.all { "no obligations" } else { "nothing owed" });
            return;
        }
        for o in list {
            outln!("{}", describe_obligation(o, a.all));
        }
        if !a.all {
            outln!("{} open", list.len());
        }
    })
}

/// An obligation line; with `--all`, closed ones say how they were fulfilled.
fn describe_obligation(o: &Value, all: bool) -> String {
    let st = &o["status"];
    let line = obligation_line(o);
    let flag = |k: &str| st[k] == json!(true);
    let mut notes = Vec::new();
    if flag("reply_required") {
        notes.push("reply required");
    }
    if flag("attention") {
        notes.push("attention");
    }
    notes.push(if flag("read") { "read" } else { "unread" });
    let state = if !all {
        String::new()
    } else if flag("open") {
        "[open] ".into()
    } else {
        "[done] ".into()
    };
    format!("{state}{line}  ({}; {})", notes.join(", "), short_ts(str_of(o, "ts")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obligations_say_what_is_owed_and_its_state() {
        let o = json!({"event_id": "15e1b1fcab1b40e88a7c1bf7bf4637a9", "ts": "2026-11-25T10:11:43.097327Z", "by": "user", "recipient": "peer-a",
            "text": "Please review", "status": {"read": false, "acked": false, "replied": false, "reply_required": true, "attention": true, "open": true}});
        assert_eq!(
            describe_obligation(&o, false),
            "15e1b1fc peer-a owes reply to user: Please review  (reply required, attention, unread; 2026-11-25T10:11:43Z)"
        );
        let mut done = o.clone();
        done["status"] = json!({"read": true, "acked": true, "replied": false, "reply_required": false, "attention": true, "open": false});
        assert!(describe_obligation(&done, true).starts_with("[done] 15e1b1fc peer-a acknowledged user: Please review  (attention, read;"));
    }
}
