//! `cccc im …`: chat bridge configuration, binding and status (ops `im_*`).

use crate::cli::ImAction;
use crate::ctx::{CmdResult, Ctx};
use crate::output::{outln, short_id, str_of};
use serde_json::{Value, json};

pub fn run(ctx: &Ctx, action: &ImAction) -> CmdResult {
    match action {
        ImAction::Set { platform, token_env, api_url, guild, category, allow_user, also, group, by } => {
            let gid = ctx.group_id(&group.group)?;
            let mut args = json!({"group_id": gid, "platform": platform, "bot_token_env": token_env, "by": by.by, "also": also});
            for (k, v) in [("api_url", api_url), ("guild_id", guild), ("category", category)] {
                if let Some(v) = v {
                    args[k] = json!(v);
                }
            }
            if !allow_user.is_empty() {
                args["allowed_user_ids"] = json!(allow_user);
            }
            ctx.run("im_set", args, |r| {
                outln!("{}: {} bridge configured; token read from ${} where the daemon runs", str_of(r, "group_id"), str_of(&r["im"], "platform"), str_of(&r["im"], "bot_token_env"));
                if r["im"]["enabled"] == json!(true) {
                    outln!("enabled: the daemon starts it within a second (cccc im status to check)");
                }
            })
        }
        ImAction::Unset { group, by } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_unset", json!({"group_id": gid, "by": by.by}), |r| outln!("{}: bridge configuration and chat bindings removed", str_of(r, "group_id")))
        }
        ImAction::Config { group } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_config", json!({"group_id": gid}), |r| outln!("{}", crate::output::pretty(&r["im"])))
        }
        ImAction::Start { platform, group, by } => {
            let gid = ctx.group_id(&group.group)?;
            let args = json!({"group_id": gid, "by": by.by, "platform": platform.clone().unwrap_or_default()});
            ctx.run("im_start", args, |r| outln!("{}: {} bridge enabled", str_of(r, "group_id"), str_of(&r["im"], "platform")))
        }
        ImAction::Stop { platform, group, by } => {
            let gid = ctx.group_id(&group.group)?;
            let args = json!({"group_id": gid, "by": by.by, "platform": platform.clone().unwrap_or_default()});
            ctx.run("im_stop", args, |r| outln!("{}: {} bridge disabled", str_of(r, "group_id"), str_of(&r["im"], "platform")))
        }
        ImAction::Status { group } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_status", json!({"group_id": gid}), print_status)
        }
        ImAction::Logs { lines, follow, group } => {
            let gid = ctx.group_id(&group.group)?;
            let st = ctx.call("im_status", json!({"group_id": gid}))?;
            let Some(path) = st.result.get("log_path").and_then(Value::as_str).map(std::path::PathBuf::from) else {
                return ctx.finish(st, |r| {
                    let why = r.get("credential_error").and_then(Value::as_str).unwrap_or("no bridge configured");
                    outln!("no bridge log: {why}");
                });
            };
            crate::cmd::tail::print_file(&path, *lines, *follow)
        }
        ImAction::Bind { key, group, by } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_bind_chat", json!({"group_id": gid, "key": key.trim(), "by": by.by}), |r| {
                outln!("bound {} chat {} to {}", str_of(r, "platform"), str_of(r, "chat_key"), str_of(r, "group_id"));
            })
        }
        ImAction::Authorized { group } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_list_authorized", json!({"group_id": gid}), |r| {
                let items = r["authorized"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    outln!("no chats bound (send /subscribe to the bot, then cccc im bind --key K)");
                }
                for c in items {
                    let sub = &c["subscriber"];
                    outln!(
                        "{:<24} {:<9} since {}{}{}",
                        str_of(&c, "chat_key"),
                        str_of(&c, "platform"),
                        str_of(&c, "authorized_at"),
                        if sub["verbose"] == json!(true) { "  verbose" } else { "" },
                        if sub["paused"] == json!(true) { "  paused" } else { "" }
                    );
                }
            })
        }
        ImAction::Revoke { chat_id, thread_id, group, by } => {
            let gid = ctx.group_id(&group.group)?;
            ctx.run("im_revoke_chat", json!({"group_id": gid, "chat_id": chat_id, "thread_id": thread_id, "by": by.by}), |r| {
                outln!("revoked {}", r["revoked"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default());
            })
        }
        ImAction::Pending => ctx.run("im_list_pending", json!({}), |r| {
            let items = r["pending"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                outln!("no pending keys");
            }
            for p in items {
                outln!("{}  {} chat {}  {}  since {}", str_of(&p, "key"), str_of(&p, "platform"), p["chat_id"], str_of(&p, "chat_title"), str_of(&p, "created_at"));
            }
        }),
        ImAction::Reject { key } => ctx.run("im_reject_pending", json!({"key": key.trim()}), |r| outln!("rejected {}", str_of(r, "key"))),
    }
}

fn print_status(r: &Value) {
    if r["configured"] != json!(true) {
        outln!("{}: no bridge configured (cccc im set telegram --token-env VAR)", str_of(r, "group_id"));
        return;
    }
    let running = if r["running"] == json!(true) { format!("running (pid {})", r["pid"]) } else { "not running".to_string() };
    let enabled = if r["enabled"] == json!(true) { "enabled" } else { "disabled" };
    outln!("{} bridge: {enabled}, {running}, restarts {}", str_of(r, "platform"), r["restarts"]);
    let who = r.get("bot_username").and_then(Value::as_str).map(|u| format!(" as @{u}")).unwrap_or_default();
    outln!("credential: {}{who} (token from ${})", str_of(r, "credential_state"), str_of(r, "token_env"));
    if let Some(e) = r.get("credential_error").and_then(Value::as_str) {
        outln!("  {e}");
    }
    if let Some(e) = r.get("last_error").and_then(Value::as_str) {
        outln!("last error: {e}");
    }
    let chats = r["chats"].as_array().cloned().unwrap_or_default();
    if chats.is_empty() {
        outln!("chats: none bound (send /subscribe to the bot, then cccc im bind --key K)");
    }
    for c in chats {
        let mut flags = Vec::new();
        for (k, label) in [("subscribed", "subscribed"), ("verbose", "verbose"), ("paused", "paused"), ("blocked", "BLOCKED")] {
            if c[k] == json!(true) {
                flags.push(label);
            }
        }
        if c["authorized"] != json!(true) {
            flags.push("not authorized");
        }
        let last = c.get("last_delivered_event_id").and_then(Value::as_str).map(short_id).unwrap_or("-");
        let backlog = c.get("backlog").filter(|b| !b.is_null()).map(|b| b.to_string()).unwrap_or_else(|| "?".into());
        outln!("  {:<22} {:<30} last delivered {last}  backlog {backlog}", str_of(&c, "chat_key"), flags.join(" "));
        if let Some(e) = c.get("last_error").and_then(Value::as_str) {
            outln!("    last error: {e}");
        }
    }
    for m in r.get("mirrors").and_then(Value::as_array).into_iter().flatten() {
        outln!();
        print_status(m);
    }
}
