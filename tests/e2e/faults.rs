//! Bad input and crashes: nothing acknowledged is lost or duplicated, bad requests get clear
//! errors, and the daemon keeps serving.

use crate::support::{Daemon, group_with_actors, ledger_of, of_kind};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// kill -9 in the middle of a burst of concurrent sends; after restart every send that got `ok`
/// is in the ledger exactly once, the ledger parses, the inbox agrees, and retrying every send
/// with its `client_id` creates each message exactly once.
#[test]
fn kill9_during_concurrent_burst_keeps_every_acknowledged_send_exactly_once() {
    let mut d = Daemon::start();
    let gid = group_with_actors(&d);
    let home = d.home.clone();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..8 {
        let client = d.client().with_timeout(Duration::from_secs(5));
        let (gid, acked) = (gid.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..400 {
                let cid = format!("burst-{t}-{i}");
                let args = json!({"group_id": gid, "text": format!("msg {t}/{i}"), "to": ["peer-a"], "client_id": cid, "by": "user"});
                match client.call("send", args) {
                    Ok(r) => {
                        acked.lock().unwrap().insert(cid, r["event"]["id"].as_str().unwrap().to_string());
                    }
                    Err(_) => return, // the daemon is gone
                }
            }
        }));
    }
    // Let the burst get going, then pull the plug.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 150 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150, "burst too small to mean anything: {}", acked.len());

    // The ledger parses line by line (a torn tail would be repaired by the next open).
    let d = Daemon::start_in(&home);
    let ledger = ledger_of(&home, &gid);
    let msgs = of_kind(&ledger, "chat.message");
    let mut by_cid: HashMap<String, Vec<String>> = HashMap::new();
    for m in &msgs {
        if let Some(c) = m["data"]["client_id"].as_str() {
            by_cid.entry(c.to_string()).or_default().push(m["id"].as_str().unwrap().to_string());
        }
    }
    for (cid, id) in &acked {
        assert_eq!(by_cid.get(cid), Some(&vec![id.clone()]), "acknowledged send {cid} must be in the ledger exactly once");
    }
    assert!(by_cid.values().all(|ids| ids.len() == 1), "no client_id is written twice");

    // The inbox of the recipient shows each message once, in ledger order.
    let inbox = d.ok("inbox_list", json!({"group_id": gid, "actor_id": "peer-a", "limit": 0, "kind_filter": "chat"}));
    let inbox_ids: Vec<&str> = inbox["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    let ledger_ids: Vec<&str> = msgs.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(inbox_ids, ledger_ids);

    // Retrying everything with the same client_id: written ones replay, the rest are created once.
    for t in 0..8 {
        for i in 0..400 {
            let cid = format!("burst-{t}-{i}");
            let r = d.ok("send", json!({"group_id": gid, "text": format!("msg {t}/{i}"), "to": ["peer-a"], "client_id": cid, "by": "user"}));
            if let Some(id) = by_cid.get(&cid) {
                assert_eq!(r["replayed"], json!(true), "{cid}");
                assert_eq!(r["event"]["id"], json!(id[0]));
            }
        }
    }
    let after = ledger_of(&home, &gid);
    let cids: Vec<&str> = of_kind(&after, "chat.message").iter().filter_map(|m| m["data"]["client_id"].as_str()).collect();
    let unique: HashSet<&str> = cids.iter().copied().collect();
    assert_eq!(cids.len(), 8 * 400);
    assert_eq!(unique.len(), 8 * 400);
}

