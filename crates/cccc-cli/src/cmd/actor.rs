//! `cccc actor list|add|update|start|stop|restart|remove`.

use crate::cli::{ActorAddArgs, ActorCmd, ActorTarget, ActorUpdateArgs, Runner, Submit};
use crate::ctx::{CmdResult, Ctx, Fail};
use crate::output::{outln, str_of, table};
use cccc_core::group::GroupDoc;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, action: &ActorCmd) -> CmdResult {
    match action {
        ActorCmd::List { group } => {
            let gid = ctx.group_id(&group.group)?;
            // Unread counts help triage; the --json envelope stays the reference's request.
            let args = if ctx.json { json!({"group_id": gid}) } else { json!({"group_id": gid, "include_unread": true}) };
            ctx.run("actor_list", args, |r| {
                let list = r.get("actors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                if list.is_empty() {
                    outln!("no actors in {gid} (add one with `cccc actor add <id> --runtime <name>`)");
                } else {
                    outln!("{}", actors_table(list));
                }
            })
        }
        ActorCmd::Add(a) => add(ctx, a),
        ActorCmd::Update(a) => update(ctx, a),
        ActorCmd::Start(t) => simple(ctx, "actor_start", t, "started"),
        ActorCmd::Stop(t) => simple(ctx, "actor_stop", t, "stopped"),
        ActorCmd::Restart(t) => simple(ctx, "actor_restart", t, "restarted"),
        ActorCmd::Remove(t) => simple(ctx, "actor_remove", t, "removed"),
        ActorCmd::Attach { actor_id, control, group } => attach(ctx, actor_id, *control, &group.group),
    }
}

fn actors_table(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            let flag = |k: &str, yes: &str, no: &str| if a[k] == json!(true) { yes.to_string() } else { no.to_string() };
            vec![
                str_of(a, "id").to_string(),
                str_of(a, "role").to_string(),
                str_of(a, "runtime").to_string(),
                str_of(a, "runner").to_string(),
                // Absent `enabled` means enabled, as in group.yaml.
                if a["enabled"] == json!(false) { "off".into() } else { "on".into() },
                flag("running", "yes", "no"),
                str_of(a, "effective_working_state").to_string(),
                a.get("unread_count").map(Value::to_string).unwrap_or_default(),
                str_of(a, "title").to_string(),
            ]
        })
        .collect();
    table(&["ID", "ROLE", "RUNTIME", "RUNNER", "ENABLED", "RUNNING", "STATE", "UNREAD", "TITLE"], &rows)
}

fn simple(ctx: &Ctx, op: &str, t: &ActorTarget, done: &str) -> CmdResult {
    let gid = ctx.group_id(&t.group.group)?;
    ctx.run(op, json!({"group_id": gid, "actor_id": t.actor_id, "by": t.by.by}), |_| outln!("{done} actor {} in {gid}", t.actor_id))
}

fn runner_str(r: Runner) -> &'static str {
    match r {
        Runner::Pty => "pty",
        Runner::Headless => "headless",
    }
}

fn submit_str(s: Submit) -> &'static str {
    match s {
        Submit::Enter => "enter",
        Submit::Newline => "newline",
        Submit::None => "none",
    }
}

