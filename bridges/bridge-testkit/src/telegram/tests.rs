//! Tests: raw HTTP against the fake (std TcpStream client), and teloxide-core to prove that the
//! JSON the fake produces deserializes into teloxide's strict types.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

// ----- a minimal blocking HTTP/1.1 client ---------------------------------------------------------

struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Ok(Reply { status, body })
}

fn call_tok(tg: &FakeTelegram, token: &str, method: &str, params: Value) -> Reply {
    raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{token}/{method}"),
        "application/json",
        params.to_string().as_bytes(),
    )
    .unwrap()
}

/// POST JSON with the default token; returns (status, body JSON).
fn call(tg: &FakeTelegram, method: &str, params: Value) -> (u16, Value) {
    let r = call_tok(tg, &tg.bot_token(), method, params);
    (r.status, r.json())
}

fn ok(tg: &FakeTelegram, method: &str, params: Value) -> Value {
    let (status, body) = call(tg, method, params);
    assert_eq!(status, 200, "{method}: {body}");
    assert_eq!(body["ok"], true);
    body["result"].clone()
}

fn err(tg: &FakeTelegram, method: &str, params: Value) -> (u16, String) {
    let (status, body) = call(tg, method, params);
    assert_eq!(body["ok"], false, "{method} unexpectedly succeeded: {body}");
    assert_eq!(body["error_code"], status);
    (status, body["description"].as_str().unwrap().to_string())
}

fn updates(tg: &FakeTelegram, offset: i64) -> Vec<Value> {
    ok(tg, "getUpdates", json!({"offset": offset, "timeout": 0}))
        .as_array()
        .unwrap()
        .clone()
}

// ----- raw protocol tests --------------------------------------------------------------------

#[test]
fn get_me_tokens_and_unknown_methods() {
    let tg = FakeTelegram::start();
    assert!(tg.api_url().starts_with("http://127.0.0.1:") && tg.api_url().ends_with('/'));
    let me = ok(&tg, "getMe", json!({}));
    assert_eq!(me["is_bot"], true);
    assert_eq!(me["username"], DEFAULT_BOT_USERNAME);
    assert_eq!(me["id"], tg.bot_id());
    // case-insensitive method names (teloxide sends "GetMe"), GET with no body
    let r = raw_request(
        tg.addr(),
        "GET",
        &format!("/bot{}/GETME", tg.bot_token()),
        "text/plain",
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);

    let bad = call_tok(&tg, "123:wrong", "getMe", json!({}));
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.json(),
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    assert_eq!(call_tok(&tg, "nocolon", "getMe", json!({})).status, 404);

    let (status, desc) = err(&tg, "sendSticker", json!({}));
    assert_eq!((status, desc.as_str()), (404, "Not Found"));

    // revoke the token mid-run
    tg.set_valid_tokens(&["1:other"]);
    assert_eq!(call_tok(&tg, DEFAULT_TOKEN, "getMe", json!({})).status, 401);
    assert_eq!(call_tok(&tg, "1:other", "getMe", json!({})).status, 200);
    let methods: Vec<_> = tg
        .all_requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(methods[0], ("getMe".to_string(), 200));
    assert!(methods.contains(&("sendSticker".to_string(), 404)));
}

#[test]
fn long_poll_wakes_on_new_update_and_times_out_empty() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);

    let t0 = Instant::now();
    let empty = ok(&tg, "getUpdates", json!({"timeout": 1}));
    assert_eq!(empty, json!([]));
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "returned early: {:?}",
        t0.elapsed()
    );

    let addr = tg.addr();
    let token = tg.bot_token();
    let poller = std::thread::spawn(move || {
        let t = Instant::now();
        let r = raw_request(
            addr,
            "POST",
            &format!("/bot{token}/getUpdates"),
            "application/json",
            br#"{"timeout":20}"#,
        )
        .unwrap();
        (t.elapsed(), r.json())
    });
    tg.wait_for_requests("getUpdates", 2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let id = tg.send_text(dm, &alice, "hello bot");
    let (elapsed, body) = poller.join().unwrap();
    assert!(
        elapsed < Duration::from_secs(3),
        "long poll did not wake: {elapsed:?}"
    );
    let ups = body["result"].as_array().unwrap();
    assert_eq!(ups.len(), 1);
    let m = &ups[0]["message"];
    assert_eq!(m["message_id"], id);
    assert_eq!(m["text"], "hello bot");
    assert_eq!(
        m["chat"],
        json!({"id": 1001, "type": "private", "first_name": "Alice", "username": "alice"})
    );
    assert_eq!(m["from"]["id"], 1001);
    assert_eq!(m["from"]["is_bot"], false);
    assert!((m["date"].as_i64().unwrap() - state::now_unix()).abs() < 5);
}

