//! IM bridge configuration and chat binding (the daemon's half of the bridges).
//!
//! Configuration is the `im:` block of group.yaml in the reference's canonical shape
//! (`platform`, `enabled`, `bot_token_env`, `files`, `skip_pending_on_start`, plus our
//! `api_url`, `guild_id`, `category`, `allowed_user_ids`). Secrets never enter the file: `im_set`
//! only takes the *name* of an environment variable.
//!
//! One bridge process serves every group that uses the same bot credential (see
//! [`credential_key`]). Pairing keys are created by that process at credential scope
//! (`state/im/<platform>_<cred>/im_pending_keys.json`) because an unbound chat belongs to no group
//! yet; `im_bind_chat` moves the chat into one group's `im_authorized_chats.json` and
//! `im_subscribers.json` (the reference's files and key scheme: `chat_id` or `chat_id:thread_id`).
//! Read-modify-write of those files is serialised with `state/im_state.lock`, which the bridge
//! takes too.

use super::{Args, b, by_or, group_id, require_group_admin, s};
use crate::store::{Group, Store};
use crate::{OpResult, err};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const PLATFORMS: &[&str] = &["telegram", "discord"];
/// Pairing keys live this long (reference: 10 minutes).
pub const KEY_TTL_SECONDS: i64 = 600;

fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase() || f == '_') && c.all(|x| x.is_ascii_uppercase() || x.is_ascii_digit() || x == '_')
}

