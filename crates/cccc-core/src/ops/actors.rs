//! Actor ops: list, add, update, remove, start, stop, restart; terminal ops for PTY actors.
//!
//! Runtimes: a `headless` actor has no process; its session is live from start to stop (the
//! reference's in-memory headless session). PTY actors are stored and listed like the
//! reference's, but spawning their processes belongs to the runtime layer that is not built
//! yet; starting one reports a clear `start_error` instead of pretending it runs.

use super::{Args, b, by_or, group_id, inbox, is_user_like, s};
use crate::group::validate_actor_id;
use crate::store::{Group, Store};
use crate::{OpResult, err};
use serde_json::{Map, Value, json};

pub const RUNTIMES: &[&str] = &[
    "amp", "antigravity", "auggie", "claude", "codex", "copilot", "cursor", "devin", "kiro", "kilo", "droid", "grok", "hermes",
    "kimi", "opencode", "web_model", "custom",
];

/// Default argv of a runtime when no command is given.
fn default_command(runtime: &str) -> Vec<String> {
    let v: &[&str] = match runtime {
        "claude" => &["claude", "--dangerously-skip-permissions"],
        "codex" => &["codex", "-c", "shell_environment_policy.inherit=all", "--dangerously-bypass-approvals-and-sandbox", "--search"],
        "copilot" => &["copilot", "--allow-all-tools"],
        "custom" | "web_model" => &[],
        other => return vec![other.to_string()],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Split a shell-words string (`a "b c" 'd'`) into argv.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("trailing backslash".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn command_arg(v: Option<&Value>) -> OpResult<Option<Vec<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => shell_words(s).map(Some).map_err(|e| err("invalid_request", format!("command: {e}"))),
        Some(Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(|| err("invalid_request", "command must be a list of strings"))).collect::<OpResult<Vec<_>>>().map(Some)
        }
        Some(_) => Err(err("invalid_request", "command must be a list of strings")),
    }
}

fn env_arg(v: Option<&Value>) -> OpResult<Map<String, Value>> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(err("invalid_request", format!("env value of {k} must be a string"))),
                };
                out.insert(k.clone(), json!(v));
            }
            Ok(out)
        }
        Some(_) => Err(err("invalid_request", "env must be an object of strings")),
    }
}

/// The stored actor plus its current role.
fn with_role(g: &Group, id: &str) -> Value {
    let mut a = g.doc.actor_value(id).cloned().unwrap_or(json!({}));
    if let Some(m) = a.as_object_mut() {
        m.insert("role".into(), json!(g.doc.role_of(id)));
    }
    a
}

/// Start an actor's runtime session. Headless: always works. PTY: not available yet.
pub(crate) fn spawn_runtime(g: &mut Group, id: &str) -> Result<(), String> {
    let runner = g.doc.actor(id).map(|a| a.runner.to_string()).ok_or_else(|| format!("actor not found: {id}"))?;
    // As in the reference, no runtime starts before a project scope is attached.
    if g.doc.active_scope_key().is_empty() {
        return Err("no active scope for group".into());
    }
    match runner.as_str() {
        "headless" => {
            g.live.entry(id.to_string()).or_insert_with(cccc_proto::ts::now);
            Ok(())
        }
        _ => {
            crate::runtime::start_pty(g, id)?;
            g.live.insert(id.to_string(), cccc_proto::ts::now());
            Ok(())
        }
    }
}

/// Enable and start an actor, as `actor_start` and auto-wake do. Appends `actor.start`.
pub(crate) fn start_actor(g: &mut Group, id: &str, by: &str) -> OpResult<Value> {
    let runner = g.doc.actor(id).map(|a| a.runner.to_string()).ok_or_else(|| err("actor_not_found", format!("actor not found: {id}")))?;
    let was_enabled = g.doc.actor(id).is_some_and(|a| a.enabled);
    if let Some(a) = g.doc.actor_value_mut(id) {
        a.insert("enabled".into(), json!(true));
        a.insert("updated_at".into(), json!(cccc_proto::ts::now()));
    }
    if let Err(e) = spawn_runtime(g, id) {
        if let Some(a) = g.doc.actor_value_mut(id) {
            a.insert("enabled".into(), json!(was_enabled));
        }
        return Err(err("actor_start_failed", e));
    }
    if g.doc.state() == "stopped" {
        g.doc.set_state("active");
    }
    g.doc.set_running_flag(true);
    g.save()?;
    let a = g.append("actor.start", "", by, json!({"actor_id": id, "runner": runner, "runner_effective": null}))?;
    Ok(a.event.to_value())
}