#[test]
fn offset_confirms_and_forgets_updates() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    let ids: Vec<i32> = (0..3)
        .map(|i| tg.send_text(dm, &alice, &format!("m{i}")))
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "message ids increase per chat");

    let all = updates(&tg, 0);
    assert_eq!(all.len(), 3);
    let uid: Vec<i64> = all
        .iter()
        .map(|u| u["update_id"].as_i64().unwrap())
        .collect();
    assert!(uid[0] < uid[1] && uid[1] < uid[2]);
    // no offset: the same updates again
    assert_eq!(updates(&tg, 0).len(), 3);
    // limit
    assert_eq!(
        ok(&tg, "getUpdates", json!({"limit": 2}))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // confirming the first two
    let rest = updates(&tg, uid[2]);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["update_id"], uid[2]);
    // they are gone forever, even with a lower offset again
    assert_eq!(updates(&tg, uid[0]).len(), 1);
    assert_eq!(updates(&tg, uid[2] + 1).len(), 0);
    assert!(tg.pending_updates().is_empty());
    assert!(tg.wait_until_consumed(Duration::from_millis(10)));
    tg.send_text(dm, &alice, "later");
    let later = updates(&tg, uid[2] + 1);
    assert_eq!(later[0]["update_id"], uid[2] + 1);
    // negative offset keeps the last N
    tg.send_text(dm, &alice, "a");
    tg.send_text(dm, &alice, "b");
    let last = updates(&tg, -1);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["message"]["text"], "b");
}

#[test]
fn allowed_updates_persist_and_filter_at_creation() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    ok(&tg, "getUpdates", json!({"allowed_updates": ["message"]}));
    let id = tg.send_text(dm, &alice, "x");
    tg.edit_text(dm, id, "y"); // edited_message: not allowed → never exists
    let ups = updates(&tg, 0);
    assert_eq!(ups.len(), 1);
    assert!(ups[0].get("message").is_some());
    assert_eq!(tg.filtered_update_count(), 1);
    // a form-encoded JSON string works too (as sent by multipart/form clients)
    let r = raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{}/getUpdates", tg.bot_token()),
        "application/x-www-form-urlencoded",
        b"allowed_updates=%5B%22message%22%2C%22edited_message%22%5D&timeout=0",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        tg.allowed_updates().unwrap(),
        vec!["message", "edited_message"]
    );
    tg.edit_text(dm, id, "z");
    let ups = updates(&tg, 0);
    assert_eq!(ups.last().unwrap()["edited_message"]["text"], "z");
    assert!(ups.last().unwrap()["edited_message"]["edit_date"].is_i64());
}

#[test]
fn too_many_requests_body_and_not_performed() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(tg.user(1001, "Alice").id);
    tg.fail_next(
        "sendmessage",
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        2,
    );
    for _ in 0..2 {
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 1001, "text": "hi"}));
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}})
        );
    }
    assert!(tg.sent(dm).is_empty(), "a 429 must not perform the request");
    ok(&tg, "sendMessage", json!({"chat_id": 1001, "text": "hi"}));
    assert_eq!(tg.sent(dm).len(), 1);

    tg.fail_next("*", Fault::ServerError, 1);
    assert_eq!(
        err(&tg, "getMe", json!({})),
        (500, "Internal Server Error".to_string())
    );
    tg.fail_next("getMe", Fault::BadGateway, 1);
    let r = call_tok(&tg, &tg.bot_token(), "getMe", json!({}));
    assert_eq!(r.status, 502);
    assert!(String::from_utf8_lossy(&r.body).contains("502 Bad Gateway"));
    tg.fail_next_in(dm, "sendMessage", Fault::Forbidden, 1);
    assert_eq!(
        err(&tg, "sendMessage", json!({"chat_id": 1001, "text": "x"})).1,
        "Forbidden: bot was blocked by the user"
    );
    tg.fail_next("getUpdates", Fault::Conflict, 1);
    assert_eq!(err(&tg, "getUpdates", json!({})).0, 409);
    tg.fail_next("getMe", Fault::Unauthorized, 1);
    assert_eq!(err(&tg, "getMe", json!({})).0, 401);
    tg.fail_next(
        "getMe",
        Fault::BadRequest("Bad Request: whatever".into()),
        1,
    );
    assert_eq!(
        err(&tg, "getMe", json!({})),
        (400, "Bad Request: whatever".to_string())
    );
    let statuses: Vec<u16> = tg
        .requests("sendMessage")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![429, 429, 200, 403]);
}

#[test]
fn html_and_length_validation() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(1001);
    let (s, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "<b>bold", "parse_mode": "HTML"}),
    );
    assert_eq!(s, 400);
    assert_eq!(
        d,
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    );
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "<div>x</div>", "parse_mode": "HTML"}),
    );
    assert_eq!(
        d,
        "Bad Request: can't parse entities: Unsupported start tag \"div\" at byte offset 0"
    );
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "x", "parse_mode": "html5"}),
    );
    assert_eq!(d, "Bad Request: unsupported parse_mode");
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "Version 1.2!", "parse_mode": "MarkdownV2"}),
    );
    assert!(
        d.starts_with("Bad Request: can't parse entities: Character '.' is reserved"),
        "{d}"
    );
    assert_eq!(
        err(&tg, "sendMessage", json!({"chat_id": 1001, "text": " \n "})).1,
        "Bad Request: message text is empty"
    );
    assert_eq!(
        err(&tg, "sendMessage", json!({"chat_id": 5, "text": "x"})).1,
        "Bad Request: chat not found"
    );
    assert_eq!(
        err(&tg, "sendMessage", json!({"text": "x"})).1,
        "Bad Request: chat_id is empty"
    );

    let m = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "<b>Peer</b>\n\n1 &lt; 2 &amp; <code>x</code>\n", "parse_mode": "HTML"}),
    );
    assert_eq!(m["text"], "Peer\n\n1 < 2 & x");
    assert_eq!(
        m["entities"][0],
        json!({"type": "bold", "offset": 0, "length": 4})
    );
    assert_eq!(m["from"]["id"], tg.bot_id());
    let s = &tg.sent(dm)[0];
    assert_eq!(s.parse_mode.as_deref(), Some("HTML"));
    assert_eq!(s.raw_text, "<b>Peer</b>\n\n1 &lt; 2 &amp; <code>x</code>\n");
    assert_eq!(s.text, "Peer\n\n1 < 2 & x");

    // 4096 UTF-16 units: 2048 emoji fit exactly, one more char does not
    let emoji = "😀".repeat(2048);
    assert_eq!(utf16_len(&emoji), 4096);
    ok(&tg, "sendMessage", json!({"chat_id": 1001, "text": emoji}));
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": format!("{emoji}x")}),
    );
    assert_eq!(d, "Bad Request: message is too long");
    // the limit applies after entity parsing: tags do not count
    let tagged = format!("<b>{}</b>", "a".repeat(4096));
    ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": tagged, "parse_mode": "HTML"}),
    );
}

