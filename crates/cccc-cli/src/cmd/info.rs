//! `cccc version`, `cccc doctor`, `cccc status`: read-only views that never start the daemon.

use crate::cmd::daemon::pid_version;
use crate::ctx::{CmdResult, Ctx};
use crate::daemon_ctl;
use crate::output::{outln, print_json, short_id, str_of};
use cccc_core::group::GroupDoc;
use cccc_ipc::Client;
use cccc_proto::COMPAT_VERSION;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runtimes `doctor` looks for on PATH.
const RUNTIMES: &[&str] = &["claude", "codex", "copilot", "cursor", "opencode", "gemini", "kimi", "amp", "auggie", "droid"];

/// Open obligations listed per group in `status` (the rest is counted).
const STATUS_TOP: usize = 5;

pub fn version(ctx: &Ctx) -> CmdResult {
    if ctx.json {
        print_json(&json!({"version": VERSION, "compat": COMPAT_VERSION}));
    } else {
        outln!("{VERSION} (compatible with CCCC {COMPAT_VERSION})");
    }
    Ok(0)
}

/// The first executable file called `name` on `path` (a PATH value).
fn find_in_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?).map(|dir| dir.join(name)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn daemon_json(ping: Option<&Value>) -> Value {
    match ping {
        Some(p) => json!({"running": true, "pid": p.get("pid"), "version": p.get("version")}),
        None => json!({"running": false}),
    }
}

pub fn doctor(ctx: &Ctx) -> CmdResult {
    let ping = daemon_ctl::running(&ctx.home);
    let path = std::env::var_os("PATH");
    let runtimes: Vec<Value> = RUNTIMES
        .iter()
        .map(|name| match find_in_path(name, path.as_deref()) {
            Some(p) => json!({"name": name, "available": true, "path": p.display().to_string()}),
            None => json!({"name": name, "available": false, "path": null}),
        })
        .collect();
    let available = runtimes.iter().filter(|r| r["available"] == json!(true)).count();
    let actors = if ping.is_some() { actor_health(ctx) } else { Vec::new() };
    if ctx.json {
        print_json(&json!({
            "version": VERSION, "compat": COMPAT_VERSION, "cccc_home": ctx.home.root().display().to_string(),
            "daemon": daemon_json(ping.as_ref()), "runtimes": runtimes, "available_runtimes": available, "actors": actors,
        }));
        return Ok(0);
    }
    outln!("[DOCTOR] CCCC Environment Check");
    outln!();
    outln!("cccc: {VERSION} (compat {COMPAT_VERSION})");
    outln!("CCCC_HOME: {}", ctx.home.root().display());
    match &ping {
        Some(p) => outln!("Daemon: running (pid={}, version={})", p.get("pid").map(Value::to_string).unwrap_or_default(), str_of(p, "version")),
        None => outln!("Daemon: not running"),
    }
    outln!();
    outln!("Agent Runtimes:");
    for r in &runtimes {
        match r["path"].as_str() {
            Some(p) => outln!("  ✓ {}: OK ({p})", str_of(r, "name")),
            None => outln!("  ✗ {}: NOT FOUND", str_of(r, "name")),
        }
    }
    outln!();
    if available == 0 {
        outln!("No agent runtimes found on PATH (headless actors and --runtime custom still work).");
    } else {
        outln!("{available} runtime(s) available.");
    }
    if ping.is_some() {
        outln!();
        outln!("Actors (enabled ones should be alive):");
        if actors.is_empty() {
            outln!("  (none)");
        }
        for a in &actors {
            let exited = a.get("last_exit").is_some_and(|e| !e.is_null());
            let mark = if a["alive"] == json!(true) || (a["enabled"] != json!(true) && !exited) { "✓" } else { "✗" };
            let state = if a["alive"] == json!(true) {
                "alive".to_string()
            } else if let Some(code) = a.get("last_exit").filter(|e| !e.is_null()) {
                format!("NOT RUNNING (exited: code {}, signal {})", code["code"], code["signal"])
            } else if a["enabled"] == json!(true) {
                "NOT RUNNING".to_string()
            } else {
                "stopped".to_string()
            };
            outln!("  {mark} {}/{} ({}, {}): {state}", str_of(a, "group_id"), str_of(a, "actor_id"), str_of(a, "runtime"), str_of(a, "runner"));
        }
    }
    Ok(0)
}

/// Every actor of every group with whether its runtime is alive (daemon running only).
fn actor_health(ctx: &Ctx) -> Vec<Value> {
    let client = cccc_ipc::Client::for_home(ctx.home.root()).with_timeout(std::time::Duration::from_secs(5));
    let Ok(groups) = client.call("groups", json!({})) else { return Vec::new() };
    let mut out = Vec::new();
    for g in groups["groups"].as_array().cloned().unwrap_or_default() {
        let gid = str_of(&g, "group_id").to_string();
        let Ok(list) = client.call("actor_list", json!({"group_id": gid})) else { continue };
        for a in list["actors"].as_array().cloned().unwrap_or_default() {
            out.push(json!({
                "group_id": gid, "actor_id": a["id"], "runtime": a["runtime"], "runner": a["runner"],
                "enabled": a["enabled"], "alive": a["running"], "last_exit": a.get("last_exit").cloned().unwrap_or(Value::Null),
            }));
        }
    }
    out
}

pub fn status(ctx: &Ctx) -> CmdResult {
    let doc = status_doc(ctx);
    if ctx.json {
        print_json(&doc);
    } else {
        outln!("{}", render_status(&doc));
    }
    Ok(0)
}

/// Everything `status` shows, from the daemon if it runs, else from the files on disk.
fn status_doc(ctx: &Ctx) -> Value {
    let ping = daemon_ctl::running(&ctx.home);
    let active = ctx.home.active_group_id();
    let groups = match ping {
        Some(_) => groups_from_daemon(ctx),
        None => groups_from_disk(ctx.home.root()),
    };
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|mut g| {
            g["active"] = json!(str_of(&g, "group_id") == active);
            g
        })
        .collect();
    json!({
        "version": VERSION, "compat": COMPAT_VERSION, "home": ctx.home.root().display().to_string(),
        "daemon": daemon_json(ping.as_ref()), "active_group_id": active, "groups": groups,
    })
}