fn running_flag_after_stop(g: &mut Group) {
    if !g.doc.actor_views().any(|a| a.enabled && !a.internal) {
        g.doc.set_running_flag(false);
    }
}

fn require_actor(g: &Group, id: &str) -> OpResult<()> {
    if g.doc.has_actor(id) { Ok(()) } else { Err(err("actor_not_found", format!("actor not found: {id}"))) }
}

/// The actor permission matrix (spec §2.8). `Ok` or the denial message.
fn actor_permission(g: &Group, by: &str, action: &str, target: &str) -> Result<(), String> {
    if is_user_like(by) || by == "system" {
        return Ok(());
    }
    if !g.doc.has_actor(by) {
        return Err(format!("unknown actor: {by}"));
    }
    let foreman = g.doc.role_of(by) == "foreman";
    let allowed = match action {
        "list" | "restart" => true,
        "add" => foreman,
        "start" => foreman,
        "stop" => foreman || by == target,
        "remove" => by == target || (foreman && g.doc.role_of(target) == "peer"),
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(match action {
        "add" => "permission denied: only foreman can add actors".into(),
        "start" => "permission denied: only foreman can start actors".into(),
        "update" => "permission denied: actor.update is only available via CLI/Web UI".into(),
        other => format!("permission denied: {by} cannot {other} {target}"),
    })
}

pub fn actor_list(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let include_unread = b(args, "include_unread");
    let include_internal = b(args, "include_internal");
    store.read_group(gid, |g| {
        let mut out = Vec::new();
        for a in g.doc.actor_views() {
            if a.internal && !include_internal {
                continue;
            }
            let mut v = with_role(g, a.id);
            let m = v.as_object_mut().unwrap();
            let live = g.live.get(a.id);
            m.insert("running".into(), json!(live.is_some()));
            m.insert("idle_seconds".into(), Value::Null);
            m.insert("runner_effective".into(), json!(a.runner));
            m.insert("effective_working_state".into(), json!(if live.is_some() { "idle" } else { "stopped" }));
            let exit = g.runtime.exits.get(a.id).filter(|_| live.is_none());
            let reason = match (live.is_some(), a.runner) {
                (true, "headless") => "headless_idle",
                (true, _) => "pty_idle",
                (false, _) if exit.is_some() => "process_exited",
                (false, _) => "runner_not_running",
            };
            m.insert("effective_working_reason".into(), json!(reason));
            m.insert("effective_working_updated_at".into(), live.map(|t| json!(t)).unwrap_or(Value::Null));
            m.insert("effective_active_task_id".into(), Value::Null);
            // Ours: how the actor's process last ended ({code, signal, at}), when it is not running.
            if let Some(e) = exit {
                m.insert("last_exit".into(), e.clone());
            }
            if include_unread {
                m.insert("unread_count".into(), json!(inbox::unread_positions(g, a.id, "all", 0).len()));
            }
            out.push(v);
        }
        Ok(json!({"actors": out}))
    })
}

pub fn actor_add(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let runtime = match s(args, "runtime") {
        "" => "codex",
        r => r,
    };
    if !RUNTIMES.contains(&runtime) {
        return Err(err("unsupported_runtime", format!("unsupported runtime: {runtime} (one of: {})", RUNTIMES.join(", "))));
    }
    let runner = match s(args, "runner") {
        "" => "pty",
        r @ ("pty" | "headless") => r,
        other => return Err(err("invalid_request", format!("invalid runner: {other} (pty or headless)"))),
    };
    let submit = match s(args, "submit") {
        "" => "enter",
        x @ ("enter" | "newline" | "none") => x,
        other => return Err(err("invalid_request", format!("invalid submit: {other} (enter, newline or none)"))),
    };
    let mut command = command_arg(args.get("command"))?.unwrap_or_default();
    if command.is_empty() && runner == "pty" {
        command = default_command(runtime);
        if command.is_empty() {
            return Err(err("missing_command", format!("runtime {runtime} needs a command (--command)")));
        }
    }
    let env = env_arg(args.get("env"))?;
    let env_private = env_arg(args.get("env_private"))?;
    if !env_private.is_empty() && !is_user_like(by) {
        return Err(err("permission_denied", "env_private can only be set by user"));
    }
    let list = |k: &str| args.get(k).filter(|v| v.is_array()).cloned().unwrap_or(json!([]));
    store.with_group(gid, |g| {
        actor_permission(g, by, "add", "").map_err(|m| err("actor_add_failed", m))?;
        let mut id = s(args, "actor_id").to_string();
        if id.is_empty() {
            let base = if runtime == "web_model" { "chatgpt-web" } else { runtime };
            id = (1..=999).map(|n| format!("{base}-{n}")).find(|c| !g.doc.has_actor(c)).ok_or_else(|| err("actor_add_failed", "no free actor id"))?;
        }
        validate_actor_id(&id).map_err(|m| err("actor_add_failed", m))?;
        if g.doc.has_actor(&id) {
            return Err(err("actor_add_failed", format!("Name already exists: {id}")));
        }
        let now = cccc_proto::ts::now();
        let title = s(args, "title");
        let scope = s(args, "default_scope_key");
        let stored = json!({
            "v": 1, "id": id, "title": title, "command": command, "env": env, "default_scope_key": scope, "submit": submit,
            "capability_autoload": list("capability_autoload"), "capability_hidden": list("capability_hidden"), "enabled": true,
            "runner": runner, "runtime": runtime, "runtime_state_source": "terminal", "avatar_asset_path": "",
            "profile_id": s(args, "profile_id"), "profile_scope": "global", "profile_owner": "", "profile_revision_applied": 0,
            "created_at": now, "updated_at": now,
        });
        g.doc.actors_mut().push(stored.clone());
        g.save()?;
        if !env_private.is_empty() {
            let p = g.dir.join("state").join("private_env").join(format!("{id}.json"));
            crate::home::write_json_pretty(&p, &Value::Object(env_private.clone())).map_err(|e| err("internal_error", e.to_string()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
        // The event carries role (after id) and internal_kind (after runtime_state_source).
        let mut ev_actor = Map::new();
        for (k, v) in stored.as_object().unwrap() {
            ev_actor.insert(k.clone(), v.clone());
            if k == "id" {
                ev_actor.insert("role".into(), json!(g.doc.role_of(&id)));
            }
            if k == "runtime_state_source" {
                ev_actor.insert("internal_kind".into(), Value::Null);
            }
        }
        let add = g.append("actor.add", "", by, json!({"actor": ev_actor}))?;
        // History before joining is pre-read.
        g.cursors.advance(&id, &add.event.id, &add.event.ts, cccc_proto::ts::parse(&add.event.ts).unwrap_or(0));
        g.save_cursors()?;
        let mut out = json!({"actor": with_role(g, &id), "event": add.event.to_value()});
        match start_actor(g, &id, by) {
            Ok(ev) => {
                out["start_event"] = ev;
                out["running"] = json!(true);
                out["runner_effective"] = json!(runner);
            }
            Err(e) => {
                // The reference reports a start failure inside an ok response.
                out["start_event"] = Value::Null;
                out["running"] = json!(false);
                out["start_error"] = json!(e.message);
            }
        }
        out["actor"] = with_role(g, &id);
        Ok(out)
    })
}

const PATCH_KEYS: &[&str] = &[
    "role", "title", "avatar_asset_path", "command", "env", "default_scope_key", "submit", "capability_autoload", "capability_hidden",
    "enabled", "runner", "runtime", "runtime_state_source",
];

pub fn actor_update(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let by = by_or(args, "user");
    let patch = args.get("patch").and_then(Value::as_object).cloned().unwrap_or_default();
    let unknown: Vec<&String> = patch.keys().filter(|k| !PATCH_KEYS.contains(&k.as_str())).collect();
    if !unknown.is_empty() {
        return Err(err("invalid_patch", "invalid patch keys").with_details(json!({"unknown_keys": unknown})));
    }
    if patch.is_empty() {
        return Err(err("invalid_patch", "empty patch"));
    }
    store.with_group(gid, |g| {
        if !is_user_like(by) {
            return Err(err("actor_update_failed", "permission denied: actor.update is only available via CLI/Web UI"));
        }
        require_actor(g, id)?;
        let mut applied = Map::new();
        for k in PATCH_KEYS {
            let v = patch.get(*k).cloned().unwrap_or(Value::Null);
            applied.insert((*k).into(), v.clone());
            if v.is_null() || *k == "role" {
                continue;
            }
            let v = match *k {
                "command" => json!(command_arg(Some(&v))?.unwrap_or_default()),
                "env" => Value::Object(env_arg(Some(&v))?),
                "enabled" => json!(b(&patch, "enabled")),
                "runtime" if !v.as_str().is_some_and(|r| RUNTIMES.contains(&r)) => {
                    return Err(err("unsupported_runtime", format!("unsupported runtime: {v}")));
                }
                "runner" if !matches!(v.as_str(), Some("pty" | "headless")) => {
                    return Err(err("invalid_request", format!("invalid runner: {v}")));
                }
                "submit" if !matches!(v.as_str(), Some("enter" | "newline" | "none")) => {
                    return Err(err("invalid_request", format!("invalid submit: {v}")));
                }
                _ => v,
            };
            if let Some(a) = g.doc.actor_value_mut(id) {
                a.insert((*k).into(), v);
            }
        }
        if let Some(a) = g.doc.actor_value_mut(id) {
            a.insert("updated_at".into(), json!(cccc_proto::ts::now()));
        }
        if patch.contains_key("enabled") {
            if b(&patch, "enabled") {
                if g.doc.running_flag() {
                    let _ = spawn_runtime(g, id);
                }
            } else {
                crate::runtime::stop_session(g, id);
                running_flag_after_stop(g);
            }
        }
        g.save()?;
        let a = g.append(
            "actor.update",
            "",
            by,
            json!({"actor_id": id, "patch": applied, "profile_id": null, "profile_scope": null, "profile_owner": null, "profile_action": null}),
        )?;
        Ok(json!({"actor": with_role(g, id), "event": a.event.to_value()}))
    })
}

pub fn actor_remove(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_actor(g, id)?;
        actor_permission(g, by, "remove", id).map_err(|m| err("actor_remove_failed", m))?;
        crate::runtime::stop_session(g, id);
        g.doc.actors_mut().retain(|a| a.get("id").and_then(Value::as_str) != Some(id));
        let _ = std::fs::remove_file(g.dir.join("state").join("private_env").join(format!("{id}.json")));
        running_flag_after_stop(g);
        g.save()?;
        let a = g.append("actor.remove", "", by, json!({"actor_id": id, "runner": null, "runner_effective": null}))?;
        Ok(json!({"actor_id": id, "event": a.event.to_value()}))
    })
}

pub fn actor_start(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_actor(g, id)?;
        actor_permission(g, by, "start", id).map_err(|m| err("actor_start_failed", m))?;
        let event = start_actor(g, id, by)?;
        let runner = g.doc.actor(id).map(|a| a.runner.to_string()).unwrap_or_default();
        Ok(json!({"actor": with_role(g, id), "event": event, "runner_effective": runner}))
    })
}