#[test]
fn threads_topics_and_reply_threads() {
    let tg = FakeTelegram::start();
    let bob = tg.user(2002, "Bob");
    let forum = tg.supergroup_chat(-1001234567890, "Team", true);
    let topic = tg.forum_topic(forum.chat_id, 42);
    let other = tg.forum_topic(forum.chat_id, 43);

    let id = tg.send_text(topic, &bob, "@cccc_test_bot status please");
    let u = updates(&tg, 0);
    let m = &u[0]["message"];
    assert_eq!(m["message_id"], id);
    assert!(id > 43);
    assert_eq!(m["message_thread_id"], 42);
    assert_eq!(m["is_topic_message"], true);
    assert_eq!(m["chat"]["is_forum"], true);
    assert_eq!(m["chat"]["type"], "supergroup");
    assert_eq!(m["reply_to_message"]["message_id"], 42);
    assert!(m["reply_to_message"]["forum_topic_created"].is_object());
    assert_eq!(
        m["entities"][0],
        json!({"type": "mention", "offset": 0, "length": 14})
    );

    // bot answers in the topic
    let r = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": forum.chat_id, "message_thread_id": 42, "text": "ok"}),
    );
    assert_eq!(r["message_thread_id"], 42);
    assert_eq!(r["is_topic_message"], true);
    assert_eq!(tg.sent(topic).len(), 1);
    assert!(tg.sent(other).is_empty());
    assert_eq!(tg.sent(forum).len(), 1);
    assert_eq!(tg.sent(topic)[0].thread_id, Some(42));
    assert_eq!(tg.sent(topic)[0].reply_to_message_id, None);
    assert_eq!(tg.requests("sendMessage")[0].thread_id, Some(42));
    // General (1) and unknown topics are rejected
    for t in [1, 99] {
        let (_, d) = err(
            &tg,
            "sendMessage",
            json!({"chat_id": forum.chat_id, "message_thread_id": t, "text": "x"}),
        );
        assert_eq!(d, "Bad Request: message thread not found");
    }

    // non-forum supergroup: a reply carries message_thread_id but is not a topic message
    let sg = tg.group_chat(-1009999999999, "Plain SG");
    let root = tg.send_text(sg, &bob, "root");
    let reply = tg.send_reply(sg, &bob, "reply", root);
    let m = tg.message_json(sg, reply).unwrap();
    assert_eq!(m["message_thread_id"], root);
    assert!(m.get("is_topic_message").is_none());
    assert_eq!(m["reply_to_message"]["text"], "root");
    // basic group: no thread ids at all
    let g = tg.group_chat(-4242, "Basic");
    let a = tg.send_text(g, &bob, "a");
    let b = tg.send_reply(g, &bob, "b", a);
    assert!(
        tg.message_json(g, b)
            .unwrap()
            .get("message_thread_id")
            .is_none()
    );
    assert_eq!(
        tg.message_json(g, b).unwrap()["chat"],
        json!({"id": -4242, "type": "group", "title": "Basic"})
    );
}

#[test]
fn replies_in_both_directions() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    let q = tg.send_text(dm, &alice, "question");
    let bot = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "answer", "reply_parameters": {"message_id": q}}),
    );
    assert_eq!(bot["reply_to_message"]["message_id"], q);
    assert_eq!(bot["reply_to_message"]["text"], "question");
    let bot_id = bot["message_id"].as_i64().unwrap() as i32;
    assert_eq!(tg.sent(dm)[0].reply_to_message_id, Some(q));
    // legacy parameter, and as a form-encoded JSON string
    let legacy = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "again", "reply_to_message_id": q}),
    );
    assert_eq!(legacy["reply_to_message"]["message_id"], q);
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "x", "reply_parameters": {"message_id": 999}}),
    );
    assert_eq!(d, "Bad Request: message to be replied not found");
    let m = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "x", "reply_parameters": {"message_id": 999, "allow_sending_without_reply": true}}),
    );
    assert!(m.get("reply_to_message").is_none());

    let human = tg.send_reply(dm, &alice, "thanks", bot_id);
    let u = updates(&tg, 0);
    let m = &u.last().unwrap()["message"];
    assert_eq!(m["message_id"], human);
    assert_eq!(m["reply_to_message"]["message_id"], bot_id);
    assert_eq!(m["reply_to_message"]["from"]["is_bot"], true);
    assert_eq!(m["reply_to_message"]["text"], "answer");
    assert!(
        m["reply_to_message"].get("reply_to_message").is_none(),
        "one level only, like Telegram"
    );
}

