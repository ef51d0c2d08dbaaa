//! The Telegram bridge end to end: the real daemon supervises the real bridge process
//! (`cccc __im-bridge`), which talks to the fake Telegram Bot API in this test process.

use crate::support::{Daemon, group_with_actors, of_kind, wait_until};
use bridge_testkit::telegram::{ChatRef, FakeTelegram, Fault, User};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const TOKEN_ENV: &str = "CCCC_E2E_TG_TOKEN";

/// A daemon whose environment holds the fake bot's token, and `n` groups with the bridge set.
fn setup(tg: &FakeTelegram, n: usize) -> (Daemon, Vec<String>) {
    let dir = tempfile::Builder::new().prefix("cccc-tg-").tempdir().unwrap().keep();
    let token = tg.bot_token();
    let d = Daemon::start_with_env(&dir.join("home"), &[(TOKEN_ENV, token.as_str())]);
    let mut gids = Vec::new();
    for _ in 0..n {
        let gid = group_with_actors(&d);
        let out = d.cli(&["im", "set", "telegram", "--token-env", TOKEN_ENV, "--api-url", &tg.api_url(), "--group", &gid]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        gids.push(gid);
    }
    wait_until("the bridge running", Duration::from_secs(30), || {
        let st = d.ok("im_status", json!({"group_id": gids[0]}));
        (st["running"] == json!(true) && st["credential_state"] == json!("ok")).then_some(())
    });
    (d, gids)
}

/// `/subscribe` from `user` in `chat`, then `cccc im bind` with the key the bot answered.
fn bind(d: &Daemon, tg: &FakeTelegram, gid: &str, chat: ChatRef, user: &User) {
    let before = tg.sent(chat).len();
    tg.send_text(chat, user, "/subscribe");
    let sent = tg.wait_for_sent(chat, before + 1, Duration::from_secs(20));
    let text = &sent.last().unwrap().text;
    let key = text.split("--key").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no key in {text:?}"));
    let out = d.cli(&["im", "bind", "--key", key, "--group", gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn ack_button(s: &bridge_testkit::telegram::Sent) -> Option<String> {
    let kb = s.reply_markup.as_ref()?;
    kb["inline_keyboard"].as_array()?.iter().flat_map(|row| row.as_array().cloned().unwrap_or_default()).find_map(|b| b["callback_data"].as_str().filter(|d| d.starts_with("ack:")).map(str::to_string))
}

#[test]
fn an_ask_reaches_the_phone_its_ack_button_acks_once_and_a_native_reply_closes_it() {
    let tg = FakeTelegram::start();
    let (d, gids) = setup(&tg, 1);
    let gid = &gids[0];
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    bind(&d, &tg, gid, dm, &alice);

    // Inbound plain text becomes one message from the user, with an im client_id.
    tg.send_text(dm, &alice, "hello from the phone");
    let inbound = wait_until("the inbound message", Duration::from_secs(20), || {
        d.ledger(gid).into_iter().find(|e| e["kind"] == "chat.message" && e["data"]["text"] == "hello from the phone")
    });
    assert_eq!(inbound["by"], json!("user"));
    assert!(inbound["data"]["client_id"].as_str().unwrap().starts_with("im:telegram:"), "{inbound}");

    // An attention + reply_required ask from the foreman arrives with an Ack button.
    let before = tg.sent(dm).len();
    let ask = d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": "Deploy to prod?", "priority": "attention", "reply_required": true}));
    let ask_id = ask["event"]["id"].as_str().unwrap().to_string();
    let sent = tg.wait_for_sent(dm, before + 1, Duration::from_secs(20));
    let msg = sent.iter().find(|s| s.text.contains("Deploy to prod?")).expect("the ask on the phone").clone();
    // The actor's title ("Lead") names the sender.
    assert!(msg.text.contains("Lead → user"), "sender → recipients: {:?}", msg.text);
    let data = ack_button(&msg).expect("an Ack button");
    assert_eq!(data, format!("ack:{ask_id}"));

    // Pressing it writes exactly one chat.ack; pressing again writes nothing.
    let cb = tg.press_button(dm, msg.message_id, &data);
    tg.wait_for_callback_answer(&cb, Duration::from_secs(20));
    let acks = || of_kind(&d.ledger(gid), "chat.ack").into_iter().filter(|a| a["data"]["event_id"] == json!(ask_id)).cloned().collect::<Vec<Value>>();
    wait_until("the ack", Duration::from_secs(10), || (acks().len() == 1).then_some(()));
    assert_eq!(acks()[0]["by"], json!("user"));
    let cb2 = tg.press_button(dm, msg.message_id, &data);
    tg.wait_for_callback_answer(&cb2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(acks().len(), 1, "a second press acks nothing more");

    // A native Telegram reply to the mirrored ask is a daemon `reply`: it closes the ask.
    tg.send_reply(dm, &alice, "yes, ship it", msg.message_id);
    let reply = wait_until("the reply", Duration::from_secs(20), || {
        d.ledger(gid).into_iter().find(|e| e["kind"] == "chat.message" && e["data"]["text"] == "yes, ship it")
    });
    assert_eq!(reply["data"]["reply_to"], json!(ask_id));
    let ob = d.ok("obligations", json!({"group_id": gid, "include_closed": true}));
    let st = ob["obligations"].as_array().unwrap().iter().find(|o| o["event_id"] == json!(ask_id) && o["recipient"] == "user").cloned().unwrap();
    assert_eq!(st["status"]["replied"], json!(true));
    assert_eq!(st["status"]["open"], json!(false));
    // Nothing the user sent is echoed back.
    assert!(!tg.sent(dm).iter().any(|s| s.text.contains("yes, ship it") || s.text.contains("hello from the phone")));
}

#[test]
fn two_groups_share_one_bot_each_in_its_own_chat_without_cross_talk() {
    let tg = FakeTelegram::start();
    let (d, gids) = setup(&tg, 2);
    let (alice, bob) = (tg.user(2001, "Alice"), tg.user(2002, "Bob"));
    let (a, b) = (tg.private_chat(alice.id), tg.private_chat(bob.id));
    bind(&d, &tg, &gids[0], a, &alice);
    bind(&d, &tg, &gids[1], b, &bob);
    d.ok("send", json!({"group_id": gids[0], "by": "lead", "to": ["user"], "text": "for group one"}));
    d.ok("send", json!({"group_id": gids[1], "by": "lead", "to": ["user"], "text": "for group two"}));
    wait_until("both delivered", Duration::from_secs(20), || {
        (tg.sent(a).iter().any(|s| s.text.contains("for group one")) && tg.sent(b).iter().any(|s| s.text.contains("for group two"))).then_some(())
    });
    assert!(!tg.sent(a).iter().any(|s| s.text.contains("for group two")));
    assert!(!tg.sent(b).iter().any(|s| s.text.contains("for group one")));
    tg.send_text(a, &alice, "alice speaks");
    tg.send_text(b, &bob, "bob speaks");
    wait_until("both inbound", Duration::from_secs(20), || {
        let one = d.ledger(&gids[0]).iter().any(|e| e["data"]["text"] == "alice speaks");
        let two = d.ledger(&gids[1]).iter().any(|e| e["data"]["text"] == "bob speaks");
        (one && two).then_some(())
    });
    assert!(!d.ledger(&gids[0]).iter().any(|e| e["data"]["text"] == "bob speaks"));
    assert!(!d.ledger(&gids[1]).iter().any(|e| e["data"]["text"] == "alice speaks"));
}

/// kill -9 of the bridge at random points during 500 outbound messages (10 chats × 50) with
/// 429s injected: nothing is lost and each chat's order holds.
///
/// Telegram has no idempotency key, so the one window no client can close is "Telegram
/// accepted the piece, the bridge was killed before it wrote that down": that piece goes out
/// again on restart (the outbox's module docs). The test pins that contract exactly: at most
/// one repeat per kill, and only as an immediate repeat of the piece that was in flight, never
/// an older message. Discord (nonce + enforce_nonce) has no such window.
#[test]
fn kill9_of_the_bridge_during_500_messages_with_429s_delivers_each_once_in_order() {
    let tg = FakeTelegram::start();
    let chats = 10;
    let per_chat = 50;
    let (d, gids) = setup(&tg, chats);
    let mut targets = Vec::new();
    for (i, gid) in gids.iter().enumerate() {
        let u = tg.user(3000 + i as i64, &format!("user{i}"));
        let c = tg.private_chat(u.id);
        bind(&d, &tg, gid, c, &u);
        targets.push(c);
    }
    tg.fail_next("sendMessage", Fault::TooManyRequests { retry_after_secs: 2 }, 3);
    for n in 0..per_chat {
        for gid in &gids {
            d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": format!("m-{n:03}")}));
        }
    }
    // Kill the bridge a few times while it delivers; the daemon restarts it.
    let mut rng = 0x9e37_79b9_u64;
    let kills = 4;
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(800 + rng % 2500));
        let pid = wait_until("the bridge running", Duration::from_secs(90), || d.ok("im_status", json!({"group_id": gids[0]}))["pid"].as_i64());
        // SAFETY: SIGKILL to the bridge process the daemon reports.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let got: HashMap<usize, Vec<String>> = wait_until("all 500 messages", Duration::from_secs(600), || {
        let got: HashMap<usize, Vec<String>> = targets
            .iter()
            .enumerate()
            .map(|(i, c)| (i, tg.sent(*c).iter().filter_map(|s| s.text.split_whitespace().find(|w| w.starts_with("m-")).map(str::to_string)).collect()))
            .collect();
        got.values().all(|v| v.iter().any(|m| *m == format!("m-{:03}", per_chat - 1))).then_some(got)
    });
    let want: Vec<String> = (0..per_chat).map(|n| format!("m-{n:03}")).collect();
    let mut repeats = 0;
    for (i, v) in got {
        // Collapse immediate repeats (the in-flight piece at a kill); what is left is exact.
        let mut dedup = v.clone();
        dedup.dedup();
        repeats += v.len() - dedup.len();
        assert_eq!(dedup, want, "chat {i}: every message, in order, nothing older repeated: {v:?}");
    }
    assert!(repeats <= kills, "{repeats} repeats from {kills} kills");
}