/// Groups with their actors and open obligations, asked of the daemon.
fn groups_from_daemon(ctx: &Ctx) -> Vec<Value> {
    let client = Client::for_home(ctx.home.root());
    let Ok(res) = client.call("groups", json!({})) else { return Vec::new() };
    let list = res.get("groups").and_then(Value::as_array).cloned().unwrap_or_default();
    list.iter()
        .map(|g| {
            let gid = str_of(g, "group_id");
            let actors = client
                .call("actor_list", json!({"group_id": gid}))
                .ok()
                .and_then(|r| r.get("actors").and_then(Value::as_array).cloned())
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    json!({
                        "id": a.get("id"), "role": a.get("role"), "runtime": a.get("runtime"), "runner": a.get("runner"),
                        "enabled": a.get("enabled"), "running": a.get("running"),
                    })
                })
                .collect::<Vec<_>>();
            // A daemon without our `obligations` op (the reference) leaves this null.
            let obligations = client.call("obligations", json!({"group_id": gid})).ok().and_then(|r| r.get("obligations").cloned());
            json!({
                "group_id": gid, "title": g.get("title"), "state": g.get("state"), "running": g.get("running"),
                "actors": actors, "obligations": obligations,
            })
        })
        .collect()
}

/// Groups and actors read from registry.json and group.yaml (nothing runs without a daemon).
fn groups_from_disk(home: &Path) -> Vec<Value> {
    let Ok(reg) = cccc_core::home::read_json(&home.join("registry.json")) else { return Vec::new() };
    let ids: Vec<String> = reg.get("groups").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    ids.iter()
        .map(|gid| match GroupDoc::load(&home.join("groups").join(gid).join("group.yaml")) {
            Ok(doc) => {
                let actors: Vec<Value> = doc
                    .actor_views()
                    .filter(|a| !a.internal)
                    .map(|a| json!({"id": a.id, "role": doc.role_of(a.id), "runtime": a.runtime, "runner": a.runner, "enabled": a.enabled, "running": false}))
                    .collect();
                json!({"group_id": gid, "title": doc.title(), "state": doc.state(), "running": false, "actors": actors, "obligations": null})
            }
            Err(e) => json!({"group_id": gid, "title": "", "state": "unreadable", "running": false, "actors": [], "obligations": null, "error": e}),
        })
        .collect()
}

/// `reply` or `ack`: what a recipient still owes on an open obligation.
pub fn owed(status: &Value) -> &'static str {
    let flag = |k: &str| status.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("reply_required") && !flag("replied") { "reply" } else { "ack" }
}