#[test]
fn callback_flow() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    let kb = json!({"inline_keyboard": [[{"text": "✅ Ack", "callback_data": "ack:0123456789abcdef0123456789abcdef"}, {"text": "↩ Reply", "callback_data": "reply:1"}]]});
    let m = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "attention!", "reply_markup": kb}),
    );
    assert_eq!(m["reply_markup"], kb);
    let mid = m["message_id"].as_i64().unwrap() as i32;
    assert_eq!(
        tg.sent(dm)[0].callback_data(),
        vec!["ack:0123456789abcdef0123456789abcdef", "reply:1"]
    );

    let qid = tg.press_button(dm, mid, "ack:0123456789abcdef0123456789abcdef");
    let u = updates(&tg, 0);
    let q = &u[0]["callback_query"];
    assert_eq!(q["id"], qid);
    assert_eq!(q["from"]["id"], 1001);
    assert_eq!(q["data"], "ack:0123456789abcdef0123456789abcdef");
    assert_eq!(q["message"]["message_id"], mid);
    assert_eq!(q["message"]["reply_markup"], kb);
    assert!(q["chat_instance"].is_string());

    ok(
        &tg,
        "answerCallbackQuery",
        json!({"callback_query_id": qid, "text": "Acked"}),
    );
    let (_, d) = err(
        &tg,
        "answerCallbackQuery",
        json!({"callback_query_id": qid}),
    );
    assert_eq!(
        d,
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );
    let answers = tg.callback_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].text.as_deref(), Some("Acked"));
    assert_eq!(
        tg.wait_for_callback_answer(&qid, Duration::from_millis(10))
            .callback_query_id,
        qid
    );

    // callback_data limits: 64 bytes ok, 65 rejected, empty rejected, no action rejected
    let data64 = "x".repeat(64);
    ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "a", "reply_markup": {"inline_keyboard": [[{"text": "b", "callback_data": data64}]]}}),
    );
    for bad in [
        json!({"text": "b", "callback_data": "é".repeat(33)}),
        json!({"text": "b", "callback_data": ""}),
    ] {
        let (_, d) = err(
            &tg,
            "sendMessage",
            json!({"chat_id": 1001, "text": "a", "reply_markup": {"inline_keyboard": [[bad]]}}),
        );
        assert_eq!(d, "Bad Request: BUTTON_DATA_INVALID");
    }
    let (_, d) = err(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "a", "reply_markup": {"inline_keyboard": [[{"text": "b"}]]}}),
    );
    assert!(d.contains("Text buttons are unallowed"), "{d}");
    // reply_markup as a JSON string (form/multipart clients)
    ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "a", "reply_markup": kb.to_string()}),
    );
}

#[test]
#[should_panic(expected = "never had a button")]
fn pressing_a_missing_button_is_a_test_bug() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(1001);
    let m = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "no buttons"}),
    );
    tg.press_button(dm, m["message_id"].as_i64().unwrap() as i32, "ack:1");
}

#[test]
fn edits_are_tracked() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(1001);
    let kb = json!({"inline_keyboard": [[{"text": "Ack", "callback_data": "ack:1"}]]});
    let m = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": 1001, "text": "v1", "reply_markup": kb}),
    );
    let mid = m["message_id"].as_i64().unwrap();
    let e = ok(
        &tg,
        "editMessageText",
        json!({"chat_id": 1001, "message_id": mid, "text": "<i>v2</i>", "parse_mode": "HTML", "reply_markup": kb}),
    );
    assert_eq!(e["text"], "v2");
    assert!(e["edit_date"].is_i64());
    let (_, d) = err(
        &tg,
        "editMessageText",
        json!({"chat_id": 1001, "message_id": mid, "text": "<i>v2</i>", "parse_mode": "HTML", "reply_markup": kb}),
    );
    assert!(d.starts_with("Bad Request: message is not modified"), "{d}");
    // omitting reply_markup removes the keyboard (Telegram semantics)
    ok(
        &tg,
        "editMessageText",
        json!({"chat_id": 1001, "message_id": mid, "text": "v3"}),
    );
    ok(
        &tg,
        "editMessageReplyMarkup",
        json!({"chat_id": 1001, "message_id": mid, "reply_markup": {"inline_keyboard": [[{"text": "✅ Acked", "callback_data": "noop"}]]}}),
    );
    let s = tg.sent_message(dm, mid as i32).unwrap();
    assert_eq!(s.text, "v3");
    assert_eq!(s.button_texts(), vec!["✅ Acked"]);
    let hist: Vec<(String, String, bool)> = s
        .edits
        .iter()
        .map(|e| (e.method.clone(), e.text.clone(), e.reply_markup.is_some()))
        .collect();
    assert_eq!(
        hist,
        vec![
            ("editMessageText".into(), "v2".into(), true),
            ("editMessageText".into(), "v3".into(), false),
            ("editMessageReplyMarkup".into(), "v3".into(), true),
        ]
    );
    assert_eq!(
        err(
            &tg,
            "editMessageText",
            json!({"chat_id": 1001, "message_id": 999, "text": "x"})
        )
        .1,
        "Bad Request: message to edit not found"
    );
    let alice = tg.user(1001, "Alice");
    let hid = tg.send_text(dm, &alice, "mine");
    assert_eq!(
        err(
            &tg,
            "editMessageText",
            json!({"chat_id": 1001, "message_id": hid, "text": "x"})
        )
        .1,
        "Bad Request: message can't be edited"
    );
    ok(
        &tg,
        "deleteMessage",
        json!({"chat_id": 1001, "message_id": mid}),
    );
    assert!(tg.sent_message(dm, mid as i32).unwrap().deleted);
    assert_eq!(
        err(
            &tg,
            "deleteMessage",
            json!({"chat_id": 1001, "message_id": mid})
        )
        .1,
        "Bad Request: message to delete not found"
    );
}

