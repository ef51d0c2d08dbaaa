//! The CLI against the real daemon: conformance items §9.41–§9.42 and the commands of the
//! operations runbook (health checks, triage, actor/group/daemon recovery, smoke, backup).
//!
//! DELIBERATE difference from the reference CLI: our commands print a human summary by default
//! and the daemon's response envelope (2-space indent, exit 2 on `ok: false`) with `--json`,
//! where the reference always printed the envelope. Scripts that parse the output use `--json`;
//! exit codes are the reference's either way (0 ok, 2 rejected, 1 could not run).

use crate::support::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

/// Run with `--json`; assert the exit code; return the printed JSON.
#[track_caller]
fn cli_json(d: &Daemon, args: &[&str], code: i32) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = d.cli(&a);
    assert_eq!(o.status.code(), Some(code), "cccc {args:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(&o), stderr(&o));
    let text = stdout(&o);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("cccc {args:?} printed no JSON ({e}):\n{text}"));
    // Pretty-printed like json.dumps(indent=2, ensure_ascii=False).
    assert_eq!(text, format!("{}\n", serde_json::to_string_pretty(&v).unwrap()), "2-space indented JSON");
    v
}

fn active_group(home: &std::path::Path) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(home.join("active.json")).unwrap()).unwrap();
    v["active_group_id"].as_str().unwrap().to_string()
}

fn last_of_kind(d: &Daemon, gid: &str, kind: &str) -> Value {
    d.ledger(gid).into_iter().rev().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in the ledger"))
}

/// A daemon started in the background by `cccc daemon start` (or by a command's auto-start):
/// on drop, if it is still alive, it is killed by the pid in *this* temp home's pid file.
struct Background {
    home: std::path::PathBuf,
}