/// The canonical `im` block of a group, or `None` when absent or not a supported platform.
/// Legacy keys (`token_env`, `token`) are read as the reference does.
pub fn canonical(doc: &Map<String, Value>) -> Option<Map<String, Value>> {
    let im = doc.get("im")?.as_object()?;
    let platform = im.get("platform").and_then(Value::as_str)?;
    if !PLATFORMS.contains(&platform) {
        return None;
    }
    let mut out = Map::new();
    out.insert("platform".into(), json!(platform));
    out.insert("enabled".into(), json!(im.get("enabled").and_then(Value::as_bool).unwrap_or(false)));
    let token = ["bot_token_env", "bot_token", "token_env", "token"].iter().find_map(|k| im.get(*k).and_then(Value::as_str).filter(|v| !v.trim().is_empty()));
    if let Some(t) = token {
        if is_env_name(t.trim()) {
            out.insert("bot_token_env".into(), json!(t.trim()));
        } else {
            out.insert("bot_token".into(), json!(t));
        }
    }
    for (k, v) in im {
        if !matches!(k.as_str(), "platform" | "enabled" | "bot_token_env" | "bot_token" | "token_env" | "token") {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(out)
}

/// Our extension: more `im`-shaped blocks, one per further platform, so one group can be
/// mirrored to Telegram and Discord at once. The reference ignores the key (and keeps it when
/// it rewrites group.yaml); `im` stays the primary block it knows.
pub const MIRRORS_KEY: &str = "im_mirrors";

/// Every canonical bridge block of a group: `im` first, then each `im_mirrors` entry of
/// another platform (at most one block per platform).
pub fn canonical_all(doc: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut out: Vec<Map<String, Value>> = canonical(doc).into_iter().collect();
    for m in doc.get(MIRRORS_KEY).and_then(Value::as_array).into_iter().flatten() {
        let mut d = Map::new();
        d.insert("im".into(), m.clone());
        if let Some(c) = canonical(&d)
            && !out.iter().any(|o| o.get("platform") == c.get("platform"))
        {
            out.push(c);
        }
    }
    out
}

/// The canonical block of `platform` (`""`: the primary `im`).
pub fn canonical_for(doc: &Map<String, Value>, platform: &str) -> Option<Map<String, Value>> {
    if platform.is_empty() {
        return canonical(doc);
    }
    canonical_all(doc).into_iter().find(|m| m.get("platform").and_then(Value::as_str) == Some(platform))
}

/// Write `im` back for its platform: the primary block when it is the primary's platform (or
/// there is none), else its `im_mirrors` entry.
fn store_block(doc: &mut Map<String, Value>, im: Map<String, Value>) {
    let platform = im.get("platform").cloned();
    let primary = canonical(doc).map(|p| p.get("platform").cloned());
    let mut mirrors: Vec<Value> = doc.get(MIRRORS_KEY).and_then(Value::as_array).cloned().unwrap_or_default();
    match primary {
        Some(p) if p != platform => {
            mirrors.retain(|m| m.get("platform") != platform.as_ref());
            mirrors.push(Value::Object(im));
        }
        _ => {
            mirrors.retain(|m| m.get("platform") != platform.as_ref());
            doc.insert("im".into(), Value::Object(im));
        }
    }
    if mirrors.is_empty() {
        doc.remove(MIRRORS_KEY);
    } else {
        doc.insert(MIRRORS_KEY.into(), Value::Array(mirrors));
    }
}

/// The token a config refers to, read from this process's environment.
pub fn resolve_token(im: &Map<String, Value>) -> Result<String, String> {
    if let Some(t) = im.get("bot_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let var = im.get("bot_token_env").and_then(Value::as_str).ok_or("no bot_token_env configured (cccc im set <platform> --token-env VAR)")?;
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(format!("environment variable {var} is not set in the daemon's environment")),
    }
}

/// `sha256("<platform>|token=<token>")[:12]`: names the credential's lock and state dir
/// without revealing the token.
pub fn credential_key(platform: &str, token: &str) -> String {
    let d = Sha256::digest(format!("{platform}|token={token}").as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

pub fn credential_dir(home: &Path, platform: &str, cred: &str) -> PathBuf {
    home.join("state").join("im").join(format!("{platform}_{cred}"))
}

/// The reference's chat key.
pub fn chat_key(chat_id: &str, thread_id: i64) -> String {
    if thread_id > 0 { format!("{chat_id}:{thread_id}") } else { chat_id.to_string() }
}

fn state_file(g: &Group, name: &str) -> PathBuf {
    g.dir.join("state").join(name)
}

fn read_map(path: &Path) -> Map<String, Value> {
    match crate::home::read_json(path) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn write_map(path: &Path, m: &Map<String, Value>) -> OpResult<()> {
    crate::home::write_json_pretty(path, &Value::Object(m.clone())).map_err(|e| err("internal_error", format!("cannot write {}: {e}", path.display())))
}

/// Hold `state/im_state.lock` of a group (the bridge takes the same lock).
fn with_im_lock<T>(dir: &Path, f: impl FnOnce() -> OpResult<T>) -> OpResult<T> {
    let path = dir.join("state").join("im_state.lock");
    let _ = std::fs::create_dir_all(dir.join("state"));
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| err("internal_error", e.to_string()))?;
    lock.lock().map_err(|e| err("internal_error", e.to_string()))?;
    let r = f();
    let _ = lock.unlock();
    r
}

fn redacted(im: &Map<String, Value>) -> Value {
    let mut m = im.clone();
    if m.contains_key("bot_token") {
        m.insert("bot_token".into(), json!("<redacted>"));
    }
    Value::Object(m)
}

pub fn im_set(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let platform = s(args, "platform");
    if !PLATFORMS.contains(&platform) {
        return Err(err("invalid_platform", format!("unsupported platform: {platform:?} (one of: {})", PLATFORMS.join(", "))));
    }
    let token_env = s(args, "bot_token_env");
    let token_env = if token_env.is_empty() { s(args, "token_env") } else { token_env };
    if !is_env_name(token_env) {
        return Err(err(
            "invalid_token_env",
            "pass the NAME of an environment variable that holds the bot token (e.g. TELEGRAM_BOT_TOKEN), never the token itself",
        ));
    }
    // `also`: mirror to this platform too (an `im_mirrors` block) instead of replacing `im`.
    let also = b(args, "also");
    store.with_group(gid, |g| {
        require_group_admin(g, by, "im.set", "im_set_failed")?;
        let primary_platform = canonical(&g.doc.doc).and_then(|p| p.get("platform").and_then(Value::as_str).map(str::to_string));
        let as_mirror = also && primary_platform.as_deref().is_some_and(|p| p != platform);
        let prev = if as_mirror { canonical_for(&g.doc.doc, platform).unwrap_or_default() } else { canonical(&g.doc.doc).unwrap_or_default() };
        let mut im = Map::new();
        im.insert("platform".into(), json!(platform));
        im.insert("enabled".into(), prev.get("enabled").cloned().unwrap_or(json!(true)));
        im.insert("bot_token_env".into(), json!(token_env));
        let max_mb = if platform == "telegram" { 20 } else { 10 };
        im.insert("files".into(), prev.get("files").cloned().unwrap_or(json!({"enabled": true, "max_mb": max_mb})));
        im.insert("skip_pending_on_start".into(), prev.get("skip_pending_on_start").cloned().unwrap_or(json!(false)));
        for key in ["api_url", "guild_id", "category"] {
            match s(args, key) {
                "" => {
                    if let Some(v) = prev.get(key).filter(|_| prev.get("platform").and_then(Value::as_str) == Some(platform)) {
                        im.insert(key.into(), v.clone());
                    }
                }
                v => {
                    im.insert(key.into(), json!(v));
                }
            }
        }
        if let Some(ids) = args.get("allowed_user_ids").filter(|v| v.is_array()) {
            im.insert("allowed_user_ids".into(), ids.clone());
        } else if let Some(ids) = prev.get("allowed_user_ids") {
            im.insert("allowed_user_ids".into(), ids.clone());
        }
        if as_mirror {
            store_block(&mut g.doc.doc, im.clone());
        } else {
            // Replacing the primary block drops a mirror of the same platform (one per platform).
            if let Some(Value::Array(m)) = g.doc.doc.get_mut(MIRRORS_KEY) {
                m.retain(|b| b.get("platform").and_then(Value::as_str) != Some(platform));
                if m.is_empty() {
                    g.doc.doc.remove(MIRRORS_KEY);
                }
            }
            g.doc.doc.insert("im".into(), Value::Object(im.clone()));
        }
        g.save()?;
        Ok(json!({"group_id": g.id, "im": redacted(&im), "mirror": as_mirror}))
    })
}

fn set_enabled(store: &Store, args: &Args, enabled: bool) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_group_admin(g, by, if enabled { "im.start" } else { "im.stop" }, if enabled { "im_start_failed" } else { "im_stop_failed" })?;
        let platform = s(args, "platform");
        let mut im = canonical_for(&g.doc.doc, platform)
            .ok_or_else(|| err("im_not_configured", format!("no {} IM configuration for this group (cccc im set <platform> --token-env VAR)", if platform.is_empty() { "" } else { platform })))?;
        im.insert("enabled".into(), json!(enabled));
        store_block(&mut g.doc.doc, im.clone());
        g.save()?;
        // Starting again clears a remembered credential rejection (the user fixed the token).
        if enabled && let Ok(token) = resolve_token(&im) {
            let platform = im["platform"].as_str().unwrap_or("telegram");
            let home = g.dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
            let _ = std::fs::remove_file(credential_dir(home, platform, &credential_key(platform, &token)).join("rejected"));
        }
        Ok(json!({"group_id": g.id, "enabled": enabled, "im": redacted(&im)}))
    })
}

pub fn im_start(store: &Store, args: &Args) -> OpResult<Value> {
    set_enabled(store, args, true)
}

pub fn im_stop(store: &Store, args: &Args) -> OpResult<Value> {
    set_enabled(store, args, false)
}

pub fn im_unset(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    store.with_group(gid, |g| {
        require_group_admin(g, by, "im.unset", "im_unset_failed")?;
        g.doc.doc.remove("im");
        // Every bridge of the group goes: a mirror must not outlive the primary block.
        g.doc.doc.remove(MIRRORS_KEY);
        g.save()?;
        with_im_lock(&g.dir, || {
            for f in ["im_authorized_chats.json", "im_subscribers.json", "im_pending_keys.json"] {
                let _ = std::fs::remove_file(state_file(g, f));
            }
            Ok(())
        })?;
        Ok(json!({"group_id": g.id, "removed": true}))
    })
}

pub fn im_config(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    store.read_group(gid, |g| Ok(json!({"group_id": g.id, "im": canonical(&g.doc.doc).map(|m| redacted(&m)).unwrap_or(Value::Null)})))
}

/// `im_status {group_id}`: configuration, credential, process and per-chat delivery state.
pub fn im_status(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let home = store.home.root().to_path_buf();
    let want = s(args, "platform").to_string();
    store.read_group(gid, |g| {
        let blocks = canonical_all(&g.doc.doc);
        let Some(first) = blocks.iter().position(|b| want.is_empty() || b.get("platform").and_then(Value::as_str) == Some(want.as_str())) else {
            return Ok(json!({"group_id": g.id, "configured": false}));
        };
        let mut out = block_status(&home, g, &blocks[first]);
        if want.is_empty() {
            // Every further platform the group is mirrored to, in the same shape.
            out["mirrors"] = Value::Array(blocks.iter().skip(1).map(|b| block_status(&home, g, b)).collect());
        }
        Ok(out)
    })
}

fn block_status(home: &Path, g: &Group, im: &Map<String, Value>) -> Value {
    {
        let platform = im["platform"].as_str().unwrap_or("").to_string();
        let token = resolve_token(im);
        let cred = token.as_ref().ok().map(|t| credential_key(&platform, t));
        let cdir = cred.as_ref().map(|c| credential_dir(home, &platform, c));
        let bridge = cdir.as_ref().and_then(|d| crate::home::read_json(&d.join("status.json")).ok()).unwrap_or(Value::Null);
        let supervisor = cdir.as_ref().and_then(|d| crate::home::read_json(&d.join("supervisor.json")).ok()).unwrap_or(Value::Null);
        let rejected = cdir.as_ref().is_some_and(|d| d.join("rejected").exists());
        let authorized = read_map(&state_file(g, "im_authorized_chats.json"));
        let subscribers = read_map(&state_file(g, "im_subscribers.json"));
        let mut chats = Vec::new();
        let mut keys: Vec<&String> = authorized.keys().chain(subscribers.keys()).collect();
        keys.sort();
        keys.dedup();
        let of_platform = |e: Option<&Value>| e.and_then(|e| e.get("platform")).and_then(Value::as_str).is_none_or(|p| p == platform);
        keys.retain(|k| of_platform(authorized.get(*k)) && of_platform(subscribers.get(*k)));
        for k in keys {
            let sub = subscribers.get(k).cloned().unwrap_or(Value::Null);
            let live = bridge.get("chats").and_then(|c| c.get(k)).cloned().unwrap_or(Value::Null);
            chats.push(json!({
                "chat_key": k,
                "authorized": authorized.contains_key(k),
                "subscribed": sub.get("subscribed").and_then(Value::as_bool).unwrap_or(false),
                "verbose": sub.get("verbose").and_then(Value::as_bool).unwrap_or(false),
                "paused": sub.get("paused").and_then(Value::as_bool).unwrap_or(false),
                "chat_title": sub.get("chat_title").cloned().unwrap_or(json!("")),
                "last_delivered_event_id": live.get("last_delivered_event_id").cloned().unwrap_or(Value::Null),
                "backlog": live.get("backlog").cloned().unwrap_or(Value::Null),
                "last_error": live.get("last_error").cloned().unwrap_or(Value::Null),
                "blocked": live.get("blocked").cloned().unwrap_or(json!(false)),
            }));
        }
        let credential_state = match (&token, rejected) {
            (Err(_), _) => "missing",
            (Ok(_), true) => "rejected",
            (Ok(_), false) => bridge.get("credential_state").and_then(Value::as_str).unwrap_or("unknown"),
        };
        json!({
            "group_id": g.id, "configured": true, "platform": platform, "enabled": im["enabled"],
            "token_env": im.get("bot_token_env").cloned().unwrap_or(Value::Null),
            "credential": cred, "credential_state": credential_state,
            "credential_error": token.err(),
            "running": supervisor.get("running").cloned().unwrap_or(json!(false)),
            "pid": supervisor.get("pid").cloned().unwrap_or(Value::Null),
            "restarts": supervisor.get("restarts").cloned().unwrap_or(json!(0)),
            "last_exit": supervisor.get("last_exit").cloned().unwrap_or(Value::Null),
            "bot_username": bridge.get("bot_username").cloned().unwrap_or(Value::Null),
            "last_error": bridge.get("last_error").cloned().unwrap_or(Value::Null),
            "log_path": cdir.map(|d| d.join("bridge.log").display().to_string()),
            "chats": chats,
        })
    }
}

/// Live pending keys across every credential of the home.
fn pending_keys(home: &Path) -> Vec<(PathBuf, String, Value)> {
    let mut out = Vec::new();
    let now = cccc_proto::ts::now_micros();
    let Ok(dirs) = std::fs::read_dir(home.join("state").join("im")) else { return out };
    for d in dirs.filter_map(Result::ok) {
        let file = d.path().join("im_pending_keys.json");
        for (k, v) in read_map(&file) {
            let created = v.get("created_at").and_then(Value::as_str).and_then(cccc_proto::ts::parse).unwrap_or(0);
            if now - created <= KEY_TTL_SECONDS * 1_000_000 {
                out.push((file.clone(), k, v));
            }
        }
    }
    out
}

pub fn im_list_pending(store: &Store, _args: &Args) -> OpResult<Value> {
    let items: Vec<Value> = pending_keys(store.home.root())
        .into_iter()
        .map(|(_, k, v)| {
            let mut v = v;
            v["key"] = json!(k);
            v
        })
        .collect();
    Ok(json!({"pending": items}))
}

pub fn im_reject_pending(store: &Store, args: &Args) -> OpResult<Value> {
    let key = s(args, "key");
    let hit = pending_keys(store.home.root()).into_iter().find(|(_, k, _)| k == key);
    let Some((file, k, _)) = hit else { return Err(err("invalid_key", "key not found or expired")) };
    let mut m = read_map(&file);
    m.remove(&k);
    write_map(&file, &m)?;
    Ok(json!({"key": k, "rejected": true}))
}

/// `im_bind_chat {group_id, key}`: authorize and subscribe the chat that asked for `key`.
pub fn im_bind_chat(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?.to_string();
    let by = by_or(args, "user");
    let key = s(args, "key");
    if key.is_empty() {
        return Err(err("missing_key", "missing key"));
    }
    let (file, k, pending) = pending_keys(store.home.root()).into_iter().find(|(_, k, _)| k == key).ok_or_else(|| err("invalid_key", "key not found or expired"))?;
    let chat_id = match &pending["chat_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(err("invalid_key", "pending key has no chat")),
    };
    let thread_id = pending["thread_id"].as_i64().unwrap_or(0);
    let platform = pending["platform"].as_str().unwrap_or("telegram").to_string();
    let ck = chat_key(&chat_id, thread_id);
    // A chat is bound to one group: refuse if another group already has it.
    let ids: Vec<String> = cccc_core_registry_ids(store);
    for other in ids.iter().filter(|o| **o != gid) {
        let bound = store.read_group(other, |g| Ok(read_map(&state_file(g, "im_authorized_chats.json")).contains_key(&ck))).unwrap_or(false);
        if bound {
            return Err(err("chat_already_bound", format!("chat {ck} is already bound to group {other}; revoke it there first (cccc im revoke --chat-id {chat_id} --group {other})")));
        }
    }
    let out = store.with_group(&gid, |g| {
        require_group_admin(g, by, "im.bind", "im_bind_failed")?;
        canonical(&g.doc.doc).ok_or_else(|| err("im_not_configured", "no IM configuration for this group (cccc im set <platform> --token-env VAR)"))?;
        with_im_lock(&g.dir.clone(), || {
            let now = cccc_proto::ts::now();
            let mut auth = read_map(&state_file(g, "im_authorized_chats.json"));
            auth.insert(ck.clone(), json!({"chat_id": chat_id, "thread_id": thread_id, "platform": platform, "authorized_at": now, "key_used": k}));
            write_map(&state_file(g, "im_authorized_chats.json"), &auth)?;
            let mut subs = read_map(&state_file(g, "im_subscribers.json"));
            let prev = subs.get(&ck).cloned().unwrap_or(json!({}));
            subs.insert(
                ck.clone(),
                json!({
                    "subscribed": true, "verbose": prev.get("verbose").and_then(Value::as_bool).unwrap_or(false),
                    "paused": false, "subscribed_at": now,
                    "chat_title": pending.get("chat_title").cloned().unwrap_or(json!("")), "thread_id": thread_id, "platform": platform,
                }),
            );
            write_map(&state_file(g, "im_subscribers.json"), &subs)
        })?;
        Ok(json!({"group_id": g.id, "chat_key": ck, "chat_id": chat_id, "thread_id": thread_id, "platform": platform}))
    })?;
    let mut m = read_map(&file);
    m.remove(&k);
    write_map(&file, &m)?;
    Ok(out)
}

fn cccc_core_registry_ids(store: &Store) -> Vec<String> {
    crate::store::lock(&store.registry).groups().keys().cloned().collect()
}

pub fn im_list_authorized(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    store.read_group(gid, |g| {
        let auth = read_map(&state_file(g, "im_authorized_chats.json"));
        let subs = read_map(&state_file(g, "im_subscribers.json"));
        let items: Vec<Value> = auth
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v["chat_key"] = json!(k);
                v["subscriber"] = subs.get(k).cloned().unwrap_or(Value::Null);
                v
            })
            .collect();
        Ok(json!({"group_id": g.id, "authorized": items}))
    })
}