fn env_object(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// `--command` split into argv the way a POSIX shell splits words, so the daemon (ours or the
/// reference, which takes a list) gets exactly what a shell would run.
fn command_argv(raw: &str) -> Result<Vec<String>, Fail> {
    shell_words(raw).map_err(|e| Fail::reject("invalid_command", format!("--command: {e}")))
}

fn add(ctx: &Ctx, a: &ActorAddArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let mut args = json!({
        "group_id": gid, "actor_id": a.actor_id, "runtime": a.runtime, "runner": runner_str(a.runner), "by": a.by.by,
    });
    if let Some(t) = &a.title {
        args["title"] = json!(t);
    }
    if let Some(c) = &a.command {
        args["command"] = json!(command_argv(c)?);
    }
    if !a.env.is_empty() {
        args["env"] = env_object(&a.env);
    }
    if let Some(s) = &a.scope {
        args["default_scope_key"] = json!(scope_key(ctx, &gid, s)?);
    }
    if let Some(s) = a.submit {
        args["submit"] = json!(submit_str(s));
    }
    ctx.run("actor_add", args, |r| {
        let actor = &r["actor"];
        outln!("added actor {} to {gid} ({}, {}, {})", str_of(actor, "id"), str_of(actor, "role"), str_of(actor, "runtime"), str_of(actor, "runner"));
        match r.get("start_error").and_then(Value::as_str) {
            Some(e) => outln!("not started: {e}"),
            None if r["running"] == json!(true) => outln!("running"),
            None => outln!("not running"),
        }
    })
}

fn update(ctx: &Ctx, a: &ActorUpdateArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let mut patch = Map::new();
    if let Some(t) = &a.title {
        patch.insert("title".into(), json!(t));
    }
    if let Some(r) = &a.runtime {
        patch.insert("runtime".into(), json!(r));
    }
    if let Some(r) = a.runner {
        patch.insert("runner".into(), json!(runner_str(r)));
    }
    if let Some(c) = &a.command {
        patch.insert("command".into(), json!(command_argv(c)?));
    }
    if !a.env.is_empty() {
        patch.insert("env".into(), env_object(&a.env));
    }
    if let Some(s) = &a.scope {
        patch.insert("default_scope_key".into(), json!(scope_key(ctx, &gid, s)?));
    }
    if let Some(s) = a.submit {
        patch.insert("submit".into(), json!(submit_str(s)));
    }
    if let Some(s) = &a.runtime_state_source {
        patch.insert("runtime_state_source".into(), json!(s));
    }
    if let Some(e) = a.enabled {
        patch.insert("enabled".into(), json!(e));
    }
    if patch.is_empty() {
        return Err(Fail::reject("invalid_patch", "nothing to update: pass at least one of --title --runtime --runner --command --env --scope --submit --runtime-state-source --enabled"));
    }
    let keys: Vec<String> = patch.keys().cloned().collect();
    ctx.run("actor_update", json!({"group_id": gid, "actor_id": a.actor_id, "patch": patch, "by": a.by.by}), |_| {
        outln!("updated actor {} in {gid}: {}", a.actor_id, keys.join(", "));
    })
}

/// `--scope`: a scope key as is, or a directory attached to the group, looked up in its
/// group.yaml by the directory (or its git work tree root, which is what `attach` records).
fn scope_key(ctx: &Ctx, gid: &str, raw: &str) -> Result<String, Fail> {
    let raw = raw.trim();
    if raw.starts_with("s_") && !raw.contains('/') {
        return Ok(raw.to_string());
    }
    let path = std::path::absolute(raw)?;
    let path = path.canonicalize().unwrap_or(path);
    let doc = GroupDoc::load(&ctx.home.group_dir(gid).join("group.yaml")).map_err(|e| Fail::reject("group_not_found", e))?;
    let candidates: Vec<PathBuf> = git_toplevel(&path).into_iter().chain([path.clone()]).collect();
    doc.scopes()
        .iter()
        .find(|sc| candidates.iter().any(|c| Path::new(str_of(sc, "url")) == c))
        .map(|sc| str_of(sc, "scope_key").to_string())
        .ok_or_else(|| {
            Fail::reject("scope_not_attached", format!("{} is not attached to {gid} (attach it with `cccc attach {} --group {gid}`)", path.display(), path.display()))
        })
}

fn git_toplevel(path: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git").arg("-C").arg(path).args(["rev-parse", "--show-toplevel"]).stderr(std::process::Stdio::null()).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then(|| PathBuf::from(s))
}

/// Split a string into words like a POSIX shell: whitespace separates, single quotes are
/// literal, double quotes allow `\` escapes, a bare `\` escapes the next character.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
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
                            // Inside double quotes only these are escapable; otherwise the
                            // backslash stays.
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_split_like_sh() {
        assert_eq!(shell_words(r#"claude --x "a b" 'c d' e\ f"#).unwrap(), vec!["claude", "--x", "a b", "c d", "e f"]);
        assert_eq!(shell_words(r#"sh -c "echo \"hi\" \n" ''"#).unwrap(), vec!["sh", "-c", r#"echo "hi" \n"#, ""]);
        assert_eq!(shell_words("  ").unwrap(), Vec::<String>::new());
        assert!(shell_words("'open").is_err());
        assert!(shell_words("x\\").is_err());
    }

    #[test]
    fn actors_table_shows_state_at_a_glance() {
        let list = vec![json!({"id": "lead", "role": "foreman", "runtime": "custom", "runner": "headless", "enabled": true, "running": true,
            "effective_working_state": "idle", "unread_count": 2, "title": ""})];
        assert_eq!(
            actors_table(&list),
            "ID    ROLE     RUNTIME  RUNNER    ENABLED  RUNNING  STATE  UNREAD  TITLE\nlead  foreman  custom   headless  on       yes      idle   2"
        );
    }
}

/// `cccc actor attach`: the daemon's `term_attach` stream, raw terminal bytes to stdout.
fn attach(ctx: &Ctx, actor_id: &str, control: bool, group: &Option<String>) -> CmdResult {
    use std::io::{BufRead, BufReader, Read, Write};
    let gid = ctx.group_id(group)?;
    // Checks the daemon is up (starting it if needed) and the group exists.
    ctx.call("group_show", serde_json::json!({"group_id": gid}))?;
    let sock = match cccc_ipc::Endpoint::discover(ctx.home.root()) {
        cccc_ipc::Endpoint::Unix(p) => p,
        cccc_ipc::Endpoint::Tcp(..) => return Err(Fail::reject("unsupported_transport", "attach needs the unix socket transport")),
    };
    let mut s = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| Fail::reject("daemon_unavailable", format!("cannot connect to {}: {e}", sock.display())))?;
    let mode = if control { "control" } else { "viewer" };
    let req = serde_json::json!({"v": 1, "op": "term_attach", "args": {"group_id": gid, "actor_id": actor_id, "mode": mode}});
    s.write_all(format!("{req}\n").as_bytes()).map_err(|e| Fail::Other(e.into()))?;
    let mut reader = BufReader::new(s.try_clone().map_err(|e| Fail::Other(e.into()))?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| Fail::Other(e.into()))?;
    let resp: cccc_proto::Response = serde_json::from_str(&line).map_err(|e| Fail::reject("daemon_unavailable", format!("bad handshake: {e}")))?;
    if !resp.ok {
        return Err(Fail::Rejected(resp.error.unwrap_or_else(|| cccc_proto::ErrorBody::new("error", "attach refused"))));
    }
    eprintln!("[attached to {actor_id} in {gid}, {mode} mode; Ctrl-C to detach]");
    if control {
        let mut w = s.try_clone().map_err(|e| Fail::Other(e.into()))?;
        std::thread::spawn(move || {
            for l in std::io::stdin().lock().lines().map_while(Result::ok) {
                if w.write_all(format!("{l}\r").as_bytes()).is_err() {
                    break;
                }
            }
        });
    }
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    eprintln!("\n[detached: the terminal closed]");
    Ok(0)
}
