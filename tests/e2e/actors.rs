//! Actors that really run: a scripted fake agent (tests/fixtures/fake_agent.py) as a PTY actor,
//! message delivery into its terminal, throttling, state gating, crash reporting, reattach after
//! a daemon crash, reminders, and terminal access.

use crate::support::{Daemon, cccc_bin, group_with_actors, of_kind, wait_until};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fast timings for tests: short paste→submit delay, short start-up grace, reminders every tick.
const ENV: &[(&str, &str)] = &[("CCCC_PTY_SUBMIT_DELAY_MS", "20"), ("CCCC_PTY_READY_GRACE_MS", "150"), ("CCCC_AUTOMATION_EVERY_TICKS", "1")];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake_agent.py").canonicalize().unwrap()
}

fn start() -> (Daemon, String) {
    let dir = tempfile::Builder::new().prefix("cccc-actors-").tempdir().unwrap().keep();
    let d = Daemon::start_with_env(&dir.join("home"), ENV);
    let gid = group_with_actors(&d);
    (d, gid)
}

/// Add the fake agent as PTY actor `id`; returns its log file.
fn add_agent(d: &Daemon, gid: &str, id: &str) -> PathBuf {
    let log = d.home.join(format!("{id}.agent.log"));
    let r = d.ok(
        "actor_add",
        json!({
            "group_id": gid, "actor_id": id, "runtime": "custom", "runner": "pty",
            "command": ["python3", fixture().to_str().unwrap()],
            "env": {"FAKE_AGENT_LOG": log.to_str().unwrap(), "CCCC_BIN": cccc_bin()},
        }),
    );
    assert_eq!(r["running"], json!(true), "{r}");
    log
}

/// Lines the agent read from its terminal, with its monotonic receive time.
fn lines(log: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["t"].as_f64()?, v["line"].as_str()?.to_string())))
        .collect()
}

fn actor(d: &Daemon, gid: &str, id: &str) -> Value {
    let list = d.ok("actor_list", json!({"group_id": gid}));
    list["actors"].as_array().unwrap().iter().find(|a| a["id"] == json!(id)).cloned().unwrap()
}

#[test]
fn the_fake_agent_receives_an_ask_in_its_terminal_and_answers_through_cccc_mcp() {
    let (d, gid) = start();
    let log = add_agent(&d, &gid, "agent");
    let ask = d.ok("send", json!({"group_id": gid, "text": "Ship the release?", "to": ["agent"], "priority": "attention", "reply_required": true}));
    let ask_id = ask["event"]["id"].as_str().unwrap().to_string();
    // The agent saw the ask, rendered as the reference renders it.
    wait_until("the ask in the terminal", Duration::from_secs(20), || {
        lines(&log).iter().any(|(_, l)| l == &format!("[cccc] REPLY REQUIRED (event_id={ask_id}): reply via cccc_message_reply.")).then_some(())
    });
    // Its answer through `cccc mcp` closes the ask and acknowledges the attention message.
    let reply = wait_until("the agent's reply in the ledger", Duration::from_secs(30), || {
        d.ledger(&gid).into_iter().find(|e| e["kind"] == "chat.message" && e["by"] == "agent" && e["data"]["reply_to"] == json!(ask_id))
    });
    assert_eq!(reply["data"]["text"], json!(format!("fake-agent done {ask_id}")));
    assert_eq!(reply["data"]["to"], json!(["user"]));
    let ledger = d.ledger(&gid);
    let acks: Vec<&Value> = of_kind(&ledger, "chat.ack").into_iter().filter(|a| a["data"]["event_id"] == json!(ask_id)).collect();
    assert_eq!(acks.len(), 1, "exactly one ack: {acks:?}");
    assert_eq!(acks[0]["data"]["actor_id"], json!("agent"));
    let ob = d.ok("obligations", json!({"group_id": gid, "include_closed": true}));
    let mine: Vec<&Value> = ob["obligations"].as_array().unwrap().iter().filter(|o| o["event_id"] == json!(ask_id)).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["status"]["replied"], json!(true));
    assert_eq!(mine[0]["status"]["open"], json!(false));
}