fn error_of(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or_else(|| panic!("no response line"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(v["v"], json!(1));
    assert_eq!(v["result"], json!({}));
    v["error"].clone()
}

#[test]
fn garbage_oversized_and_truncated_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json\n".to_vec(), "not valid JSON"),
        (b"{}\n".to_vec(), "op"),
        (b"[1,2,3]\n".to_vec(), "JSON object"),
        (br#"{"op":"ping","extra":1}"#.to_vec(), "unexpected top-level key"),
        (br#"{"op":"ping","args":"x"}"#.to_vec(), "args must be a JSON object"),
        (br#"{"v":1,"op":"pi"#.to_vec(), "not valid JSON"),
        (vec![0xff, 0xfe, 0x00, b'\n'], "not valid JSON"),
    ];
    for (bytes, needle) in cases {
        let e = error_of(&d.raw(&bytes));
        assert_eq!(e["code"], json!("invalid_request"));
        let msg = format!("{} {}", e["message"], e["details"]);
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    // Over 2 MB without a newline: refused with a size error, not buffered forever.
    let mut big = br#"{"op":"send","args":{"text":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2_100_000));
    let e = error_of(&d.raw(&big));
    assert_eq!(e["code"], json!("invalid_request"));
    assert!(e["message"].as_str().unwrap().contains("too large"), "{e}");
    // An unknown op is its own code; a connection that sends nothing gets nothing.
    assert_eq!(error_of(&d.raw(b"{\"op\":\"no_such_op\"}\n"))["code"], json!("unknown_op"));
    assert!(d.raw(b"").is_empty());
    // Many bad clients at once, then a good one.
    let hs: Vec<_> = (0..32)
        .map(|i| {
            let home = d.home.clone();
            std::thread::spawn(move || {
                let mut s = std::os::unix::net::UnixStream::connect(home.join("daemon/ccccd.sock")).unwrap();
                let _ = std::io::Write::write_all(&mut s, format!("{{\"op\": {i}}}\n").as_bytes());
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(d.ok("ping", json!({}))["ipc_v"], json!(1));
}

#[test]
fn a_torn_last_ledger_line_is_moved_aside_on_restart_and_nothing_before_it_is_lost() {
    let mut d = Daemon::start();
    let gid = group_with_actors(&d);
    for i in 0..5 {
        d.ok("send", json!({"group_id": gid, "text": format!("m{i}"), "to": ["peer-a"]}));
    }
    d.stop();
    let path = d.home.join("groups").join(&gid).join("ledger.jsonl");
    let before = std::fs::read(&path).unwrap();
    let mut torn = before.clone();
    torn.extend_from_slice(br#"{"v": 1, "id": "deadbeef", "ts": "2026-11-25T10:1"#);
    std::fs::write(&path, &torn).unwrap();

    let d = Daemon::start_in(&d.home);
    // Groups open in the background after start; any request on the group waits for its open.
    d.ok("group_show", json!({"group_id": gid}));
    let now = std::fs::read(&path).unwrap();
    assert_eq!(now.len(), before.len(), "the torn bytes are cut:\n{}", String::from_utf8_lossy(&now[before.len().min(now.len())..]));
    assert_eq!(now, before, "the rest is untouched");
    let aside: Vec<_> = std::fs::read_dir(d.home.join("groups").join(&gid).join("state/ledger"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("torn-"))
        .collect();
    assert_eq!(aside.len(), 1, "the torn bytes are kept aside");
    d.ok("send", json!({"group_id": gid, "text": "after", "to": ["peer-a"]}));
    let ledger = d.ledger(&gid);
    assert_eq!(of_kind(&ledger, "chat.message").len(), 6);
}

#[test]
fn a_broken_group_yaml_gives_a_clear_error_and_other_groups_keep_working() {
    let mut d = Daemon::start();
    let bad = group_with_actors(&d);
    let good = group_with_actors(&d);
    d.stop();
    let yaml = d.home.join("groups").join(&bad).join("group.yaml");
    let original = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, "v: 1\nactors: [unclosed\n").unwrap();

    let mut d = Daemon::start_in(&d.home);
    let e = d.err_code("group_show", json!({"group_id": bad}), "group_corrupt");
    assert!(e["message"].as_str().unwrap().contains("group.yaml"), "{e}");
    let groups = d.ok("groups", json!({}));
    assert_eq!(groups["registry_health"]["corrupt_group_ids"], json!([bad]));
    let listed: Vec<&Value> = groups["groups"].as_array().unwrap().iter().filter(|g| g["group_id"] == json!(bad)).collect();
    assert_eq!(listed[0]["registry_health"], json!("corrupt"));
    d.ok("send", json!({"group_id": good, "text": "still fine", "to": ["peer-a"]}));
    // Nothing was overwritten: putting the file back restores the group.
    d.stop();
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), "v: 1\nactors: [unclosed\n");
    std::fs::write(&yaml, original).unwrap();
    let d = Daemon::start_in(&d.home);
    d.ok("send", json!({"group_id": bad, "text": "back", "to": ["peer-a"]}));
}

/// Requests in flight when `shutdown` arrives still complete durably.
#[test]
fn shutdown_during_sends_loses_nothing_that_was_acknowledged() {
    let mut d = Daemon::start();
    let gid = group_with_actors(&d);
    let client = d.client();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let (client, gid, acked) = (client.clone(), gid.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    match client.call("send", json!({"group_id": gid, "text": format!("{t}-{i}"), "to": ["peer-a"]})) {
                        Ok(r) => acked.lock().unwrap().push(r["event"]["id"].as_str().unwrap().to_string()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 50 {
        std::thread::sleep(Duration::from_millis(2));
    }
    d.stop();
    for h in hs {
        h.join().unwrap();
    }
    let ids: HashSet<String> = of_kind(&ledger_of(&d.home, &gid), "chat.message").iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    for id in acked.lock().unwrap().iter() {
        assert!(ids.contains(id), "acknowledged {id} missing after shutdown");
    }
}
