//! Group ops: create, attach, show, update, states, settings, start/stop, delete, registry.

use super::{Args, b, by_or, group_id, require_group_admin, s};
use crate::group::GroupDoc;
use crate::ledger::Ledger;
use crate::store::{Group, Store, lock};
use crate::{OpResult, err};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub fn groups(store: &Store) -> OpResult<Value> {
    let reg = lock(&store.registry).clone();
    let mut out = Vec::new();
    let (mut missing, mut corrupt) = (Vec::new(), Vec::new());
    for (gid, entry) in reg.groups() {
        let e = |k: &str| entry.get(k).cloned().unwrap_or(json!(""));
        match store.slot(gid) {
            Ok(slot) => {
                let g = lock(&slot.group);
                if g.deleted {
                    continue;
                }
                let d = &g.doc;
                out.push(json!({
                    "group_id": gid, "title": d.title(), "topic": d.topic(), "path": g.dir.display().to_string(),
                    "default_scope_key": d.active_scope_key(), "created_at": d.doc.get("created_at").cloned().unwrap_or(e("created_at")),
                    "updated_at": d.doc.get("updated_at").cloned().unwrap_or(e("updated_at")),
                    "registry_health": "ok", "state": d.state(), "running": !g.live.is_empty(),
                }));
            }
            Err(er) => {
                let health = if er.code == "group_not_found" { "missing" } else { "corrupt" };
                if health == "missing" { missing.push(gid.clone()) } else { corrupt.push(gid.clone()) }
                out.push(json!({
                    "group_id": gid, "title": e("title"), "topic": e("topic"), "path": e("path"),
                    "default_scope_key": e("default_scope_key"), "created_at": e("created_at"), "updated_at": e("updated_at"),
                    "registry_health": health, "registry_error": er.message, "state": "", "running": false,
                }));
            }
        }
    }
    out.sort_by(|a, b| b["updated_at"].as_str().unwrap_or("").cmp(a["updated_at"].as_str().unwrap_or("")));
    Ok(json!({"groups": out, "registry_health": {"missing_group_ids": missing, "corrupt_group_ids": corrupt}}))
}

pub fn group_show(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    store.read_group(gid, |g| Ok(json!({"group": g.doc.redacted()})))
}

/// Create group `gid` on disk with its first event, and register it.
fn create_group(store: &Store, gid: &str, title: &str, topic: &str, by: &str) -> OpResult<Value> {
    let dir = store.home.group_dir(gid);
    std::fs::create_dir_all(dir.join("state")).map_err(|e| err("internal_error", format!("cannot create {}: {e}", dir.display())))?;
    let mut doc = GroupDoc::new_group(gid, title, topic);
    doc.save(&dir.join("group.yaml")).map_err(|e| err("internal_error", format!("cannot write group.yaml: {e}")))?;
    {
        // First event, durable before the group is registered.
        let mut ledger = Ledger::open(&dir).map_err(|e| err("internal_error", e.to_string()))?;
        let a = ledger
            .append("group.create", gid, "", by, json!({"title": title, "topic": topic}))
            .map_err(|e| err("internal_error", e.to_string()))?;
        ledger.durability().wait_durable(a.end).map_err(|e| err("internal_error", e.to_string()))?;
        let mut reg = lock(&store.registry);
        let entry = store.registry_entry(&doc, &dir, None);
        reg.groups_mut().insert(gid.to_string(), entry);
        reg.save(&store.home).map_err(|e| err("internal_error", format!("cannot write registry.json: {e}")))?;
        Ok(a.event.to_value())
    }
}

pub fn group_create(store: &Store, args: &Args) -> OpResult<Value> {
    let title = match s(args, "title") {
        "" => "working-group",
        t => t,
    };
    let topic = s(args, "topic");
    let by = by_or(args, "cli");
    let gid = cccc_proto::new_group_id();
    let event = create_group(store, &gid, title, topic, by)?;
    Ok(json!({"group_id": gid, "title": title, "event": event}))
}

/// A directory's scope: (scope_key, url, label, git_remote).
pub(crate) fn detect_scope(path: &Path) -> (String, String, String, String) {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").arg("-C").arg(path).args(args).stderr(std::process::Stdio::null()).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if s.is_empty() { None } else { Some(s) }
    };
    let root = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from).unwrap_or_else(|| path.to_path_buf());
    let remote = if root != path && git(&["rev-parse", "--show-toplevel"]).is_none() {
        String::new()
    } else {
        git(&["config", "--get", "remote.origin.url"]).map(|r| normalize_git_remote(&r)).unwrap_or_default()
    };
    let url = root.display().to_string();
    let label = root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| url.clone());
    let basis = if remote.is_empty() { url.clone() } else { remote.clone() };
    (format!("s_{}", &sha_hex(&basis)[..12]), url, label, remote)
}

