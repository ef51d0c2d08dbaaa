//! IPC operations applied to a [`Store`]: one function per op, dispatched by name.
//!
//! Each op validates its arguments in the reference's order (so the same bad request gets the
//! same error code), mutates the group under its lock, appends its events, and returns the
//! result object. Durability is handled by [`Store::with_group`]: when an op returns, what it
//! appended is on disk.
//!
//! `ping`, `shutdown` and `events_stream` are the daemon's (they need the socket); everything
//! else is here.

mod actors;
mod chat;
mod groups;
pub mod im;
mod inbox;

use crate::store::{Group, Store};
use crate::{OpResult, err};
use serde_json::{Map, Value};

pub type Args = Map<String, Value>;

/// Apply op `op`. `None` means the op is unknown.
pub fn dispatch(store: &Store, op: &str, args: &Args) -> Option<OpResult<Value>> {
    let r = match op {
        "term_attach" | "terminal_tail" | "term_resize" => {
            let mut a = args.clone();
            a.insert("__op".into(), Value::from(op));
            actors::terminal_op(store, &a)
        }
        "groups" => groups::groups(store),
        "group_show" => groups::group_show(store, args),
        "group_create" => groups::group_create(store, args),
        "attach" => groups::attach(store, args),
        "group_update" => groups::group_update(store, args),
        "group_delete" => groups::group_delete(store, args),
        "group_use" => groups::group_use(store, args),
        "group_detach_scope" => groups::group_detach_scope(store, args),
        "group_set_state" => groups::group_set_state(store, args),
        "group_settings_update" => groups::group_settings_update(store, args),
        "group_start" => groups::group_start(store, args),
        "group_stop" => groups::group_stop(store, args),
        "registry_reconcile" => groups::registry_reconcile(store, args),
        "actor_list" => actors::actor_list(store, args),
        "actor_add" => actors::actor_add(store, args),
        "actor_update" => actors::actor_update(store, args),
        "actor_remove" => actors::actor_remove(store, args),
        "actor_start" => actors::actor_start(store, args),
        "actor_stop" => actors::actor_stop(store, args),
        "actor_restart" => actors::actor_restart(store, args),
        "send" => chat::send(store, args),
        "reply" => chat::reply(store, args),
        "chat_ack" => chat::chat_ack(store, args),
        "system_notify" => chat::system_notify(store, args),
        "notify_ack" => chat::notify_ack(store, args),
        "inbox_list" => inbox::inbox_list(store, args),
        "inbox_mark_read" => inbox::inbox_mark_read(store, args),
        "inbox_mark_all_read" => inbox::inbox_mark_all_read(store, args),
        "ledger_tail" => inbox::ledger_tail(store, args),
        "obligations" => inbox::obligations(store, args),
        "observability_get" => Ok(observability()),
        "im_set" => im::im_set(store, args),
        "im_unset" => im::im_unset(store, args),
        "im_config" => im::im_config(store, args),
        "im_start" => im::im_start(store, args),
        "im_stop" => im::im_stop(store, args),
        "im_status" => im::im_status(store, args),
        "im_bind_chat" => im::im_bind_chat(store, args),
        "im_list_authorized" => im::im_list_authorized(store, args),
        "im_list_pending" => im::im_list_pending(store, args),
        "im_reject_pending" => im::im_reject_pending(store, args),
        "im_revoke_chat" => im::im_revoke_chat(store, args),
        _ => return None,
    };
    Some(r)
}

/// Ops that only read (the daemon may run these concurrently with writes to other groups).
pub fn is_read_only(op: &str) -> bool {
    matches!(op, "groups" | "group_show" | "actor_list" | "inbox_list" | "ledger_tail" | "obligations" | "observability_get")
}

fn observability() -> Value {
    serde_json::json!({"observability": {
        "developer_mode": false, "log_level": "INFO",
        "components": ["daemon", "web", "delivery", "im", "pty", "mcp"], "logger_levels": {},
        "terminal_transcript": {"enabled": false, "per_actor_bytes": 10485760, "persist": false, "strip_ansi": true},
        "terminal_ui": {"scrollback_lines": 8000},
        "runtime_visibility": {"peer_runtime": "visible", "assistant_runtime": "hidden"}
    }})
}

// ---- argument helpers -------------------------------------------------------------------------

/// A string argument, trimmed; absent, null or non-string ⇒ "".
pub(crate) fn s<'a>(args: &'a Args, key: &str) -> &'a str {
    args.get(key).and_then(Value::as_str).map(str::trim).unwrap_or("")
}

/// A string argument not trimmed (message text).
pub(crate) fn raw_s<'a>(args: &'a Args, key: &str) -> &'a str {
    args.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A boolean argument; also accepts 0/1 and "true"/"false".
pub(crate) fn b(args: &Args, key: &str) -> bool {
    match args.get(key) {
        Some(Value::Bool(v)) => *v,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

/// `by`, defaulting to `default`.
pub(crate) fn by_or<'a>(args: &'a Args, default: &'a str) -> &'a str {
    let v = s(args, "by");
    if v.is_empty() { default } else { v }
}

pub(crate) fn group_id(args: &Args) -> OpResult<&str> {
    let g = s(args, "group_id");
    if g.is_empty() { Err(err("missing_group_id", "missing group_id")) } else { Ok(g) }
}

pub(crate) fn actor_id(args: &Args) -> OpResult<&str> {
    let a = s(args, "actor_id");
    if a.is_empty() { Err(err("missing_actor_id", "missing actor_id")) } else { Ok(a) }
}

/// Group-level permission (user or foreman). The error message is wrapped in `wrap_code`.
pub(crate) fn require_group_admin(g: &Group, by: &str, action: &str, wrap_code: &str) -> OpResult<()> {
    if by == "user" || by.is_empty() || by == "cli" || by == "system" {
        return Ok(());
    }
    if !g.doc.has_actor(by) {
        return Err(err(wrap_code, format!("unknown actor: {by}")));
    }
    if g.doc.role_of(by) == "foreman" {
        Ok(())
    } else {
        Err(err(wrap_code, format!("permission denied: {by} cannot {action}")))
    }
}

/// Is `by` a human or tool principal (not an actor)?
pub(crate) fn is_user_like(by: &str) -> bool {
    matches!(by, "user" | "cli" | "")
}