pub fn actor_stop(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_actor(g, id)?;
        actor_permission(g, by, "stop", id).map_err(|m| err("actor_stop_failed", m))?;
        if let Some(a) = g.doc.actor_value_mut(id) {
            a.insert("enabled".into(), json!(false));
            a.insert("updated_at".into(), json!(cccc_proto::ts::now()));
        }
        crate::runtime::stop_session(g, id);
        running_flag_after_stop(g);
        g.save()?;
        let a = g.append("actor.stop", "", by, json!({"actor_id": id, "runner": null, "runner_effective": null}))?;
        Ok(json!({"actor": with_role(g, id), "event": a.event.to_value()}))
    })
}

pub fn actor_restart(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_actor(g, id)?;
        actor_permission(g, by, "restart", id).map_err(|m| err("actor_restart_failed", m))?;
        if let Some(a) = g.doc.actor_value_mut(id) {
            a.insert("enabled".into(), json!(true));
            a.insert("updated_at".into(), json!(cccc_proto::ts::now()));
        }
        crate::runtime::stop_session(g, id);
        let runner = g.doc.actor(id).map(|a| a.runner.to_string()).unwrap_or_default();
        if g.doc.running_flag() || g.doc.state() != "stopped" {
            spawn_runtime(g, id).map_err(|e| err("actor_restart_failed", e))?;
            g.doc.set_running_flag(true);
        }
        g.save()?;
        let a = g.append("actor.restart", "", by, json!({"actor_id": id, "runner": runner, "runner_effective": runner}))?;
        let actor = g.doc.actor_value(id).cloned().unwrap_or(json!({}));
        Ok(json!({"actor": actor, "event": a.event.to_value()}))
    })
}

