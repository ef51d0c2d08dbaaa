//! Groups: `groups`, `group …`, `attach`, `use`, `active`.

use crate::cli::{AttachArgs, GroupCmd, GroupState};
use crate::ctx::{CmdResult, Ctx, Fail, joined};
use crate::output::{outln, str_of, table};
use cccc_core::group::GroupDoc;
use serde_json::{Value, json};

pub fn groups(ctx: &Ctx) -> CmdResult {
    let active = ctx.home.active_group_id();
    ctx.run("groups", json!({}), |r| {
        let list = r.get("groups").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if list.is_empty() {
            outln!("no groups yet (create one with `cccc group create` or `cccc attach .`)");
            return;
        }
        outln!("{}", groups_table(list, &active));
    })
}

fn groups_table(list: &[Value], active: &str) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|g| {
            let gid = str_of(g, "group_id");
            let health = str_of(g, "registry_health");
            let state = if health.is_empty() || health == "ok" { str_of(g, "state").to_string() } else { health.to_string() };
            vec![
                if gid == active { "*".into() } else { String::new() },
                gid.to_string(),
                state,
                if g["running"] == json!(true) { "running".into() } else { "stopped".into() },
                str_of(g, "title").to_string(),
                str_of(g, "topic").to_string(),
            ]
        })
        .collect();
    table(&["", "GROUP", "STATE", "RUN", "TITLE", "TOPIC"], &rows)
}

pub fn run(ctx: &Ctx, action: &GroupCmd) -> CmdResult {
    match action {
        GroupCmd::Create { title, topic, by } => {
            let resp = ctx.call("group_create", json!({"title": title, "topic": topic, "by": by}))?;
            if resp.ok {
                ctx.home.set_active_group_id(str_of(&resp.result, "group_id"))?;
            }
            ctx.finish(resp, |r| {
                outln!("created group {} ({})", str_of(r, "group_id"), str_of(r, "title"));
                outln!("active group: {}", str_of(r, "group_id"));
            })
        }
        GroupCmd::Show { group_id, group } => show(ctx, group_id.clone().or_else(|| group.group.clone())),
        GroupCmd::Update { title, topic, by, group } => {
            let gid = ctx.group_id(&group.group)?;
            let mut patch = serde_json::Map::new();
            if let Some(t) = title {
                // The daemon would silently keep the old title; say so instead (as the reference).
                if t.trim().is_empty() {
                    return Err(Fail::reject("invalid_title", "title cannot be empty"));
                }
                patch.insert("title".into(), json!(t.trim()));
            }
            if let Some(t) = topic {
                patch.insert("topic".into(), json!(t));
            }
            if patch.is_empty() {
                return Err(Fail::reject("invalid_patch", "nothing to update: pass --title and/or --topic"));
            }
            ctx.run("group_update", json!({"group_id": gid, "patch": patch, "by": by.by}), |r| {
                let g = &r["group"];
                outln!("updated group {}: title={:?} topic={:?}", str_of(r, "group_id"), str_of(g, "title"), str_of(g, "topic"));
            })
        }
        GroupCmd::DetachScope { scope_key, by, group } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("group_detach_scope", json!({"group_id": gid, "scope_key": scope_key, "by": by.by}), |r| {
                outln!("detached scope {scope_key} from group {}", str_of(r, "group_id"));
            })
        }
        GroupCmd::Delete { confirm, by, group } => {
            let gid = ctx.group_id(&group.group)?;
            if confirm.trim() != gid {
                return Err(Fail::reject("confirm_required", format!("to delete group {gid}, pass --confirm {gid}")));
            }
            ctx.run("group_delete", json!({"group_id": gid, "by": by.by}), |r| outln!("deleted group {}", str_of(r, "group_id")))
        }
        GroupCmd::Use { group_id, path, by } => {
            let path = absolute(path)?;
            ctx.run("group_use", json!({"group_id": group_id, "path": path, "by": by}), |r| {
                outln!("group {}: active scope {} ({path})", str_of(r, "group_id"), str_of(r, "active_scope_key"));
            })
        }
        GroupCmd::Start { by, group } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("group_start", json!({"group_id": gid, "by": by.by}), |r| {
                outln!("started group {}: {}", str_of(r, "group_id"), joined(r, "started"));
            })
        }
        GroupCmd::Stop { by, group } => {
            let gid = ctx.group_id(&group.group)?;
            stop(ctx, &gid, &by.by)
        }
        GroupCmd::SetState { state, by, group } => {
            let gid = ctx.group_id(&group.group)?;
            let state = match state {
                // The daemon only reaches `stopped` through group_stop, as the reference.
                GroupState::Stopped => return stop(ctx, &gid, &by.by),
                GroupState::Active => "active",
                GroupState::Idle => "idle",
                GroupState::Paused => "paused",
            };
            ctx.run("group_set_state", json!({"group_id": gid, "state": state, "by": by.by}), |r| {
                outln!("group {}: state {}", str_of(r, "group_id"), str_of(r, "state"));
            })
        }
    }
}