pub fn im_revoke_chat(store: &Store, args: &Args) -> OpResult<Value> {
    let gid = group_id(args)?;
    let by = by_or(args, "user");
    let chat_id = match args.get("chat_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err(err("missing_chat_id", "missing chat_id")),
    };
    let thread_id = args.get("thread_id").and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0);
    let ck = chat_key(&chat_id, thread_id);
    let all = b(args, "all_threads");
    store.with_group(gid, |g| {
        require_group_admin(g, by, "im.revoke", "im_revoke_failed")?;
        with_im_lock(&g.dir.clone(), || {
            let mut removed = Vec::new();
            for f in ["im_authorized_chats.json", "im_subscribers.json"] {
                let mut m = read_map(&state_file(g, f));
                let before: Vec<String> = m.keys().cloned().collect();
                m.retain(|k, _| !(k == &ck || (all && k.split(':').next() == Some(chat_id.as_str()))));
                for k in before {
                    if !m.contains_key(&k) && !removed.contains(&k) {
                        removed.push(k);
                    }
                }
                write_map(&state_file(g, f), &m)?;
            }
            if removed.is_empty() {
                return Err(err("chat_not_found", format!("chat {ck} is not bound to this group")));
            }
            Ok(json!({"group_id": g.id, "revoked": removed}))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_add_one_block_per_further_platform_and_leave_im_alone() {
        let mut doc = json!({"im": {"platform": "telegram", "bot_token_env": "TG", "enabled": true}}).as_object().unwrap().clone();
        store_block(&mut doc, json!({"platform": "discord", "bot_token_env": "DC", "enabled": true}).as_object().unwrap().clone());
        assert_eq!(doc["im"]["platform"], json!("telegram"), "the reference's block is untouched");
        assert_eq!(doc[MIRRORS_KEY].as_array().unwrap().len(), 1);
        let all: Vec<String> = canonical_all(&doc).iter().map(|b| b["platform"].as_str().unwrap().to_string()).collect();
        assert_eq!(all, ["telegram", "discord"]);
        // Replacing a mirror keeps one block per platform; toggling the primary stays in `im`.
        store_block(&mut doc, json!({"platform": "discord", "bot_token_env": "DC2", "enabled": false}).as_object().unwrap().clone());
        assert_eq!(doc[MIRRORS_KEY].as_array().unwrap().len(), 1);
        assert_eq!(canonical_for(&doc, "discord").unwrap()["bot_token_env"], json!("DC2"));
        store_block(&mut doc, json!({"platform": "telegram", "bot_token_env": "TG", "enabled": false}).as_object().unwrap().clone());
        assert_eq!(doc["im"]["enabled"], json!(false));
        assert_eq!(canonical_for(&doc, "").unwrap()["platform"], json!("telegram"));
        // A mirror of the primary's platform is ignored (the primary wins).
        doc.insert(MIRRORS_KEY.into(), json!([{"platform": "telegram", "bot_token_env": "X"}]));
        assert_eq!(canonical_all(&doc).len(), 1);
    }

    #[test]
    fn canonical_reads_legacy_keys_and_never_needs_a_literal() {
        let doc = json!({"im": {"platform": "telegram", "token_env": "TG_TOKEN", "enabled": true, "extra": 1}});
        let c = canonical(doc.as_object().unwrap()).unwrap();
        assert_eq!(c["bot_token_env"], json!("TG_TOKEN"));
        assert_eq!(c["extra"], json!(1));
        assert!(!c.contains_key("token_env"));
        let raw = json!({"im": {"platform": "telegram", "bot_token_env": "123:abc"}});
        assert_eq!(canonical(raw.as_object().unwrap()).unwrap()["bot_token"], json!("123:abc"), "a pasted token is recognised as a literal");
        assert!(canonical(json!({"im": {"platform": "irc"}}).as_object().unwrap()).is_none());
        assert_eq!(chat_key("-100", 42), "-100:42");
        assert_eq!(chat_key("5", 0), "5");
        assert_eq!(credential_key("telegram", "t").len(), 12);
        assert_ne!(credential_key("telegram", "t"), credential_key("discord", "t"));
    }
}