#[test]
fn a_burst_of_100_messages_reaches_the_agent_in_order_once_and_is_marked_read() {
    let (d, gid) = start();
    let log = add_agent(&d, &gid, "agent");
    let mut last = String::new();
    for i in 0..100 {
        last = d.ok("send", json!({"group_id": gid, "text": format!("burst-{i:03}"), "to": ["agent"]}))["event"]["id"].as_str().unwrap().to_string();
    }
    let got = wait_until("100 messages", Duration::from_secs(60), || {
        let got: Vec<String> = lines(&log).into_iter().filter_map(|(_, l)| l.strip_prefix("[cccc] user → agent: ").map(str::to_string)).collect();
        (got.len() >= 100).then_some(got)
    });
    let want: Vec<String> = (0..100).map(|i| format!("burst-{i:03}")).collect();
    assert_eq!(got, want, "in ledger order, each exactly once");
    // Auto-mark on delivery: the agent's cursor reaches the last message with a chat.read by it.
    wait_until("the delivery marked read", Duration::from_secs(10), || {
        d.ledger(&gid).iter().any(|e| e["kind"] == "chat.read" && e["by"] == "agent" && e["data"]["event_id"] == json!(last)).then_some(())
    });
    let inbox = d.ok("inbox_list", json!({"group_id": gid, "actor_id": "agent", "kind_filter": "chat"}));
    assert_eq!(inbox["messages"], json!([]));
}

#[test]
fn deliveries_are_spaced_by_the_group_min_interval() {
    let (d, gid) = start();
    d.ok("group_settings_update", json!({"group_id": gid, "patch": {"min_interval_seconds": 2}}));
    let log = add_agent(&d, &gid, "agent");
    d.ok("send", json!({"group_id": gid, "text": "first", "to": ["agent"]}));
    let t1 = wait_until("first", Duration::from_secs(20), || lines(&log).into_iter().find(|(_, l)| l.ends_with("agent: first")).map(|(t, _)| t));
    d.ok("send", json!({"group_id": gid, "text": "second", "to": ["agent"]}));
    d.ok("send", json!({"group_id": gid, "text": "third", "to": ["agent"]}));
    let t2 = wait_until("second", Duration::from_secs(20), || lines(&log).into_iter().find(|(_, l)| l.ends_with("agent: second")).map(|(t, _)| t));
    let t3 = wait_until("third", Duration::from_secs(20), || lines(&log).into_iter().find(|(_, l)| l.ends_with("agent: third")).map(|(t, _)| t));
    assert!(t2 - t1 >= 1.9, "throttle: second came {:.2}s after the first", t2 - t1);
    assert!((t3 - t2).abs() < 0.5, "messages waiting behind the throttle go out as one batch");
}

#[test]
fn a_paused_group_queues_delivery_and_delivers_on_resume() {
    let (d, gid) = start();
    let log = add_agent(&d, &gid, "agent");
    wait_until("agent ready", Duration::from_secs(10), || d.ok("terminal_tail", json!({"group_id": gid, "actor_id": "agent"}))["text"].as_str().unwrap().contains("fake-agent ready").then_some(()));
    d.ok("group_set_state", json!({"group_id": gid, "state": "paused"}));
    d.ok("send", json!({"group_id": gid, "text": "while paused", "to": ["agent"]}));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lines(&log).iter().any(|(_, l)| l.contains("while paused")), "nothing typed while paused");
    let inbox = d.ok("inbox_list", json!({"group_id": gid, "actor_id": "agent", "kind_filter": "chat"}));
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "the ledger and inbox still update");
    d.ok("group_set_state", json!({"group_id": gid, "state": "active"}));
    wait_until("delivery after resume", Duration::from_secs(20), || lines(&log).iter().any(|(_, l)| l.ends_with("agent: while paused")).then_some(()));
}