#[test]
fn kicked_bot_gets_my_chat_member_and_403() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    let group = tg.group_chat(-1001000000001, "G");
    tg.bot_kicked(dm);
    let u = updates(&tg, 0);
    let cm = &u[0]["my_chat_member"];
    assert_eq!(cm["chat"]["id"], 1001);
    assert_eq!(cm["from"]["id"], 1001);
    assert_eq!(cm["old_chat_member"]["status"], "member");
    assert_eq!(cm["new_chat_member"]["status"], "kicked");
    assert_eq!(cm["new_chat_member"]["user"]["id"], tg.bot_id());
    assert_eq!(
        err(&tg, "sendMessage", json!({"chat_id": 1001, "text": "x"})),
        (403, "Forbidden: bot was blocked by the user".into())
    );
    // other chats unaffected
    ok(
        &tg,
        "sendMessage",
        json!({"chat_id": group.chat_id, "text": "x"}),
    );
    tg.bot_kicked(group);
    assert_eq!(
        err(
            &tg,
            "sendMessage",
            json!({"chat_id": group.chat_id, "text": "x"})
        )
        .1,
        "Forbidden: bot was kicked from the supergroup chat"
    );
    tg.bot_added(dm);
    ok(&tg, "sendMessage", json!({"chat_id": 1001, "text": "back"}));
}

fn multipart(boundary: &str, text_fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in text_fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: text/plain\r\n\r\n",
            file.0, file.1
        )
        .as_bytes(),
    );
    b.extend_from_slice(file.2);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

#[test]
fn documents_upload_and_download() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let topic = tg.forum_topic(-1002000000000, 7);
    let body = multipart(
        "XyZ",
        &[
            ("chat_id", "-1002000000000"),
            ("message_thread_id", "7"),
            ("caption", "<b>report</b>"),
            ("parse_mode", "HTML"),
        ],
        ("document", "report.txt", b"hello file"),
    );
    let r = raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{}/sendDocument", tg.bot_token()),
        "multipart/form-data; boundary=XyZ",
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = r.json()["result"].clone();
    assert_eq!(m["document"]["file_name"], "report.txt");
    assert_eq!(m["caption"], "report");
    assert_eq!(m["message_thread_id"], 7);
    let s = &tg.sent(topic)[0];
    assert_eq!(s.kind, SentKind::Document);
    assert_eq!(s.file.as_ref().unwrap().bytes, b"hello file");
    assert_eq!(s.text, "report");

    // inbound document → getFile → download
    let dm = tg.private_chat(alice.id);
    tg.send_document(
        dm,
        &alice,
        "notes.md",
        "text/markdown",
        b"# notes",
        Some("see this"),
    );
    let u = updates(&tg, 0);
    let doc = &u[0]["message"]["document"];
    assert_eq!(u[0]["message"]["caption"], "see this");
    let f = ok(&tg, "getFile", json!({"file_id": doc["file_id"]}));
    let path = f["file_path"].as_str().unwrap();
    let r = raw_request(
        tg.addr(),
        "GET",
        &format!("/file/bot{}/{path}", tg.bot_token()),
        "text/plain",
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"# notes".as_slice()));
    assert_eq!(
        err(&tg, "getFile", json!({"file_id": "nope"})).1,
        "Bad Request: invalid file id"
    );
    tg.send_photo(dm, &alice, b"\x89PNG", None);
    let u = updates(&tg, 0);
    assert_eq!(
        u.last().unwrap()["message"]["photo"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let empty = multipart("B", &[("chat_id", "1001")], ("document", "e.txt", b""));
    let r = raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{}/sendDocument", tg.bot_token()),
        "multipart/form-data; boundary=B",
        &empty,
    )
    .unwrap();
    assert_eq!(
        r.json()["description"],
        "Bad Request: file must be non-empty"
    );
}

#[test]
fn second_poller_terminates_the_first_with_409() {
    let tg = FakeTelegram::start();
    let addr = tg.addr();
    let token = tg.bot_token();
    let first = std::thread::spawn(move || {
        raw_request(
            addr,
            "POST",
            &format!("/bot{token}/getUpdates"),
            "application/json",
            br#"{"timeout":10}"#,
        )
        .unwrap()
    });
    tg.wait_for_requests("getUpdates", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let second = ok(&tg, "getUpdates", json!({"timeout": 0}));
    assert_eq!(second, json!([]));
    let r = first.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );

    tg.set_webhook(Some("https://example.invalid/hook"));
    assert_eq!(err(&tg, "getUpdates", json!({})).0, 409);
    ok(&tg, "deleteWebhook", json!({}));
    ok(&tg, "getUpdates", json!({}));
}