fn sha_hex(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `git@github.com:o/r.git` and `https://github.com/o/r` both become `https://github.com/o/r`.
pub(crate) fn normalize_git_remote(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_string();
    if let Some(stripped) = u.strip_suffix(".git") {
        u = stripped.to_string();
    }
    if !u.contains("://")
        && let Some((userhost, path)) = u.split_once(':')
    {
        let host = userhost.rsplit('@').next().unwrap_or(userhost);
        return format!("https://{}/{}", host.to_lowercase(), path.trim_start_matches('/'));
    }
    if let Some((scheme, rest)) = u.split_once("://") {
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let scheme = if scheme.starts_with("http") || scheme == "ssh" || scheme == "git" { "https" } else { scheme };
        let host = host.split(':').next().unwrap_or(host).to_lowercase();
        return format!("{scheme}://{host}/{path}");
    }
    u
}

fn attach_scope(g: &mut Group, scope_key: &str, url: &str, label: &str, remote: &str, by: &str) -> OpResult<Value> {
    if !g.doc.scopes().iter().any(|sc| sc.get("scope_key").and_then(Value::as_str) == Some(scope_key)) {
        g.doc.scopes_mut().push(json!({"scope_key": scope_key, "url": url, "label": label, "git_remote": remote}));
    }
    g.doc.doc.insert("active_scope_key".into(), json!(scope_key));
    g.save()?;
    let scope_dir = g.dir.join("scopes").join(scope_key);
    let scope_yaml = scope_dir.join("scope.yaml");
    if !scope_yaml.exists() {
        let now = cccc_proto::ts::now();
        let doc = json!({"v": 1, "scope_key": scope_key, "url": url, "label": label, "git_remote": remote, "created_at": now, "updated_at": now});
        crate::home::atomic_write(&scope_yaml, crate::yaml::emit(&doc).as_bytes()).map_err(|e| err("internal_error", e.to_string()))?;
    }
    let a = g.append("group.attach", scope_key, by, json!({"url": url, "label": label, "git_remote": remote}))?;
    Ok(a.event.to_value())
}

pub fn attach(store: &Store, args: &Args) -> OpResult<Value> {
    let raw = s(args, "path");
    if raw.is_empty() {
        return Err(err("invalid_scope_path", "missing path"));
    }
    let mut path = PathBuf::from(raw);
    if !path.is_absolute() {
        path = std::env::current_dir().unwrap_or_default().join(path);
    }
    std::fs::create_dir_all(&path).map_err(|e| err("invalid_scope_path", format!("cannot create {}: {e}", path.display())))?;
    let path = path.canonicalize().unwrap_or(path);
    let home = store.home.root().canonicalize().unwrap_or_else(|_| store.home.root().to_path_buf());
    if path == home || path.starts_with(&home) {
        return Err(err("invalid_scope_path", format!("cannot attach CCCC_HOME itself: {}", path.display())));
    }
    let by = by_or(args, "cli");
    let (scope_key, url, label, remote) = detect_scope(&path);
    let mut gid = s(args, "group_id").to_string();
    if gid.is_empty() {
        gid = lock(&store.registry).default_group_for_scope(&scope_key).unwrap_or_default();
        if gid.is_empty() || store.slot(&gid).is_err() {
            let basis = if remote.is_empty() { url.clone() } else { remote.clone() };
            gid = format!("g_{}", &sha_hex(&basis)[..12]);
            if store.slot(&gid).is_err() {
                create_group(store, &gid, &label, "", by)?;
            }
        }
    }
    let title = store.with_group(&gid, |g| {
        attach_scope(g, &scope_key, &url, &label, &remote, by)?;
        Ok(g.doc.title().to_string())
    })?;
    {
        let mut reg = lock(&store.registry);
        reg.defaults_mut().entry(scope_key.clone()).or_insert(json!(gid));
    }
    store.read_group(&gid, |g| store.sync_registry(g))?;
    Ok(json!({"group_id": gid, "scope_key": scope_key, "title": title}))
}

pub fn group_update(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let patch = args.get("patch").and_then(Value::as_object).cloned().unwrap_or_default();
    let unknown: Vec<&String> = patch.keys().filter(|k| !matches!(k.as_str(), "title" | "topic")).collect();
    if !unknown.is_empty() {
        return Err(err("invalid_patch", "invalid patch keys").with_details(json!({"unknown_keys": unknown})));
    }
    if patch.is_empty() {
        return Err(err("invalid_patch", "empty patch"));
    }
    let out = store.with_group(gid, |g| {
        require_group_admin(g, by, "group.update", "group_update_failed")?;
        let title = patch.get("title").and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty());
        let topic = patch.get("topic").and_then(Value::as_str).map(str::trim);
        if let Some(t) = title {
            g.doc.doc.insert("title".into(), json!(t));
        }
        if let Some(t) = topic {
            g.doc.doc.insert("topic".into(), json!(t));
        }
        g.save()?;
        let a = g.append("group.update", "", by, json!({"patch": {"title": title, "topic": topic}}))?;
        store.sync_registry(g)?;
        Ok(json!({"group_id": g.id, "group": g.doc.redacted(), "event": a.event.to_value()}))
    })?;
    Ok(out)
}