#[test]
fn a_crashed_agent_is_reported_with_its_exit_status() {
    let (d, gid) = start();
    add_agent(&d, &gid, "agent");
    d.ok("send", json!({"group_id": gid, "text": "EXIT 3", "to": ["agent"]}));
    let a = wait_until("the crash noticed", Duration::from_secs(20), || Some(actor(&d, &gid, "agent")).filter(|a| a["running"] == json!(false)));
    assert_eq!(a["last_exit"]["code"], json!(3), "{a}");
    assert_eq!(a["effective_working_reason"], json!("process_exited"));
    assert_eq!(a["enabled"], json!(false));
    let stops: Vec<Value> = d.ledger(&gid).into_iter().filter(|e| e["kind"] == "actor.stop" && e["data"]["actor_id"] == "agent").collect();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["by"], json!("system"));
    // The CLI shows it too, and doctor flags it.
    let out = d.cli(&["actor", "list", "--group", &gid, "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"last_exit\""));
    let doctor = String::from_utf8_lossy(&d.cli(&["doctor"]).stdout).to_string();
    assert!(doctor.contains(&format!("✗ {gid}/agent (custom, pty): NOT RUNNING (exited: code 3")), "{doctor}");
    assert!(doctor.contains(&format!("✓ {gid}/lead (custom, headless): alive")), "{doctor}");
    // Starting it again works.
    d.ok("actor_start", json!({"group_id": gid, "actor_id": "agent"}));
    assert_eq!(actor(&d, &gid, "agent")["running"], json!(true));
}

#[test]
fn restarts_keep_the_inbox_and_a_surviving_agent_is_reattached_after_a_daemon_crash() {
    let (mut d, gid) = start();
    d.ok("group_settings_update", json!({"group_id": gid, "patch": {"auto_mark_on_delivery": false}}));
    let log = add_agent(&d, &gid, "agent");
    d.ok("send", json!({"group_id": gid, "text": "before restart", "to": ["agent", "peer-a"]}));
    wait_until("delivery", Duration::from_secs(20), || lines(&log).iter().any(|(_, l)| l.contains("before restart")).then_some(()));
    for who in ["agent", "peer-a"] {
        d.ok("actor_restart", json!({"group_id": gid, "actor_id": who}));
        let inbox = d.ok("inbox_list", json!({"group_id": gid, "actor_id": who, "kind_filter": "chat"}));
        assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{who} keeps its unread message across a restart");
    }
    let state = d.home.join("groups").join(&gid).join("state/runners/pty/agent.json");
    let pid_before = serde_json::from_slice::<Value>(&std::fs::read(&state).unwrap()).unwrap()["pid"].clone();
    wait_until("agent ready", Duration::from_secs(10), || d.ok("terminal_tail", json!({"group_id": gid, "actor_id": "agent"}))["text"].as_str().unwrap().contains("fake-agent ready").then_some(()));

    // kill -9 the daemon: the agent keeps running and the next daemon reattaches to it.
    d.kill9();
    let home = d.home.clone();
    let d2 = Daemon::start_with_env(&home, ENV);
    let a = actor(&d2, &gid, "agent");
    assert_eq!(a["running"], json!(true), "{a}");
    let pid_after = serde_json::from_slice::<Value>(&std::fs::read(&state).unwrap()).unwrap()["pid"].clone();
    assert_eq!(pid_before, pid_after, "same process, reattached");
    d2.ok("send", json!({"group_id": gid, "text": "after daemon crash", "to": ["agent"]}));
    wait_until("delivery after reattach", Duration::from_secs(20), || lines(&log).iter().any(|(_, l)| l.ends_with("agent: after daemon crash")).then_some(()));
    let typed = lines(&log).iter().filter(|(_, l)| l.ends_with(": before restart")).count();
    assert_eq!(typed, 1, "typed once: a restarted session reads history from its inbox, and the new daemon does not retype");
}

#[test]
fn a_clean_shutdown_stops_agents_and_the_next_daemon_starts_them_again() {
    let (mut d, gid) = start();
    add_agent(&d, &gid, "agent");
    let state = d.home.join("groups").join(&gid).join("state/runners/pty/agent.json");
    let pid = serde_json::from_slice::<Value>(&std::fs::read(&state).unwrap()).unwrap()["pid"].as_i64().unwrap();
    d.stop();
    // SAFETY: probing a pid with signal 0.
    assert!(unsafe { libc::kill(pid as i32, 0) } != 0, "the agent process is gone after a clean shutdown");
    let d2 = Daemon::start_with_env(&d.home, ENV);
    let a = wait_until("agent restarted", Duration::from_secs(20), || Some(actor(&d2, &gid, "agent")).filter(|a| a["running"] == json!(true)));
    assert_eq!(a["enabled"], json!(true));
}