/// `term_attach` (validation; the daemon streams), `terminal_tail`, `term_resize`.
pub fn terminal_op(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let id = super::actor_id(args)?;
    let op = s(args, "__op");
    store.read_group(gid, |g| {
        let a = g.doc.actor(id).ok_or_else(|| err("actor_not_found", format!("actor not found: {id}")))?;
        if a.runner != "pty" {
            return Err(err("not_pty_actor", "terminal attach is only available for PTY actors")
                .with_details(json!({"runner": a.runner, "runner_effective": a.runner})));
        }
        if !g.is_live(id) {
            return Err(err("actor_not_running", format!("actor is not running: {id}")));
        }
        let paths = crate::pty::client::paths(&g.dir, id);
        match op {
            "terminal_tail" => {
                let max = args.get("max_chars").and_then(Value::as_u64).unwrap_or(8000).clamp(1, 1_000_000) as usize;
                let raw = crate::pty::client::tail(&paths, max * 4).ok_or_else(|| err("actor_not_running", format!("terminal of {id} is not reachable")))?;
                let text = if args.get("strip_ansi").and_then(Value::as_bool).unwrap_or(true) { strip_ansi(&raw) } else { raw };
                let skip = text.chars().count().saturating_sub(max);
                let text: String = text.chars().skip(skip).collect();
                Ok(json!({"group_id": g.id, "actor_id": id, "warning": "Terminal transcript may include sensitive stdout/stderr.", "hint": "", "text": text}))
            }
            "term_resize" => {
                let cols = args.get("cols").and_then(Value::as_u64).unwrap_or(120);
                let rows = args.get("rows").and_then(Value::as_u64).unwrap_or(40);
                crate::pty::client::call(&paths, json!({"op": "resize", "cols": cols, "rows": rows}), std::time::Duration::from_secs(2));
                Ok(json!({"group_id": g.id, "actor_id": id, "cols": cols, "rows": rows}))
            }
            _ => Ok(json!({"group_id": g.id, "actor_id": id, "socket": paths.socket.display().to_string()})),
        }
    })
}

/// Remove ANSI escape sequences (CSI, OSC, two-byte escapes) and carriage returns.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                Some('[') => {
                    for c in it.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = it.next() {
                        if c == '\x07' || (c == '\x1b' && it.peek() == Some(&'\\')) {
                            if c == '\x1b' {
                                it.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shell_words;

    #[test]
    fn strip_ansi_removes_escapes() {
        assert_eq!(super::strip_ansi("\x1b[1;32mok\x1b[0m\r\n\x1b]0;title\x07x\x1b[?2004h"), "ok\nx");
    }

    #[test]
    fn shell_words_split_like_a_shell() {
        assert_eq!(shell_words(r#"claude --x "a b" 'c d' e\ f"#).unwrap(), vec!["claude", "--x", "a b", "c d", "e f"]);
        assert_eq!(shell_words("").unwrap(), Vec::<String>::new());
        assert!(shell_words("'open").is_err());
    }
}