pub fn group_delete(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?.to_string();
    let by = by_or(args, "user");
    store.with_group(&gid, |g| {
        require_group_admin(g, by, "group.delete", "group_delete_failed")?;
        let ids: Vec<String> = g.live.keys().cloned().collect();
        for id in ids {
            crate::runtime::stop_session(g, &id);
        }
        g.deleted = true;
        std::fs::remove_dir_all(&g.dir).map_err(|e| err("group_delete_failed", format!("cannot remove {}: {e}", g.dir.display())))?;
        Ok(())
    })?;
    store.forget(&gid);
    let mut reg = lock(&store.registry);
    reg.groups_mut().remove(&gid);
    reg.defaults_mut().retain(|_, v| v.as_str() != Some(gid.as_str()));
    reg.save(&store.home).map_err(|e| err("internal_error", e.to_string()))?;
    if store.home.active_group_id() == gid {
        let _ = store.home.set_active_group_id("");
    }
    Ok(json!({"group_id": gid}))
}

pub fn group_use(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "cli");
    let raw = s(args, "path");
    let path = if raw.is_empty() { std::env::current_dir().unwrap_or_default() } else { PathBuf::from(raw) };
    let path = path.canonicalize().unwrap_or(path);
    let (scope_key, url, _, _) = detect_scope(&path);
    store.with_group(gid, |g| {
        if !g.doc.scopes().iter().any(|sc| sc.get("scope_key").and_then(Value::as_str) == Some(&scope_key)) {
            return Err(err("scope_not_attached", format!("scope not attached: {url}"))
                .with_details(json!({"hint": format!("run: cccc attach {url} --group {gid}")})));
        }
        g.doc.doc.insert("active_scope_key".into(), json!(scope_key));
        g.save()?;
        let a = g.append("group.set_active_scope", &scope_key, by, json!({"path": url}))?;
        store.sync_registry(g)?;
        Ok(json!({"group_id": g.id, "active_scope_key": scope_key, "event": a.event.to_value()}))
    })
}

pub fn group_detach_scope(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let key = s(args, "scope_key");
    if key.is_empty() {
        return Err(err("missing_scope_key", "missing scope_key"));
    }
    store.with_group(gid, |g| {
        require_group_admin(g, by, "group.detach_scope", "group_detach_scope_failed")?;
        let before = g.doc.scopes().len();
        g.doc.scopes_mut().retain(|sc| sc.get("scope_key").and_then(Value::as_str) != Some(key));
        if g.doc.scopes().len() == before {
            return Err(err("group_detach_scope_failed", format!("scope not attached: {key}")));
        }
        if g.doc.active_scope_key() == key {
            let next = g.doc.scopes().first().and_then(|sc| sc.get("scope_key")).cloned().unwrap_or(json!(""));
            g.doc.doc.insert("active_scope_key".into(), next);
        }
        g.save()?;
        let a = g.append("group.detach_scope", key, by, json!({"scope_key": key}))?;
        store.sync_registry(g)?;
        Ok(json!({"group_id": g.id, "event": a.event.to_value()}))
    })
}

pub fn group_set_state(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let state = s(args, "state");
    if state.is_empty() {
        return Err(err("missing_state", "missing state"));
    }
    store.with_group(gid, |g| {
        if !matches!(state, "active" | "idle" | "paused") {
            return Err(err(
                "group_set_state_failed",
                format!("invalid state: {state} (must be active/idle/paused; use group_stop for stopped)"),
            ));
        }
        require_group_admin(g, by, "group.set_state", "group_set_state_failed")?;
        let old = g.doc.state().to_string();
        g.doc.set_state(state);
        g.save()?;
        if state == "active" && old != "active" {
            // Leaving idle/paused: timers restart, no catch-up burst of reminders.
            crate::automation::on_resume(g);
        }
        let a = g.append("group.set_state", "", by, json!({"old_state": old, "new_state": state}))?;
        Ok(json!({"group_id": g.id, "state": state, "event": a.event.to_value()}))
    })
}