#[test]
fn reminders_fire_on_a_short_timer_escalate_and_stop_once_answered() {
    let (d, gid) = start();
    d.ok(
        "group_settings_update",
        json!({"group_id": gid, "patch": {
            "reply_required_nudge_after_seconds": 1, "attention_ack_nudge_after_seconds": 1,
            "unread_nudge_after_seconds": 0, "nudge_digest_min_interval_seconds": 0,
        }}),
    );
    let answered = d.ok("send", json!({"group_id": gid, "text": "answer me", "to": ["peer-a"], "reply_required": true}))["event"]["id"].as_str().unwrap().to_string();
    let ignored = d.ok("send", json!({"group_id": gid, "text": "ignore me", "to": ["peer-a"], "reply_required": true}))["event"]["id"].as_str().unwrap().to_string();
    let nudges_about = |id: &str| -> usize {
        d.ledger(&gid)
            .iter()
            .filter(|e| e["kind"] == "system.notify" && e["data"]["kind"] == "nudge" && e["data"]["target_actor_id"] == "peer-a")
            .filter(|e| e["data"]["message"].as_str().unwrap_or("").contains(&format!("REPLY REQUIRED: event_id={id}")))
            .count()
    };
    wait_until("two nudges", Duration::from_secs(20), || (nudges_about(&answered) >= 2).then_some(()));
    let escalation = d.ledger(&gid).into_iter().find(|e| e["data"]["title"] == "Escalation: pending replies");
    let escalation = escalation.expect("foreman escalation after the 2nd repeat");
    assert_eq!(escalation["data"]["target_actor_id"], json!("lead"));
    d.ok("reply", json!({"group_id": gid, "reply_to": answered, "text": "done", "by": "peer-a"}));
    let after_reply = nudges_about(&answered);
    wait_until("the unanswered ask reaches its 3 repeats", Duration::from_secs(20), || (nudges_about(&ignored) >= 3).then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(nudges_about(&answered), after_reply, "no reminder after the ask was answered");
    assert_eq!(nudges_about(&ignored), 3, "at most 3 reminders per obligation");
}

#[test]
fn terminal_tail_and_attach_show_the_agents_terminal() {
    let (d, gid) = start();
    add_agent(&d, &gid, "agent");
    let tail = wait_until("prompt in the terminal", Duration::from_secs(10), || {
        let t = d.ok("terminal_tail", json!({"group_id": gid, "actor_id": "agent"}));
        t["text"].as_str().unwrap().contains("fake-agent ready").then_some(t)
    });
    assert!(!tail["text"].as_str().unwrap().contains('\x1b'), "ANSI stripped by default");
    d.err_code("terminal_tail", json!({"group_id": gid, "actor_id": "peer-a"}), "not_pty_actor");
    // term_attach: handshake, then the recent output.
    let mut s = std::os::unix::net::UnixStream::connect(d.home.join("daemon/ccccd.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, format!("{}\n", json!({"op": "term_attach", "args": {"group_id": gid, "actor_id": "agent"}})).as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("fake-agent ready") {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "attach closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let hs: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(hs["ok"], json!(true));
    assert_eq!(hs["result"]["terminal_mode"], json!("viewer"));

    // `cccc actor attach` shows the same terminal, then a message typed into it live.
    let mut child = std::process::Command::new(cccc_bin())
        .args(["actor", "attach", "agent", "--group", &gid])
        .env("CCCC_HOME", &d.home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    d.ok("send", json!({"group_id": gid, "text": "seen live", "to": ["agent"]}));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&got).contains("seen live") && Instant::now() < deadline {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("fake-agent ready") && text.contains("seen live"), "{text}");
}