#[test]
fn rate_limits_answer_429() {
    let tg = FakeTelegram::start();
    tg.private_chat(1001);
    tg.private_chat(1002);
    let g = tg.group_chat(-1003000000000, "G");
    // generous windows so that a slow CI machine cannot make the test flaky
    tg.set_rate_limits(Some(RateLimits {
        per_chat: Some((1, Duration::from_secs(5))),
        per_group: None,
        ..RateLimits::telegram()
    }));
    ok(&tg, "sendMessage", json!({"chat_id": 1001, "text": "1"}));
    let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 1001, "text": "2"}));
    assert_eq!(status, 429);
    assert_eq!(
        body["description"],
        format!(
            "Too Many Requests: retry after {}",
            body["parameters"]["retry_after"]
        )
    );
    let wait = body["parameters"]["retry_after"].as_i64().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    // another chat is not affected
    ok(&tg, "sendMessage", json!({"chat_id": 1002, "text": "x"}));
    // after the window the chat may send again
    tg.set_rate_limits(Some(RateLimits {
        per_chat: Some((1, Duration::from_millis(200))),
        ..RateLimits::telegram()
    }));
    std::thread::sleep(Duration::from_millis(300));
    ok(&tg, "sendMessage", json!({"chat_id": 1001, "text": "2"}));

    // group: 3 per minute
    tg.set_rate_limits(Some(RateLimits {
        per_chat: None,
        per_group: Some((3, Duration::from_secs(60))),
        ..RateLimits::telegram()
    }));
    for i in 0..3 {
        ok(
            &tg,
            "sendMessage",
            json!({"chat_id": g.chat_id, "text": format!("g{i}")}),
        );
    }
    let (status, body) = call(
        &tg,
        "sendMessage",
        json!({"chat_id": g.chat_id, "text": "g3"}),
    );
    assert_eq!(status, 429);
    let wait = body["parameters"]["retry_after"].as_i64().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert_eq!(tg.sent(g).len(), 3);
    // edits count too
    let (status, _) = call(
        &tg,
        "editMessageText",
        json!({"chat_id": g.chat_id, "message_id": 1, "text": "changed"}),
    );
    assert_eq!(status, 429);
}

#[test]
fn timeout_lost_response_and_outage() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(1001);
    tg.set_timeout_hold(Duration::from_millis(300));
    tg.fail_next("sendMessage", Fault::Timeout, 1);
    let t = Instant::now();
    let r = raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{}/sendMessage", tg.bot_token()),
        "application/json",
        br#"{"chat_id":1001,"text":"x"}"#,
    );
    assert!(r.is_err(), "connection must be dropped without an answer");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(tg.sent(dm).is_empty());
    assert_eq!(tg.requests("sendMessage")[0].status, 0);

    tg.fail_next("sendMessage", Fault::LostResponse, 1);
    let r = raw_request(
        tg.addr(),
        "POST",
        &format!("/bot{}/sendMessage", tg.bot_token()),
        "application/json",
        br#"{"chat_id":1001,"text":"y"}"#,
    );
    assert!(r.is_err());
    assert_eq!(tg.sent(dm).len(), 1, "LostResponse performs the request");

    tg.go_offline();
    assert!(TcpStream::connect(tg.addr()).is_err());
    tg.go_online();
    ok(&tg, "getMe", json!({}));
}

#[test]
fn reactions_actions_commands() {
    let tg = FakeTelegram::start();
    let alice = tg.user(1001, "Alice");
    let dm = tg.private_chat(alice.id);
    let id = tg.send_text(dm, &alice, "hi");
    ok(
        &tg,
        "setMessageReaction",
        json!({"chat_id": 1001, "message_id": id, "reaction": [{"type": "emoji", "emoji": "👀"}]}),
    );
    assert_eq!(tg.reactions(dm, id), vec!["👀"]);
    let (_, d) = err(
        &tg,
        "setMessageReaction",
        json!({"chat_id": 1001, "message_id": id, "reaction": [{"type": "emoji", "emoji": "✅"}]}),
    );
    assert_eq!(d, "Bad Request: REACTION_INVALID");
    ok(
        &tg,
        "setMessageReaction",
        json!({"chat_id": 1001, "message_id": id, "reaction": []}),
    );
    assert!(tg.reactions(dm, id).is_empty());
    ok(
        &tg,
        "sendChatAction",
        json!({"chat_id": 1001, "action": "typing"}),
    );
    assert_eq!(tg.chat_actions()[0].action, "typing");
    assert_eq!(
        err(
            &tg,
            "sendChatAction",
            json!({"chat_id": 1001, "action": "dancing"})
        )
        .0,
        400
    );
    ok(
        &tg,
        "setMyCommands",
        json!({"commands": [{"command": "status", "description": "Group status"}], "scope": {"type": "all_private_chats"}}),
    );
    assert_eq!(
        tg.my_commands()[0].commands,
        vec![("status".to_string(), "Group status".to_string())]
    );
    assert_eq!(
        err(
            &tg,
            "setMyCommands",
            json!({"commands": [{"command": "Bad-Cmd", "description": "x"}]})
        )
        .1,
        "Bad Request: BOT_COMMAND_INVALID"
    );
    let got = ok(
        &tg,
        "getMyCommands",
        json!({"scope": {"type": "all_private_chats"}}),
    );
    assert_eq!(
        got,
        json!([{"command": "status", "description": "Group status"}])
    );
}

