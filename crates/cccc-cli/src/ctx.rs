//! What every command shares: the home, the output mode, the daemon connection, and how a
//! command ends (exit codes as in the reference: 0 ok, 2 rejected, 1 could not run).

use crate::daemon_ctl;
use crate::output::{print_json, str_of};
use cccc_core::home::Home;
use cccc_ipc::Client;
use cccc_proto::{ErrorBody, Response};
use serde_json::{Value, json};
use std::cell::Cell;

/// How a command failed.
#[derive(Debug)]
pub enum Fail {
    /// Rejected with an error code, by the daemon or by the CLI's own checks: exit 2.
    Rejected(ErrorBody),
    /// Already reported on stderr; exit with this code.
    Exit(u8),
    /// Something unexpected (IO, …): exit 1.
    Other(anyhow::Error),
}

impl Fail {
    pub fn reject(code: &str, message: impl Into<String>) -> Fail {
        Fail::Rejected(ErrorBody::new(code, message))
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        Fail::Other(e)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Other(e.into())
    }
}

/// A command's exit code, or how it failed.
pub type CmdResult = Result<u8, Fail>;

pub struct Ctx {
    pub home: Home,
    pub json: bool,
    daemon_checked: Cell<bool>,
}

impl Ctx {
    pub fn new(home: Home, json: bool) -> Ctx {
        Ctx { home, json, daemon_checked: Cell::new(false) }
    }

    /// `--group`, else the active group; neither ⇒ `missing_group_id` (as the reference).
    pub fn group_id(&self, flag: &Option<String>) -> Result<String, Fail> {
        resolve_group(flag.as_deref(), &self.home).map_err(Fail::Rejected)
    }

    /// Start the daemon if it does not answer; once per process.
    fn ensure_daemon(&self) -> Result<(), Fail> {
        if !self.daemon_checked.get() {
            if let Err(failure) = daemon_ctl::start(&self.home) {
                failure.report();
                return Err(Fail::Exit(1));
            }
            self.daemon_checked.set(true);
        }
        Ok(())
    }

    /// Call `op` on the daemon (starting it if needed) and return its envelope, `ok` or not.
    /// An unreachable daemon is a `daemon_unavailable` rejection.
    pub fn call(&self, op: &str, args: Value) -> Result<Response, Fail> {
        self.ensure_daemon()?;
        Client::for_home(self.home.root()).call_raw(op, args).map_err(|e| Fail::Rejected(e.to_body(op)))
    }

    /// End a command with the daemon's answer: `--json` prints the envelope as is (exit 0/2);
    /// otherwise `human` prints the result, or the error becomes a rejection.
    pub fn finish(&self, resp: Response, human: impl FnOnce(&Value)) -> CmdResult {
        if self.json {
            print_json(&envelope(&resp));
            return Ok(if resp.ok { 0 } else { 2 });
        }
        match resp.into_result() {
            Ok(result) => {
                human(&result);
                Ok(0)
            }
            Err(e) => Err(Fail::Rejected(e)),
        }
    }

    /// [`Ctx::call`] then [`Ctx::finish`].
    pub fn run(&self, op: &str, args: Value, human: impl FnOnce(&Value)) -> CmdResult {
        let resp = self.call(op, args)?;
        self.finish(resp, human)
    }

    /// End a command whose result was produced locally (no daemon): `--json` prints
    /// `{"ok":true,"result":…}` as the reference's local commands do.
    pub fn finish_local(&self, result: Value, human: impl FnOnce(&Value)) -> CmdResult {
        if self.json {
            print_json(&json!({"ok": true, "result": result}));
        } else {
            human(&result);
        }
        Ok(0)
    }
}

/// The response envelope as a JSON value, keys in the reference's order (`v, ok, result, error`).
pub fn envelope(resp: &Response) -> Value {
    serde_json::to_value(resp).unwrap_or_else(|_| json!({"ok": resp.ok}))
}