/// Settings keys: (patch key, section in group.yaml, default reported when absent).
const SETTINGS: &[(&str, &str, i64)] = &[
    ("nudge_after_seconds", "automation", 300),
    ("reply_required_nudge_after_seconds", "automation", 300),
    ("attention_ack_nudge_after_seconds", "automation", 600),
    ("unread_nudge_after_seconds", "automation", 900),
    ("nudge_digest_min_interval_seconds", "automation", 120),
    ("nudge_max_repeats_per_obligation", "automation", 3),
    ("nudge_escalate_after_repeats", "automation", 2),
    ("actor_idle_timeout_seconds", "automation", 0),
    ("keepalive_delay_seconds", "automation", 120),
    ("keepalive_max_per_actor", "automation", 3),
    ("silence_timeout_seconds", "automation", 0),
    ("help_nudge_interval_seconds", "automation", 600),
    ("help_nudge_min_messages", "automation", 10),
    ("min_interval_seconds", "delivery", 0),
];

fn section<'a>(doc: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    doc.get(name).and_then(Value::as_object)
}

fn effective_settings(doc: &GroupDoc) -> Value {
    let d = &doc.doc;
    let mut out = Map::new();
    out.insert("default_send_to".into(), json!(doc.default_send_to()));
    for (key, sec, default) in SETTINGS {
        let v = section(d, sec).and_then(|m| m.get(*key)).and_then(Value::as_i64).unwrap_or(*default);
        out.insert((*key).into(), json!(v));
    }
    let get = |sec: &str, k: &str| section(d, sec).and_then(|m| m.get(k)).cloned();
    out.insert("auto_mark_on_delivery".into(), get("delivery", "auto_mark_on_delivery").unwrap_or(json!(true)));
    out.insert("terminal_transcript_visibility".into(), get("terminal_transcript", "visibility").unwrap_or(json!("foreman")));
    out.insert("terminal_transcript_notify_tail".into(), get("terminal_transcript", "notify_tail").unwrap_or(json!(true)));
    out.insert("terminal_transcript_notify_lines".into(), get("terminal_transcript", "notify_lines").unwrap_or(json!(20)));
    out.insert("panorama_enabled".into(), get("features", "panorama_enabled").unwrap_or(json!(false)));
    Value::Object(out)
}

pub fn group_settings_update(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let patch = args.get("patch").and_then(Value::as_object).cloned().unwrap_or_default();
    if patch.is_empty() {
        return Err(err("invalid_patch", "empty patch"));
    }
    let mut writes: Vec<(&str, &str, Value)> = Vec::new();
    let mut unknown = Vec::new();
    for (k, v) in &patch {
        let bad = |what: &str| err("invalid_patch", format!("{k} must be {what}"));
        if let Some((key, sec, _)) = SETTINGS.iter().find(|(key, _, _)| key == k) {
            let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).ok_or_else(|| bad("an integer"))?;
            writes.push((sec, key, json!(n.max(0))));
            continue;
        }
        match k.as_str() {
            "default_send_to" => match v.as_str() {
                Some(x @ ("foreman" | "broadcast")) => writes.push(("messaging", "default_send_to", json!(x))),
                _ => return Err(bad("'foreman' or 'broadcast'")),
            },
            "auto_mark_on_delivery" => writes.push(("delivery", "auto_mark_on_delivery", json!(v.as_bool().ok_or_else(|| bad("a boolean"))?))),
            "terminal_transcript_visibility" => match v.as_str() {
                Some(x @ ("off" | "foreman" | "all")) => writes.push(("terminal_transcript", "visibility", json!(x))),
                _ => return Err(bad("off, foreman or all")),
            },
            "terminal_transcript_notify_tail" => writes.push(("terminal_transcript", "notify_tail", json!(v.as_bool().ok_or_else(|| bad("a boolean"))?))),
            "terminal_transcript_notify_lines" => writes.push(("terminal_transcript", "notify_lines", json!(v.as_i64().ok_or_else(|| bad("an integer"))?.max(0)))),
            "panorama_enabled" => writes.push(("features", "panorama_enabled", json!(v.as_bool().ok_or_else(|| bad("a boolean"))?))),
            _ => unknown.push(k.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(err("invalid_patch", "invalid patch keys").with_details(json!({"unknown_keys": unknown})));
    }
    store.with_group(gid, |g| {
        require_group_admin(g, by, "group.settings_update", "group_settings_update_failed")?;
        for (sec, key, v) in writes {
            let entry = g.doc.doc.entry(sec).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            entry.as_object_mut().unwrap().insert(key.to_string(), v);
        }
        g.save()?;
        let a = g.append("group.settings_update", "", by, json!({"patch": patch}))?;
        Ok(json!({"group_id": g.id, "settings": effective_settings(&g.doc), "event": a.event.to_value()}))
    })
}

pub fn group_start(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_group_admin(g, by, "group.start", "group_start_failed")?;
        if g.doc.active_scope_key().is_empty() {
            return Err(err("missing_project_root", "no active scope: attach a project directory first (cccc attach <path>)"));
        }
        let mut started = Vec::new();
        let mut errors = Map::new();
        let ids: Vec<String> = g.doc.actor_views().filter(|a| !a.internal).map(|a| a.id.to_string()).collect();
        for id in ids {
            if let Some(a) = g.doc.actor_value_mut(&id) {
                a.insert("enabled".into(), json!(true));
            }
            match super::actors::spawn_runtime(g, &id) {
                Ok(()) => started.push(id),
                Err(e) => {
                    errors.insert(id, json!(e));
                }
            }
        }
        if g.doc.state() == "stopped" {
            g.doc.set_state("active");
        }
        g.doc.set_running_flag(true);
        g.save()?;
        crate::automation::on_resume(g);
        let a = g.append("group.start", "", by, json!({"started": started}))?;
        let mut out = json!({"group_id": g.id, "started": started, "event": a.event.to_value()});
        // Ours: why an actor did not start (the reference leaves it out of `started` silently).
        if !errors.is_empty() {
            out["start_errors"] = Value::Object(errors);
        }
        Ok(out)
    })
}