#[test]
fn wait_for_sees_changes_from_other_threads() {
    let tg = FakeTelegram::start();
    let dm = tg.private_chat(1001);
    let addr = tg.addr();
    let token = tg.bot_token();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        for i in 0..3 {
            let body = format!(r#"{{"chat_id":1001,"text":"m{i}"}}"#);
            raw_request(
                addr,
                "POST",
                &format!("/bot{token}/sendMessage"),
                "application/json",
                body.as_bytes(),
            )
            .unwrap();
        }
    });
    let sent = tg.wait_for_sent(dm, 3, Duration::from_secs(5));
    assert_eq!(
        sent.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(),
        vec!["m0", "m1", "m2"]
    );
    assert!(!tg.wait_for(|tg| tg.sent(dm).len() > 3, Duration::from_millis(100)));
    h.join().unwrap();
}

#[test]
fn privacy_mode_and_unstarted_users() {
    let tg = FakeTelegram::start();
    let bob = tg.user(2002, "Bob");
    let g = tg.group_chat(-777, "G");
    assert_eq!(
        ok(&tg, "getMe", json!({}))["can_read_all_group_messages"],
        true
    );
    tg.set_privacy_mode(true);
    assert_eq!(
        ok(&tg, "getMe", json!({}))["can_read_all_group_messages"],
        false
    );
    tg.send_text(g, &bob, "ambient chatter");
    tg.send_text(g, &bob, "/status@other_bot");
    let a = tg.send_text(g, &bob, "/status");
    let b = tg.send_text(g, &bob, "hey @CCCC_test_bot look");
    let bot_msg = ok(
        &tg,
        "sendMessage",
        json!({"chat_id": -777, "text": "agent says"}),
    );
    let c = tg.send_reply(
        g,
        &bob,
        "answer",
        bot_msg["message_id"].as_i64().unwrap() as i32,
    );
    let got: Vec<i64> = updates(&tg, 0)
        .iter()
        .map(|u| u["message"]["message_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![a as i64, b as i64, c as i64]);
    assert_eq!(tg.privacy_hidden_count(), 2);
    // a user the bot knows but who never opened a chat with it
    let (status, d) = err(&tg, "sendMessage", json!({"chat_id": 2002, "text": "hi"}));
    assert_eq!(
        (status, d.as_str()),
        (
            403,
            "Forbidden: bot can't initiate conversation with a user"
        )
    );
}

// ----- teloxide-core against the fake -------------------------------------------------------

mod teloxide {
    use super::*;
    use teloxide_core::RequestError;
    use teloxide_core::prelude::*;
    use teloxide_core::types::{
        ChatMemberStatus, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId,
        ParseMode, ReplyParameters, ThreadId, UpdateKind,
    };

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn bot(tg: &FakeTelegram) -> Bot {
        Bot::new(tg.bot_token()).set_api_url(tg.api_url().parse().unwrap())
    }

    #[test]
    fn teloxide_round_trip() {
        let tg = FakeTelegram::start();
        let rt = rt();
        let bot = bot(&tg);
        let alice = tg.user(1001, "Alice");
        let dm = tg.private_chat(alice.id);
        let topic = tg.forum_topic(-1001234567890, 42);

        let me = rt.block_on(bot.get_me().send()).unwrap();
        assert_eq!(me.username(), DEFAULT_BOT_USERNAME);
        rt.block_on(bot.delete_webhook().send()).unwrap();
        rt.block_on(bot.get_webhook_info().send()).unwrap();

        // inbound of every kind, all must parse (teloxide maps parse failures to UpdateKind::Error)
        let q = tg.send_text(dm, &alice, "/status");
        let kb = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Ack", "ack:1")]]);
        let sent = rt
            .block_on(
                bot.send_message(ChatId(1001), "<b>hi</b> &amp; welcome")
                    .parse_mode(ParseMode::Html)
                    .reply_parameters(ReplyParameters::new(MessageId(q)))
                    .reply_markup(kb)
                    .send(),
            )
            .unwrap();
        assert_eq!(sent.text(), Some("hi & welcome"));
        assert_eq!(sent.reply_to_message().unwrap().id, MessageId(q));
        tg.send_reply(dm, &alice, "reply to bot", sent.id.0);
        tg.edit_text(dm, q, "/status edited");
        let cb = tg.press_button(dm, sent.id.0, "ack:1");
        tg.send_text(topic, &alice, "in topic");
        tg.send_document(dm, &alice, "a.txt", "text/plain", b"abc", Some("doc"));
        tg.send_photo(dm, &alice, b"jpg", None);
        tg.bot_kicked(tg.group_chat(-55, "basic"));

        let ups = rt.block_on(bot.get_updates().timeout(1).send()).unwrap();
        assert_eq!(ups.len(), 8);
        for u in &ups {
            assert!(
                !matches!(u.kind, UpdateKind::Error(_)),
                "teloxide could not parse: {u:?}"
            );
        }
        let UpdateKind::Message(m) = &ups[0].kind else {
            panic!()
        };
        assert_eq!(m.text(), Some("/status"));
        assert!(m.chat.is_private());
        let UpdateKind::Message(m) = &ups[1].kind else {
            panic!()
        };
        assert_eq!(m.reply_to_message().unwrap().id, sent.id);
        assert!(matches!(ups[2].kind, UpdateKind::EditedMessage(_)));
        let UpdateKind::CallbackQuery(c) = &ups[3].kind else {
            panic!()
        };
        assert_eq!(c.id.0, cb);
        assert_eq!(c.data.as_deref(), Some("ack:1"));
        assert!(c.message.is_some());
        let UpdateKind::Message(m) = &ups[4].kind else {
            panic!()
        };
        assert_eq!(m.thread_id, Some(ThreadId(MessageId(42))));
        assert!(m.is_topic_message);
        let UpdateKind::Message(m) = &ups[5].kind else {
            panic!()
        };
        assert_eq!(m.document().unwrap().file_name.as_deref(), Some("a.txt"));
        let UpdateKind::Message(m) = &ups[6].kind else {
            panic!()
        };
        assert!(m.photo().is_some());
        let UpdateKind::MyChatMember(cm) = &ups[7].kind else {
            panic!()
        };
        assert_eq!(cm.new_chat_member.status(), ChatMemberStatus::Left);

        rt.block_on(bot.answer_callback_query(c.id.clone()).text("ok").send())
            .unwrap();
        let file = rt
            .block_on(
                bot.get_file(match &ups[5].kind {
                    UpdateKind::Message(m) => m.document().unwrap().file.id.clone(),
                    _ => unreachable!(),
                })
                .send(),
            )
            .unwrap();
        assert_eq!(file.size, 3);

        // topic send, edits, document upload (multipart), reactions, commands, chat action
        let t = rt
            .block_on(
                bot.send_message(ChatId(-1001234567890), "topic reply")
                    .message_thread_id(ThreadId(MessageId(42)))
                    .send(),
            )
            .unwrap();
        assert_eq!(t.thread_id, Some(ThreadId(MessageId(42))));
        rt.block_on(
            bot.edit_message_text(ChatId(1001), sent.id, "edited")
                .send(),
        )
        .unwrap();
        rt.block_on(bot.edit_message_reply_markup(ChatId(1001), sent.id).send())
            .unwrap_err(); // not modified: markup already gone
        let d = rt
            .block_on(
                bot.send_document(
                    ChatId(1001),
                    InputFile::memory(b"report body".to_vec()).file_name("r.txt"),
                )
                .caption("the report")
                .send(),
            )
            .unwrap();
        assert_eq!(d.document().unwrap().file_name.as_deref(), Some("r.txt"));
        let docs: Vec<_> = tg
            .sent(dm)
            .into_iter()
            .filter(|s| s.kind == SentKind::Document)
            .collect();
        assert_eq!(docs[0].file.as_ref().unwrap().bytes, b"report body");
        assert_eq!(docs[0].text, "the report");
        rt.block_on(
            bot.set_message_reaction(ChatId(1001), MessageId(q))
                .reaction(vec![teloxide_core::types::ReactionType::Emoji {
                    emoji: "👀".into(),
                }])
                .send(),
        )
        .unwrap();
        rt.block_on(
            bot.set_my_commands(vec![teloxide_core::types::BotCommand::new(
                "status",
                "Show status",
            )])
            .send(),
        )
        .unwrap();
        rt.block_on(
            bot.send_chat_action(ChatId(1001), teloxide_core::types::ChatAction::Typing)
                .send(),
        )
        .unwrap();
        rt.block_on(bot.get_chat(ChatId(-1001234567890)).send())
            .unwrap();
        rt.block_on(bot.delete_message(ChatId(1001), t.id).send())
            .unwrap_err(); // t is in another chat

        let sent_all = tg.sent(dm);
        assert_eq!(sent_all[0].text, "edited");
        assert_eq!(sent_all[0].edits.len(), 1);
        assert!(
            sent_all[0].reply_markup.is_none(),
            "editMessageText without markup removed the keyboard"
        );
        // teloxide's method spelling is recorded canonically
        assert!(tg.all_requests().iter().any(|r| r.method == "sendMessage"));
    }

    #[test]
    fn teloxide_error_mapping() {
        let tg = FakeTelegram::start();
        let rt = rt();
        let bot = bot(&tg);
        let dm = tg.private_chat(1001);

        tg.fail_next(
            "sendMessage",
            Fault::TooManyRequests {
                retry_after_secs: 5,
            },
            1,
        );
        match rt.block_on(bot.send_message(ChatId(1001), "x").send()) {
            Err(RequestError::RetryAfter(s)) => assert_eq!(s.seconds(), 5),
            other => panic!("{other:?}"),
        }
        match rt.block_on(
            bot.send_message(ChatId(1001), "<b>x")
                .parse_mode(ParseMode::Html)
                .send(),
        ) {
            Err(RequestError::Api(teloxide_core::ApiError::CantParseEntities(m))) => {
                assert!(m.contains("start tag \"b\""))
            }
            other => panic!("{other:?}"),
        }
        match rt.block_on(bot.send_message(ChatId(1001), "x".repeat(4097)).send()) {
            Err(RequestError::Api(teloxide_core::ApiError::MessageIsTooLong)) => {}
            other => panic!("{other:?}"),
        }
        tg.bot_kicked(dm);
        match rt.block_on(bot.send_message(ChatId(1001), "x").send()) {
            Err(RequestError::Api(teloxide_core::ApiError::BotBlocked)) => {}
            other => panic!("{other:?}"),
        }
        tg.fail_next("getUpdates", Fault::Conflict, 1);
        match rt.block_on(bot.get_updates().send()) {
            Err(RequestError::Api(teloxide_core::ApiError::TerminatedByOtherGetUpdates)) => {}
            other => panic!("{other:?}"),
        }
        tg.set_valid_tokens(&[]);
        match rt.block_on(bot.get_me().send()) {
            Err(RequestError::Api(teloxide_core::ApiError::InvalidToken)) => {}
            other => panic!("{other:?}"),
        }
    }
}