/// `flag` if non-blank, else the active group from `active.json`.
pub fn resolve_group(flag: Option<&str>, home: &Home) -> Result<String, ErrorBody> {
    if let Some(g) = flag.map(str::trim).filter(|g| !g.is_empty()) {
        return Ok(g.to_string());
    }
    let active = home.active_group_id();
    let active = active.trim();
    if active.is_empty() {
        return Err(ErrorBody::new("missing_group_id", "missing group_id (no active group?)"));
    }
    Ok(active.to_string())
}

/// Who sends: `--by`, else `$CCCC_ACTOR_ID` (set inside actor runtimes), else `user`.
pub fn sender(flag: &Option<String>, env_actor: Option<String>) -> String {
    [flag.clone(), env_actor].into_iter().flatten().map(|s| s.trim().to_string()).find(|s| !s.is_empty()).unwrap_or_else(|| "user".into())
}

/// The actor whose inbox is meant: `--actor-id`, else `$CCCC_ACTOR_ID`; neither ⇒ `missing_actor_id`.
pub fn actor_id(flag: &Option<String>) -> Result<String, Fail> {
    [flag.clone(), std::env::var("CCCC_ACTOR_ID").ok()]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .ok_or_else(|| Fail::reject("missing_actor_id", "missing actor_id (pass --actor-id)"))
}

/// `--to a,b --to c` → `["a","b","c"]` (blanks dropped), as the reference splits them.
pub fn split_to(raw: &[String]) -> Vec<String> {
    raw.iter().flat_map(|item| item.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Print a rejection: `error: <code>: <message>` on stderr, or with `--json` the reference's
/// `{"ok":false,"error":{…}}` on stdout.
pub fn report_rejection(body: &ErrorBody, json: bool) {
    if json {
        print_json(&json!({"ok": false, "error": body}));
        return;
    }
    eprintln!("error: {}: {}", body.code, body.message);
    if body.details.as_object().is_some_and(|d| !d.is_empty()) {
        eprintln!("  details: {}", cccc_proto::json::to_py_string(&body.details));
    }
    if let Some(hint) = hint_for(&body.code) {
        eprintln!("  hint: {hint}");
    }
}

/// A next step for the rejections people hit most.
fn hint_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "missing_group_id" => "create a group (`cccc group create`), attach a directory (`cccc attach .`) or pass --group",
        "missing_project_root" => "attach a project directory first: `cccc attach <path> --group <group_id>`",
        "daemon_unavailable" => "check `cccc daemon status` and the log in $CCCC_HOME/daemon/ccccd.log",
        _ => return None,
    })
}

/// `result[key]` as a list of strings, joined for display.
pub fn joined(v: &Value, key: &str) -> String {
    let list: Vec<&str> = v.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() { "(none)".into() } else { list.join(", ") }
}

/// The event id inside `result[key]`, or "".
pub fn event_id_of<'a>(result: &'a Value, key: &str) -> &'a str {
    result.get(key).map(|e| str_of(e, "id")).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_tokens_split_on_commas_and_repeats() {
        let raw = vec!["peer-a, peer-b".to_string(), "".into(), " ,user,".into(), "@all".into()];
        assert_eq!(split_to(&raw), vec!["peer-a", "peer-b", "user", "@all"]);
        assert!(split_to(&[]).is_empty());
    }

    #[test]
    fn group_falls_back_to_active_json() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let e = resolve_group(None, &home).unwrap_err();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("missing_group_id", "missing group_id (no active group?)"));
        home.set_active_group_id("g_0123456789ab").unwrap();
        assert_eq!(resolve_group(None, &home).unwrap(), "g_0123456789ab");
        assert_eq!(resolve_group(Some("  "), &home).unwrap(), "g_0123456789ab");
        assert_eq!(resolve_group(Some(" g_x "), &home).unwrap(), "g_x");
    }

    #[test]
    fn sender_prefers_flag_then_env_then_user() {
        assert_eq!(sender(&Some("lead".into()), Some("peer-a".into())), "lead");
        assert_eq!(sender(&None, Some("peer-a".into())), "peer-a");
        assert_eq!(sender(&Some(" ".into()), Some("".into())), "user");
        assert_eq!(sender(&None, None), "user");
    }
}
