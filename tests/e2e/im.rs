//! The daemon's side of the chat bridges: configuration, binding, supervision.
//! (The bridges themselves are tested against the fake platforms in telegram.rs.)

use crate::support::{Daemon, group_with_actors};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn write_pending(home: &Path, cred_dir: &str, key: &str, chat_id: i64, thread_id: i64, age_secs: i64) {
    let dir = home.join("state/im").join(cred_dir);
    std::fs::create_dir_all(&dir).unwrap();
    let created = cccc_proto::ts::format(cccc_proto::ts::now_micros() - age_secs * 1_000_000);
    let file = dir.join("im_pending_keys.json");
    let mut m: serde_json::Map<String, Value> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    m.insert(key.into(), json!({"chat_id": chat_id, "thread_id": thread_id, "platform": "telegram", "created_at": created, "chat_title": "alice"}));
    std::fs::write(&file, serde_json::to_vec_pretty(&Value::Object(m)).unwrap()).unwrap();
}

#[test]
fn im_set_takes_only_an_env_var_name_and_never_writes_a_token() {
    let d = Daemon::start();
    let gid = group_with_actors(&d);
    let e = d.err_code("im_set", json!({"group_id": gid, "platform": "telegram", "bot_token_env": "123456:ABC-secret"}), "invalid_token_env");
    assert!(e["message"].as_str().unwrap().contains("NAME of an environment variable"));
    d.err_code("im_set", json!({"group_id": gid, "platform": "irc", "bot_token_env": "X"}), "invalid_platform");
    let r = d.ok("im_set", json!({"group_id": gid, "platform": "telegram", "bot_token_env": "CCCC_TEST_TG_TOKEN", "api_url": "http://127.0.0.1:9/"}));
    assert_eq!(r["im"]["bot_token_env"], json!("CCCC_TEST_TG_TOKEN"));
    let yaml = std::fs::read_to_string(d.home.join("groups").join(&gid).join("group.yaml")).unwrap();
    assert!(yaml.contains("bot_token_env: CCCC_TEST_TG_TOKEN"), "{yaml}");
    assert!(!yaml.contains("bot_token:"));
    // The token variable is not set where the daemon runs: status says so plainly.
    let st = d.ok("im_status", json!({"group_id": gid}));
    assert_eq!(st["credential_state"], json!("missing"));
    assert!(st["credential_error"].as_str().unwrap().contains("CCCC_TEST_TG_TOKEN"));
    let out = d.cli(&["im", "status", "--group", &gid]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("CCCC_TEST_TG_TOKEN is not set"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn binding_a_pairing_key_authorizes_and_subscribes_one_chat_in_one_group() {
    let d = Daemon::start();
    let g1 = group_with_actors(&d);
    let g2 = group_with_actors(&d);
    for g in [&g1, &g2] {
        d.ok("im_set", json!({"group_id": g, "platform": "telegram", "bot_token_env": "CCCC_TEST_TG_TOKEN"}));
    }
    d.err_code("im_bind_chat", json!({"group_id": g1, "key": "nope"}), "invalid_key");
    write_pending(&d.home, "telegram_aaaaaaaaaaaa", "k-old", 7, 0, 601);
    d.err_code("im_bind_chat", json!({"group_id": g1, "key": "k-old"}), "invalid_key");
    write_pending(&d.home, "telegram_aaaaaaaaaaaa", "k1", 7, 0, 10);
    write_pending(&d.home, "telegram_aaaaaaaaaaaa", "k42", -100, 42, 10);
    let pending = d.ok("im_list_pending", json!({}));
    assert_eq!(pending["pending"].as_array().unwrap().len(), 2, "the expired key is not listed");
    let r = d.ok("im_bind_chat", json!({"group_id": g1, "key": "k1"}));
    assert_eq!(r["chat_key"], json!("7"));
    d.err_code("im_bind_chat", json!({"group_id": g1, "key": "k1"}), "invalid_key");
    // The same chat cannot be bound to a second group.
    write_pending(&d.home, "telegram_aaaaaaaaaaaa", "k1b", 7, 0, 5);
    let e = d.err_code("im_bind_chat", json!({"group_id": g2, "key": "k1b"}), "chat_already_bound");
    assert!(e["message"].as_str().unwrap().contains(&g1));
    // A forum topic is its own chat.
    let out = d.cli(&["im", "bind", "--key", "k42", "--group", &g2]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let state = |g: &str, f: &str| -> Value { serde_json::from_slice(&std::fs::read(d.home.join("groups").join(g).join("state").join(f)).unwrap()).unwrap() };
    assert_eq!(state(&g1, "im_authorized_chats.json")["7"]["key_used"], json!("k1"));
    assert_eq!(state(&g1, "im_subscribers.json")["7"]["subscribed"], json!(true));
    assert!(state(&g2, "im_authorized_chats.json").get("-100:42").is_some());
    assert!(state(&g2, "im_authorized_chats.json").get("-100").is_none(), "topic 42 does not authorize the chat itself");
    let listed = d.ok("im_list_authorized", json!({"group_id": g1}));
    assert_eq!(listed["authorized"].as_array().unwrap().len(), 1);
    d.ok("im_revoke_chat", json!({"group_id": g1, "chat_id": "7"}));
    assert_eq!(d.ok("im_list_authorized", json!({"group_id": g1}))["authorized"], json!([]));
    assert!(state(&g1, "im_subscribers.json").get("7").is_none(), "revoke unsubscribes too");
    d.err_code("im_revoke_chat", json!({"group_id": g1, "chat_id": "7"}), "chat_not_found");
    d.ok("im_reject_pending", json!({"key": "k1b"}));
    assert_eq!(d.ok("im_list_pending", json!({}))["pending"], json!([]));
}

/// A stand-in bridge: exits at once with the code in $FAKE_BRIDGE_EXIT (counts its runs).
fn fake_bridge_exe(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("fake-bridge.sh");
    std::fs::write(&p, "#!/bin/sh\necho run >> \"$CCCC_HOME/fake-bridge.runs\"\nexit ${FAKE_BRIDGE_EXIT:-1}\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&p).unwrap().permissions(), 0o755);
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

#[test]
fn the_daemon_restarts_a_crashing_bridge_with_backoff_and_parks_a_rejected_credential() {
    let dir = tempfile::Builder::new().prefix("cccc-im-").tempdir().unwrap();
    let home = dir.path().join("home");
    let exe = fake_bridge_exe(dir.path());
    let d = Daemon::start_with_env(&home, &[("CCCC_TEST_TG_TOKEN", "123:abc"), ("CCCC_IM_BRIDGE_EXE", exe.to_str().unwrap()), ("FAKE_BRIDGE_EXIT", "1")]);
    let gid = group_with_actors(&d);
    d.ok("im_set", json!({"group_id": gid, "platform": "telegram", "bot_token_env": "CCCC_TEST_TG_TOKEN"}));
    let runs = || std::fs::read_to_string(home.join("fake-bridge.runs")).unwrap_or_default().lines().count();
    let t0 = Instant::now();
    while runs() < 3 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(runs() >= 3, "restarted after crashes");
    // 1 s, 2 s, 4 s…: three starts take at least ~3 s.
    assert!(t0.elapsed() >= Duration::from_millis(2500), "restarts back off ({:?})", t0.elapsed());
    let st = d.ok("im_status", json!({"group_id": gid}));
    assert!(st["restarts"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(st["last_exit"]["code"], json!(1));
    // Stop: no more restarts.
    d.ok("im_stop", json!({"group_id": gid}));
    std::thread::sleep(Duration::from_millis(1500));
    let n = runs();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(), n, "a stopped bridge is not restarted");
    drop(d);

    // Exit code 4 = credential rejected: parked until `im start`.
    let _ = std::fs::remove_file(home.join("fake-bridge.runs"));
    let d = Daemon::start_with_env(&home, &[("CCCC_TEST_TG_TOKEN", "123:abc"), ("CCCC_IM_BRIDGE_EXE", exe.to_str().unwrap()), ("FAKE_BRIDGE_EXIT", "4")]);
    d.ok("im_start", json!({"group_id": gid}));
    let t0 = Instant::now();
    while runs() < 1 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(runs(), 1, "a rejected credential is not retried");
    let st = d.ok("im_status", json!({"group_id": gid}));
    assert_eq!(st["credential_state"], json!("rejected"), "{st}");
    d.ok("im_start", json!({"group_id": gid}));
    let t0 = Instant::now();
    while runs() < 2 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(runs(), 2, "`im start` tries again");
}