fn stop(ctx: &Ctx, gid: &str, by: &str) -> CmdResult {
    ctx.run("group_stop", json!({"group_id": gid, "by": by}), |r| {
        outln!("stopped group {}: {}", str_of(r, "group_id"), joined(r, "stopped"));
    })
}

/// `group show`: the group document read from disk, as the reference does (no daemon).
fn show(ctx: &Ctx, flag: Option<String>) -> CmdResult {
    let gid = ctx.group_id(&flag)?;
    let path = ctx.home.group_dir(&gid).join("group.yaml");
    if !path.exists() {
        return Err(Fail::reject("group_not_found", format!("group not found: {gid}")));
    }
    let doc = GroupDoc::load(&path).map_err(|e| Fail::reject("group_load_failed", e))?;
    ctx.finish_local(json!({"group": doc.redacted()}), |_| outln!("{}", describe(&doc)))
}

/// A readable summary of a group document.
fn describe(doc: &GroupDoc) -> String {
    let g = &doc.doc;
    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = vec![
        format!("{} ({})", doc.title(), doc.group_id()),
        format!("  topic:   {}", if doc.topic().is_empty() { "(none)" } else { doc.topic() }),
        format!("  state:   {} (running: {})", doc.state(), doc.running_flag()),
        format!("  created: {}   updated: {}", s("created_at"), s("updated_at")),
    ];
    if doc.scopes().is_empty() {
        out.push("  scopes:  (none; attach one with `cccc attach <path>`)".into());
    } else {
        out.push("  scopes:".into());
        for sc in doc.scopes() {
            let key = str_of(sc, "scope_key");
            let mark = if key == doc.active_scope_key() { "*" } else { " " };
            out.push(format!("   {mark} {key}  {}", str_of(sc, "url")));
        }
    }
    let actors: Vec<String> = doc
        .actor_views()
        .filter(|a| !a.internal)
        .map(|a| {
            let on = if a.enabled { "on" } else { "off" };
            let title = if a.title.is_empty() { String::new() } else { format!(" \"{}\"", a.title) };
            format!("    {} ({}, {}, {}) [{on}]{title}", a.id, doc.role_of(a.id), a.runtime, a.runner)
        })
        .collect();
    if actors.is_empty() {
        out.push("  actors:  (none)".into());
    } else {
        out.push("  actors:".into());
        out.extend(actors);
    }
    out.join("\n")
}

pub fn attach(ctx: &Ctx, args: &AttachArgs) -> CmdResult {
    let path = absolute(&args.path)?;
    let gid = args.group.as_deref().map(str::trim).unwrap_or("");
    let resp = ctx.call("attach", json!({"path": path, "by": "cli", "group_id": gid}))?;
    if resp.ok {
        ctx.home.set_active_group_id(str_of(&resp.result, "group_id"))?;
    }
    ctx.finish(resp, |r| {
        outln!("attached {path} to group {} ({}) as scope {}", str_of(r, "group_id"), str_of(r, "title"), str_of(r, "scope_key"));
        outln!("active group: {}", str_of(r, "group_id"));
    })
}

/// `path` made absolute against the cwd (not canonicalized: it may not exist yet).
fn absolute(path: &str) -> Result<String, Fail> {
    Ok(std::path::absolute(path)?.display().to_string())
}

/// `cccc use <gid>`: write active.json (the group must exist on disk).
pub fn use_group(ctx: &Ctx, group_id: &str) -> CmdResult {
    let gid = group_id.trim();
    if gid.is_empty() || !ctx.home.group_dir(gid).join("group.yaml").exists() {
        return Err(Fail::reject("group_not_found", format!("group not found: {gid}")));
    }
    let doc = ctx.home.set_active_group_id(gid)?;
    ctx.finish_local(doc, |d| outln!("active group: {}", str_of(d, "active_group_id")))
}

/// `cccc active`: the contents of active.json.
pub fn active(ctx: &Ctx) -> CmdResult {
    let doc = cccc_core::home::read_json(&ctx.home.active_path()).unwrap_or_else(|_| json!({"v": 1, "active_group_id": "", "updated_at": ""}));
    ctx.finish_local(doc, |d| match str_of(d, "active_group_id") {
        "" => outln!("no active group (set one with `cccc use <group_id>`)"),
        gid => outln!("active group: {gid} (since {})", str_of(d, "updated_at")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_table_marks_active_and_unhealthy() {
        let list = vec![
            json!({"group_id": "g_1", "title": "demo", "topic": "ref run", "state": "active", "running": true, "registry_health": "ok"}),
            json!({"group_id": "g_2", "title": "gone", "topic": "", "state": "", "running": false, "registry_health": "missing"}),
        ];
        assert_eq!(
            groups_table(&list, "g_1"),
            "   GROUP  STATE    RUN      TITLE  TOPIC\n*  g_1    active   running  demo   ref run\n   g_2    missing  stopped  gone"
        );
    }
}