pub fn group_stop(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_group_admin(g, by, "group.stop", "group_stop_failed")?;
        let ids: Vec<String> = g.doc.actor_views().filter(|a| !a.internal).map(|a| a.id.to_string()).collect();
        for id in &ids {
            if let Some(a) = g.doc.actor_value_mut(id) {
                a.insert("enabled".into(), json!(false));
            }
        }
        for id in &ids {
            crate::runtime::stop_session(g, id);
        }
        g.doc.set_state("stopped");
        g.doc.set_running_flag(false);
        g.save()?;
        let a = g.append("group.stop", "", by, json!({"stopped": ids}))?;
        Ok(json!({"group_id": g.id, "stopped": ids, "event": a.event.to_value()}))
    })
}

pub fn registry_reconcile(store: &Store, args: &Args) -> OpResult<Value> {
    let remove = b(args, "remove_missing");
    let ids: Vec<String> = lock(&store.registry).groups().keys().cloned().collect();
    let (mut missing, mut corrupt) = (Vec::new(), Vec::new());
    for id in &ids {
        match store.slot(id) {
            Ok(_) => {}
            Err(e) if e.code == "group_not_found" => missing.push(id.clone()),
            Err(_) => corrupt.push(id.clone()),
        }
    }
    let (mut removed, mut removed_keys) = (Vec::new(), Vec::new());
    if remove && !missing.is_empty() {
        let mut reg = lock(&store.registry);
        for id in &missing {
            reg.groups_mut().remove(id);
            removed.push(id.clone());
        }
        let defaults = reg.defaults_mut();
        let gone: Vec<String> = defaults.iter().filter(|(_, v)| v.as_str().is_some_and(|g| missing.iter().any(|m| m == g))).map(|(k, _)| k.clone()).collect();
        for k in gone {
            defaults.remove(&k);
            removed_keys.push(k);
        }
        reg.save(&store.home).map_err(|e| err("internal_error", e.to_string()))?;
    }
    Ok(json!({
        "dry_run": !remove, "scanned_groups": ids.len(), "missing_group_ids": missing, "corrupt_group_ids": corrupt,
        "removed_group_ids": removed, "removed_default_scope_keys": removed_keys,
    }))
}

#[cfg(test)]
mod tests {
    use super::normalize_git_remote;

    #[test]
    fn git_remotes_normalise_to_one_form() {
        let want = "https://github.com/o/r";
        for u in ["git@github.com:o/r.git", "https://github.com/o/r.git", "https://user@GitHub.com/o/r/", "ssh://git@github.com:22/o/r"] {
            assert_eq!(normalize_git_remote(u), want, "{u}");
        }
    }
}