/// One obligation: `15e1b1fc peer-a owes reply to user: Please review…` (or, once fulfilled,
/// `… peer-a replied to user: …`).
pub fn obligation_line(o: &Value) -> String {
    let text: String = str_of(o, "text").replace('\n', " ");
    let text: String = if text.chars().count() > 60 { text.chars().take(59).chain(['…']).collect() } else { text };
    let st = &o["status"];
    let what = if st["open"] == json!(false) {
        if st["replied"] == json!(true) { "replied to".to_string() } else { "acknowledged".to_string() }
    } else {
        format!("owes {} to", owed(st))
    };
    format!("{} {} {what} {}: {text}", short_id(str_of(o, "event_id")), str_of(o, "recipient"), str_of(o, "by"))
}

fn render_status(doc: &Value) -> String {
    let mut out = vec![
        format!("cccc {} (compatible with CCCC {})", str_of(doc, "version"), str_of(doc, "compat")),
        format!("Home:    {}", str_of(doc, "home")),
    ];
    let daemon = &doc["daemon"];
    out.push(if daemon["running"] == json!(true) {
        format!("Daemon:  running ({})", pid_version(daemon))
    } else {
        "Daemon:  not running (start it with `cccc daemon start`)".to_string()
    });
    out.push(String::new());
    let groups = doc["groups"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if groups.is_empty() {
        out.push("Groups:  (none; create one with `cccc group create` or `cccc attach .`)".into());
        return out.join("\n");
    }
    out.push(format!("Groups ({}):", groups.len()));
    for g in groups {
        let mark = if g["active"] == json!(true) { "*" } else { " " };
        let run = if g["running"] == json!(true) { "running" } else { "stopped" };
        out.push(format!("{mark} {} ({}) {} [{run}]", str_of(g, "title"), str_of(g, "group_id"), str_of(g, "state")));
        if let Some(e) = g.get("error").and_then(Value::as_str) {
            out.push(format!("    error: {e}"));
        }
        let actors = g["actors"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if actors.is_empty() {
            out.push("    (no actors)".into());
        }
        for a in actors {
            let on = if a["enabled"] == json!(false) { "off" } else { "on" };
            out.push(format!("    {} ({}, {}, {}) [{on}]", str_of(a, "id"), str_of(a, "role"), str_of(a, "runtime"), str_of(a, "runner")));
        }
        if let Some(obs) = g["obligations"].as_array() {
            if obs.is_empty() {
                out.push("    open obligations: none".into());
            } else {
                out.push(format!("    open obligations: {}", obs.len()));
                out.extend(obs.iter().take(STATUS_TOP).map(|o| format!("      {}", obligation_line(o))));
                if obs.len() > STATUS_TOP {
                    out.push(format!("      … and {} more (`cccc obligations --group {}`)", obs.len() - STATUS_TOP, str_of(g, "group_id")));
                }
            }
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("claude");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("codex"), "not executable").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(find_in_path("claude", Some(&path)), Some(exe));
        assert_eq!(find_in_path("codex", Some(&path)), None);
        assert_eq!(find_in_path("claude", None), None);
    }

    #[test]
    fn status_shows_groups_actors_and_what_is_owed() {
        let ob = |who: &str, st: Value| json!({"event_id": "15e1b1fcab1b40e88a7c1bf7bf4637a9", "by": "user", "recipient": who, "text": "Please review", "status": st});
        let doc = json!({
            "version": "0.1.0", "compat": "0.4.32", "home": "/h", "daemon": {"running": true, "pid": 7, "version": "0.4.32"},
            "groups": [
                {"group_id": "g_1", "title": "demo", "state": "active", "running": true, "active": true,
                 "actors": [{"id": "lead", "role": "foreman", "runtime": "custom", "runner": "headless", "enabled": true}],
                 "obligations": [
                    ob("peer-a", json!({"reply_required": true, "replied": false, "attention": true, "acked": true})),
                    ob("lead", json!({"reply_required": false, "replied": false, "attention": true, "acked": false})),
                 ]},
                {"group_id": "g_2", "title": "other", "state": "stopped", "running": false, "active": false, "actors": [], "obligations": null},
            ],
        });
        let text = render_status(&doc);
        assert!(text.contains("Daemon:  running (pid=7 version=0.4.32)"), "{text}");
        assert!(text.contains("* demo (g_1) active [running]\n    lead (foreman, custom, headless) [on]\n    open obligations: 2"), "{text}");
        assert!(text.contains("      15e1b1fc peer-a owes reply to user: Please review\n      15e1b1fc lead owes ack to user: Please review"), "{text}");
        assert!(text.contains("  other (g_2) stopped [stopped]\n    (no actors)"), "{text}");
    }
}