impl Drop for Background {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(self.home.join("daemon/ccccd.pid")) else { return };
        if let Ok(pid) = pid.trim().parse::<i32>()
            && pid > 0
        {
            // SAFETY: a plain kill(2) of the daemon this test started in its own temp home.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn fresh_home() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new().prefix("cccc-e2e-cli-").tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    (dir, home)
}

fn pid_alive(pid: i64) -> bool {
    // Zombies (exited, not yet reaped by their parent) count as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

/// A group made through the CLI: `group create` (sets active.json), `attach --group`, and two
/// headless actors `lead` and `peer-a`. Returns the group id.
fn cli_group(d: &Daemon) -> String {
    let out = ok(&d.cli(&["group", "create", "--title", "demo", "--topic", "ref run"]));
    let gid = active_group(&d.home);
    assert!(out.contains(&format!("created group {gid} (demo)")), "{out}");
    let proj = d.home.parent().unwrap().join("proj");
    let out = ok(&d.cli(&["attach", proj.to_str().unwrap(), "--group", &gid]));
    assert!(out.contains(&format!("to group {gid} (demo) as scope s_")), "{out}");
    for (id, title) in [("lead", "Lead"), ("peer-a", "Peer A")] {
        let out = ok(&d.cli(&["actor", "add", id, "--title", title, "--runtime", "custom", "--runner", "headless"]));
        assert!(out.contains(&format!("added actor {id} to {gid}")), "{out}");
        assert!(out.contains("running"), "{out}");
    }
    gid
}

// ---- §9.41 ------------------------------------------------------------------------------------

/// §9.41: `cccc daemon status` prints `ccccd: running pid=<pid> version=<v>` (exit 0) or
/// `ccccd: not running` (exit 1) — and checking never starts a daemon.
#[test]
fn daemon_status_reports_running_with_pid_and_version_or_not_running() {
    let d = Daemon::start();
    let o = d.cli(&["daemon", "status"]);
    assert_eq!(ok(&o), format!("ccccd: running pid={} version=0.4.32\n", d.pid()));
    let v = cli_json(&d, &["daemon", "status"], 0);
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["pid"], d.pid());

    let (_dir, home) = fresh_home();
    let o = cli_in(&home, &["daemon", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ccccd: not running\n");
    assert!(!home.join("daemon/ccccd.sock").exists(), "status must not start a daemon");
    assert!(cli_in(&home, &["daemon", "status"]).status.code() == Some(1));
}

/// §9.41: with `--json`, commands print the daemon's envelope (`v, ok, result, error`, 2-space
/// indent) and exit 2 when `ok` is false; without it, a rejection is `error: <code>: <message>`
/// on stderr, also exit 2.
#[test]
fn json_output_is_the_daemon_envelope_and_rejections_exit_2() {
    let d = Daemon::start();
    let gid = cli_group(&d);
    let v = cli_json(&d, &["send", "hello", "--to", "peer-a"], 0);
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["v", "ok", "result", "error"]);
    assert_eq!(v["v"], 1);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["result"]["event"], last_of_kind(&d, &gid, "chat.message"), "the envelope carries the ledger event");

    let v = cli_json(&d, &["send", "x", "--to", "nobody"], 2);
    assert_eq!(
        v,
        json!({"v": 1, "ok": false, "result": {}, "error": {"code": "invalid_recipient", "message": "unknown recipient: nobody", "details": {}}})
    );
    let o = d.cli(&["send", "x", "--to", "nobody"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("error: invalid_recipient: unknown recipient: nobody"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let v = cli_json(&d, &["send", "x", "--priority", "attention", "--to", "peer-a", "--by", "peer-a"], 2);
    assert_eq!(v["error"]["code"], "no_enabled_recipients");
    assert_eq!(v["error"]["details"], json!({"to": ["peer-a"]}));
    let v = cli_json(&d, &["group", "set-state", "idle", "--by", "peer-a"], 2);
    assert_eq!(v["error"]["message"], "permission denied: peer-a cannot group.set_state");
    // An argument error (clap) is a usage error: exit 2 as well, nothing sent.
    let n = d.ledger(&gid).len();
    assert_eq!(d.cli(&["send", "x", "--priority", "urgent"]).status.code(), Some(2));
    assert_eq!(d.ledger(&gid).len(), n);
}

// ---- §9.42 ------------------------------------------------------------------------------------

/// §9.42: `send`, `reply`, `inbox`, `read` and `tail` work against the active group of
/// active.json when `--group` is omitted (walkthrough of the reference's live run).
#[test]
fn send_reply_inbox_read_and_tail_use_the_active_group() {
    let d = Daemon::start();
    let gid = cli_group(&d);

    let out = ok(&d.cli(&["send", "Please review the release checklist", "--to", "peer-a", "--priority", "attention", "--reply-required"]));
    let msg = last_of_kind(&d, &gid, "chat.message");
    assert_eq!(out, format!("sent {} to peer-a\n", msg["id"].as_str().unwrap()));
    assert_eq!(msg["by"], "user");
    assert_eq!(msg["data"]["to"], json!(["peer-a"]));
    assert_eq!(msg["data"]["priority"], "attention");
    assert_eq!(msg["data"]["reply_required"], true);
    let mid = msg["id"].as_str().unwrap().to_string();

    // inbox (envelope as the reference prints it): the message and its headless notify.
    let inbox = cli_json(&d, &["inbox", "--actor-id", "peer-a"], 0);
    let listed: Vec<&str> = inbox["result"]["messages"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(listed, ["chat.message", "system.notify"]);
    assert_eq!(inbox["result"]["messages"][0]["id"], mid.as_str());
    let human = ok(&d.cli(&["inbox", "--actor-id", "peer-a"]));
    assert!(human.contains(&mid[..8]) && human.contains("[ATTENTION] [REPLY REQUIRED] Please review the release checklist"), "{human}");
    assert!(human.contains("2 unread for peer-a"), "{human}");

    // reply by prefix: to the sender (user), full reply_to, and the attention ack.
    let out = ok(&d.cli(&["reply", &mid[..8], "ETA tomorrow", "--by", "peer-a"]));
    let reply = last_of_kind(&d, &gid, "chat.message");
    assert_eq!(reply["by"], "peer-a");
    assert_eq!(reply["data"]["to"], json!(["user"]));
    assert_eq!(reply["data"]["reply_to"], mid.as_str());
    let ack = last_of_kind(&d, &gid, "chat.ack");
    assert_eq!(ack["data"], json!({"actor_id": "peer-a", "event_id": mid}));
    assert!(out.contains(&format!("replied {} to user (re {})", reply["id"].as_str().unwrap(), &mid[..8])), "{out}");
    assert!(out.contains("acknowledged"), "{out}");

    // read: moves peer-a's cursor; `--by` peer-a on an attention message is the ack gesture.
    let att = d.ok("send", json!({"group_id": gid, "text": "freeze at 5pm", "to": ["@all"], "priority": "attention", "by": "lead"}))["event"].clone();
    let aid = att["id"].as_str().unwrap();
    let r = cli_json(&d, &["read", &aid[..10], "--actor-id", "peer-a", "--by", "peer-a"], 0);
    assert_eq!(r["result"]["cursor"]["event_id"], aid);
    assert_eq!(r["result"]["event"]["kind"], "chat.read");
    assert_eq!(r["result"]["ack_event"]["data"], json!({"actor_id": "peer-a", "event_id": aid}));
    let v = cli_json(&d, &["read", "ffffffff", "--actor-id", "peer-a"], 2);
    assert_eq!(v["error"]["code"], "event_not_found");

    // inbox --mark-read: the reference's combined object (no `v`), cursor at the last listed.
    // (peer-a still has the headless notify of the @all message after its cursor.)
    let m = cli_json(&d, &["inbox", "--actor-id", "peer-a", "--mark-read"], 0);
    assert_eq!(m.as_object().unwrap().keys().collect::<Vec<_>>(), ["ok", "result"]);
    let listed = m["result"]["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{m}");
    assert_eq!(listed[0]["kind"], "system.notify");
    assert_eq!(m["result"]["marked"]["cursor"]["event_id"], listed[0]["id"]);
    assert_eq!(m["result"]["marked"]["event"]["by"], "user");
    assert_eq!(cli_json(&d, &["inbox", "--actor-id", "peer-a"], 0)["result"]["messages"], json!([]));

    // tail: the raw last lines of the ledger, byte for byte.
    let ledger = std::fs::read_to_string(d.home.join("groups").join(&gid).join("ledger.jsonl")).unwrap();
    let lines: Vec<&str> = ledger.lines().collect();
    let out = ok(&d.cli(&["tail", "-n", "3"]));
    assert_eq!(out, format!("{}\n", lines[lines.len() - 3..].join("\n")));
    let out = ok(&d.cli(&["tail", "-n", "1000"]));
    assert_eq!(out, ledger, "more than there is: the whole ledger");

    // `cccc use` switches the group the same commands act on.
    let other = d.ok("group_create", json!({"title": "other"}))["group_id"].as_str().unwrap().to_string();
    ok(&d.cli(&["use", &other]));
    assert_eq!(active_group(&d.home), other);
    let t = ok(&d.cli(&["tail", "-n", "5"]));
    assert_eq!(t.lines().count(), 1, "the other group has only its group.create: {t}");
    assert!(t.contains("\"kind\": \"group.create\"") && t.contains(&other));
    let v = cli_json(&d, &["send", "x"], 2);
    assert_eq!(v["error"]["code"], "no_enabled_recipients", "sent to the other (empty) group");
    // An explicit --group still wins.
    ok(&d.cli(&["send", "explicit", "--to", "lead", "--group", &gid]));
    assert_eq!(last_of_kind(&d, &gid, "chat.message")["data"]["text"], "explicit");
}

/// §9.42: without `--group` and without an active group, group commands refuse with
/// `missing_group_id` (exit 2) before touching the daemon; `--by` defaults to `$CCCC_ACTOR_ID`.
#[test]
fn missing_active_group_is_refused_and_sender_defaults_to_cccc_actor_id() {
    let (_dir, home) = fresh_home();
    for args in [&["send", "hi"][..], &["inbox", "--actor-id", "lead"], &["tail"], &["reply", "abc", "x"], &["read", "abc", "--actor-id", "x"]] {
        let o = cli_in(&home, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("missing_group_id"), "{args:?}: {}", stderr(&o));
    }
    let o = cli_in(&home, &["--json", "send", "hi"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, json!({"ok": false, "error": {"code": "missing_group_id", "message": "missing group_id (no active group?)", "details": {}}}));
    assert!(!home.join("daemon/ccccd.sock").exists(), "refused before starting a daemon");

    let d = Daemon::start();
    let gid = cli_group(&d);
    let o = Command::new(cccc_bin())
        .args(["send", "from inside a runtime", "--to", "user"])
        .env("CCCC_HOME", &d.home)
        .env("CCCC_ACTOR_ID", "peer-a")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&o);
    let m = last_of_kind(&d, &gid, "chat.message");
    assert_eq!(m["by"], "peer-a", "sender defaults to $CCCC_ACTOR_ID");
    assert_eq!(m["data"]["sender_title"], "Peer A");
}

/// §6 / runbook "cccc tail -n 100 -f": prints the last lines, then follows appends.
#[test]
fn tail_follow_prints_new_ledger_lines_as_they_are_appended() {
    let d = Daemon::start();
    let gid = cli_group(&d);
    let mut child = Command::new(cccc_bin())
        .args(["tail", "-n", "2", "-f"])
        .env("CCCC_HOME", &d.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("tail -f printed no {what}"));
    let before: Vec<String> =
        std::fs::read_to_string(d.home.join("groups").join(&gid).join("ledger.jsonl")).unwrap().lines().map(str::to_string).collect();
    assert_eq!([next("first line"), next("second line")], before[before.len() - 2..]);
    let m = d.ok("send", json!({"group_id": gid, "text": "followed", "to": ["user"], "by": "peer-a"}))["event"].clone();
    let line = next("appended line");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v, m, "the appended ledger line");
    let _ = child.kill();
    let _ = child.wait();
}

// ---- runbook ---------------------------------------------------------------------------------

/// Runbook §2/§3: `cccc doctor`, `cccc daemon status`, `cccc groups`, `cccc actor list`,
/// `cccc inbox --actor-id`, `cccc status`, `cccc version` against a live daemon.
#[test]
fn runbook_health_checks_and_triage_commands_answer() {
    let d = Daemon::start();
    let gid = cli_group(&d);
    d.ok("send", json!({"group_id": gid, "text": "triage me", "to": ["peer-a"], "priority": "attention", "reply_required": true}));

    let doc = ok(&d.cli(&["doctor"]));
    assert!(doc.contains(&format!("Daemon: running (pid={}, version=0.4.32)", d.pid())), "{doc}");
    assert!(doc.contains(&format!("CCCC_HOME: {}", d.home.display())), "{doc}");
    assert!(ok(&d.cli(&["version"])).contains("0.4.32"));

    let groups = ok(&d.cli(&["groups"]));
    let row = groups.lines().find(|l| l.contains(&gid)).unwrap_or_else(|| panic!("{groups}"));
    assert!(row.starts_with('*') && row.contains("active") && row.contains("demo"), "active group marked: {row}");
    let v = cli_json(&d, &["groups"], 0);
    assert_eq!(v["result"]["groups"][0]["group_id"], gid.as_str());

    let actors = ok(&d.cli(&["actor", "list"]));
    let lead = actors.lines().find(|l| l.starts_with("lead ")).unwrap_or_else(|| panic!("{actors}"));
    assert!(lead.contains("foreman") && lead.contains("headless"), "{lead}");
    let peer = actors.lines().find(|l| l.starts_with("peer-a ")).unwrap_or_else(|| panic!("{actors}"));
    assert!(peer.contains("peer"), "{peer}");
    let v = cli_json(&d, &["actor", "list"], 0);
    let ids: Vec<&str> = v["result"]["actors"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["lead", "peer-a"]);

    let inbox = ok(&d.cli(&["inbox", "--actor-id", "peer-a"]));
    assert!(inbox.contains("triage me"), "{inbox}");
    let ob = ok(&d.cli(&["obligations"]));
    assert!(ob.contains("peer-a") && ob.contains("triage me"), "open obligation listed: {ob}");
    let st = ok(&d.cli(&["status"]));
    assert!(st.contains(&gid), "{st}");
}

/// Runbook §4: actor-level recovery (`actor restart`), then group-level (`group stop` /
/// `group start`) on the active group.
#[test]
fn runbook_actor_and_group_recovery_commands_work_on_the_active_group() {
    let d = Daemon::start();
    let gid = cli_group(&d);
    let out = ok(&d.cli(&["actor", "restart", "peer-a"]));
    assert!(out.contains("restarted actor peer-a"), "{out}");
    let r = last_of_kind(&d, &gid, "actor.restart");
    assert_eq!(r["data"], json!({"actor_id": "peer-a", "runner": "headless", "runner_effective": "headless"}));
    assert_eq!(r["by"], "user");

    let out = ok(&d.cli(&["group", "stop"]));
    assert!(out.contains("stopped group") && out.contains("lead, peer-a"), "{out}");
    let g = d.ok("group_show", json!({"group_id": gid}))["group"].clone();
    assert_eq!((g["state"].clone(), g["running"].clone()), (json!("stopped"), json!(false)));
    let out = ok(&d.cli(&["group", "start"]));
    assert!(out.contains("started group") && out.contains("lead, peer-a"), "{out}");
    let g = d.ok("group_show", json!({"group_id": gid}))["group"].clone();
    assert_eq!((g["state"].clone(), g["running"].clone()), (json!("active"), json!(true)));
    let kinds: Vec<String> = d.ledger(&gid).iter().rev().take(2).map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["group.start", "group.stop"]);
    // `set-state stopped` is group stop, as in the reference CLI.
    ok(&d.cli(&["group", "set-state", "stopped"]));
    assert_eq!(last_of_kind(&d, &gid, "group.stop")["by"], "user");
    ok(&d.cli(&["group", "start"]));
    ok(&d.cli(&["group", "set-state", "paused"]));
    assert_eq!(last_of_kind(&d, &gid, "group.set_state")["data"], json!({"old_state": "active", "new_state": "paused"}));
}

/// Runbook §4 "daemon-level recovery": `cccc daemon stop` shuts the daemon down cleanly (files
/// removed), `cccc daemon start` brings a background one up (and is a no-op when one runs);
/// other commands auto-start it, and `daemon stop` with nothing running says so (exit 0).
#[test]
fn runbook_daemon_stop_and_start_recover_the_daemon() {
    let mut d = Daemon::start();
    let gid = cli_group(&d);
    let _bg = Background { home: d.home.clone() };
    let out = ok(&d.cli(&["daemon", "stop"]));
    assert_eq!(out, "ccccd: shutdown requested\n");
    assert!(d.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "foreground daemon exited cleanly");
    assert!(!d.home.join("daemon/ccccd.sock").exists());
    assert_eq!(d.cli(&["daemon", "status"]).status.code(), Some(1));
    assert_eq!(ok(&d.cli(&["daemon", "stop"])), "ccccd: not running\n");

    let out = ok(&d.cli(&["daemon", "start"]));
    assert_eq!(out, "ccccd: running\n");
    let ping = d.ok("ping", json!({}));
    let pid = ping["pid"].as_i64().unwrap();
    assert_ne!(pid, d.pid() as i64, "a new background daemon");
    assert_eq!(ok(&d.cli(&["daemon", "status"])), format!("ccccd: running pid={pid} version=0.4.32\n"));
    assert_eq!(ok(&d.cli(&["daemon", "start"])), "ccccd: running\n", "start is a no-op when one runs");
    assert_eq!(d.ok("ping", json!({}))["pid"], pid);
    // The restarted daemon has the group, its actors (running group ⇒ restarted) and history.
    let inbox = d.ok("inbox_list", json!({"group_id": gid, "actor_id": "peer-a"}));
    assert!(inbox["cursor"]["event_id"].as_str().is_some_and(|s| s.len() == 32));
    let l = d.ok("actor_list", json!({"group_id": gid}));
    assert!(l["actors"].as_array().unwrap().iter().all(|a| a["running"] == true), "{l}");
    assert!(d.home.join("daemon/ccccd.log").exists(), "background daemon logs to ccccd.log");

    assert_eq!(ok(&d.cli(&["daemon", "stop"])), "ccccd: shutdown requested\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(pid), "background daemon exited");
    assert!(!d.home.join("daemon/ccccd.pid").exists());

    // Any daemon command auto-starts it (as the reference CLI does).
    let out = ok(&d.cli(&["send", "wake the daemon", "--to", "lead"]));
    assert!(out.starts_with("sent "), "{out}");
    let pid2 = d.ok("ping", json!({}))["pid"].as_i64().unwrap();
    assert_ne!(pid2, pid);
    ok(&d.cli(&["daemon", "stop"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(pid2));
}

/// Runbook §6 smoke and §7 backup/restore: create/attach a group, add actors, send/reply,
/// verify ledger and inbox; then stop the daemon, copy CCCC_HOME, start a daemon on the copy
/// and find the same groups, ledger bytes, cursors and inboxes.
#[test]
fn runbook_smoke_then_backup_and_restore_of_cccc_home() {
    let mut d = Daemon::start();
    let gid = cli_group(&d);
    ok(&d.cli(&["send", "smoke", "--to", "peer-a", "--reply-required"]));
    let m = last_of_kind(&d, &gid, "chat.message");
    ok(&d.cli(&["reply", m["id"].as_str().unwrap(), "smoke ok", "--by", "peer-a"]));
    ok(&d.cli(&["read", m["id"].as_str().unwrap(), "--actor-id", "peer-a", "--by", "peer-a"]));
    let inbox_user = d.ok("inbox_list", json!({"group_id": gid, "actor_id": "user"}));
    assert_eq!(inbox_user["messages"][0]["data"]["text"], "smoke ok");
    let ob = d.ok("obligations", json!({"group_id": gid}));
    assert_eq!(ob["obligations"], json!([]), "the reply fulfilled the reply_required");

    ok(&d.cli(&["daemon", "stop"]));
    assert!(d.wait_exit(Duration::from_secs(10)).is_some());
    let backup = d.home.parent().unwrap().join("backup-home");
    let st = Command::new("cp").arg("-a").arg(&d.home).arg(&backup).status().unwrap();
    assert!(st.success());
    let r = Daemon::start_in(&backup);
    let groups = r.ok("groups", json!({}));
    assert_eq!(groups["groups"][0]["group_id"], gid.as_str());
    let a = std::fs::read(d.home.join("groups").join(&gid).join("ledger.jsonl")).unwrap();
    let b = std::fs::read(backup.join("groups").join(&gid).join("ledger.jsonl")).unwrap();
    assert_eq!(a, b, "restoring does not rewrite history");
    assert_eq!(r.ok("inbox_list", json!({"group_id": gid, "actor_id": "user"})), inbox_user);
    assert_eq!(r.ok("inbox_list", json!({"group_id": gid, "actor_id": "peer-a", "kind_filter": "chat"}))["messages"], json!([]));
    // The restored home keeps working (the CLI finds it through CCCC_HOME).
    let o = cli_in(&backup, &["send", "after restore", "--to", "lead"]);
    ok(&o);
    assert_eq!(last_of_kind(&r, &gid, "chat.message")["data"]["text"], "after restore");
    assert_eq!(active_group(&backup), gid);
}
