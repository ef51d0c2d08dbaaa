//! The fake behaves like Discord: raw HTTP checks of the wire format, and serenity (REST client,
//! models and a real gateway shard) driven against it.

use super::*;
use serde_json::{Value, json};
use serenity::all as sy;
use std::io::{Read, Write};
use std::sync::Mutex as StdMutex;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// A minimal blocking HTTP/1.1 client: `(status, headers (lowercase), JSON body or Null)`.
fn raw(dc: &FakeDiscord, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Vec<(String, String)>, Value) {
    let addr = dc.api_base().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bot {t}\r\n")).unwrap_or_default();
    write!(s, "{method} /api/v10{path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    let v = if rest.trim().is_empty() { Value::Null } else { serde_json::from_str(rest).unwrap_or(Value::String(rest.to_string())) };
    (status, headers, v)
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn http(dc: &FakeDiscord) -> sy::Http {
    sy::HttpBuilder::new(dc.token()).proxy(dc.api_base()).ratelimiter_disabled(true).build()
}

#[test]
fn bad_or_missing_token_gets_discords_401() {
    let dc = FakeDiscord::start();
    let (st, _, body) = raw(&dc, "GET", "/users/@me", Some("wrong"), None);
    assert_eq!(st, 401);
    assert_eq!(body, json!({"message": "401: Unauthorized", "code": 0}));
    let (st, _, _) = raw(&dc, "GET", "/users/@me", None, None);
    assert_eq!(st, 401);
    let (st, _, body) = raw(&dc, "GET", "/users/@me", Some(&dc.token()), None);
    assert_eq!(st, 200);
    assert_eq!(body["id"], json!(dc.bot_id().to_string()));
    assert_eq!(body["bot"], json!(true));
    assert!(!dc.requests(routes::GET_ME)[0].authorized && dc.requests(routes::GET_ME)[2].authorized);
}

#[test]
fn gateway_discovery_points_at_the_fake_websocket() {
    let dc = FakeDiscord::start();
    let (st, _, body) = raw(&dc, "GET", "/gateway/bot", Some(&dc.token()), None);
    assert_eq!(st, 200);
    assert_eq!(body["url"], json!(dc.gateway_url()));
    assert_eq!(body["shards"], json!(1));
    assert!(body["session_start_limit"]["max_concurrency"].is_number());
}

#[test]
fn enforce_nonce_returns_the_original_message() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let ch = dc.channels(g)[0].id;
    let tok = dc.token();
    let body = json!({"content": "hi", "nonce": "n-1", "enforce_nonce": true, "allowed_mentions": {"parse": []}});
    let (s1, _, m1) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(body.clone()));
    let (s2, _, m2) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(body));
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(m1["id"], m2["id"], "same nonce → same message");
    assert_eq!(dc.bot_messages(ch).len(), 1);
    // Without enforce_nonce the nonce is only echoed: a second message is created.
    let body = json!({"content": "hi", "nonce": "n-1"});
    raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(body));
    assert_eq!(dc.bot_messages(ch).len(), 2);
    // Too long a nonce is a form error.
    let (st, _, e) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(json!({"content": "x", "nonce": "a".repeat(26)})));
    assert_eq!((st, e["code"].clone()), (400, json!(50035)));
}

#[test]
fn message_validation_matches_discord() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let ch = dc.channels(g)[0].id;
    let tok = dc.token();
    let post = |b: Value| raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(b));
    let (st, _, e) = post(json!({"content": "x".repeat(2001)}));
    assert_eq!((st, e["code"].clone()), (400, json!(50035)));
    assert_eq!(e["errors"]["content"]["_errors"][0]["code"], json!("BASE_TYPE_MAX_LENGTH"));
    assert_eq!(post(json!({"content": "é".repeat(2000)})).0, 200, "2000 characters fit");
    assert_eq!(post(json!({"content": ""})).2["code"], json!(50006));
    let dup = json!([{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "A", "custom_id": "x"}, {"type": 2, "style": 1, "label": "B", "custom_id": "x"}]}]);
    assert_eq!(post(json!({"content": "c", "components": dup})).0, 400);
    let long_id = json!([{"type": 1, "components": [{"type": 2, "style": 1, "label": "A", "custom_id": "x".repeat(101)}]}]);
    assert_eq!(post(json!({"content": "c", "components": long_id})).0, 400);
    assert_eq!(post(json!({"content": "r", "message_reference": {"message_id": "123"}})).0, 400);
    let (st, _, e) = raw(&dc, "POST", "/channels/42/messages", Some(&tok), Some(json!({"content": "x"})));
    assert_eq!((st, e["code"].clone()), (404, json!(10003)));
}

#[test]
fn allowed_mentions_decide_who_is_pinged() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let ch = dc.channels(g)[0].id;
    let alice = dc.user("alice");
    let tok = dc.token();
    let text = format!("@everyone look <@{}>", alice.id);
    raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(json!({"content": text})));
    raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(json!({"content": text, "allowed_mentions": {"parse": []}})));
    let m = dc.bot_messages(ch);
    assert!(m[0].mention_everyone && m[0].mentions == vec![alice.id], "no allowed_mentions: everything pings");
    assert!(!m[1].mention_everyone && m[1].mentions.is_empty(), "parse: [] pings nobody");
}

#[test]
fn injected_429_has_discords_body_and_headers_and_performs_nothing() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let ch = dc.channels(g)[0].id;
    dc.fail_next(routes::CREATE_MESSAGE, Fault::TooManyRequests { retry_after: 2.5, global: false }, 1);
    let (st, h, body) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&dc.token()), Some(json!({"content": "x"})));
    assert_eq!(st, 429);
    assert_eq!(body["retry_after"], json!(2.5));
    assert_eq!(body["global"], json!(false));
    assert_eq!(header(&h, "retry-after"), Some("3"));
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&h, "x-ratelimit-scope"), Some("user"));
    assert!(header(&h, "x-ratelimit-bucket").is_some());
    assert!(dc.bot_messages(ch).is_empty());
    let (st, h, _) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&dc.token()), Some(json!({"content": "x"})));
    assert_eq!(st, 200);
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("4"));
    assert_eq!(dc.requests(routes::CREATE_MESSAGE).iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);
    dc.fail_next(routes::CREATE_MESSAGE, Fault::ServerError(502), 1);
    assert_eq!(raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&dc.token()), Some(json!({"content": "x"}))).0, 502);
}

#[test]
fn channels_are_created_normalised_found_and_renamed() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let tok = dc.token();
    let (st, _, cat) = raw(&dc, "POST", &format!("/guilds/{g}/channels"), Some(&tok), Some(json!({"name": "CCCC Groups", "type": 4})));
    assert_eq!(st, 201);
    assert_eq!(cat["name"], json!("CCCC Groups"), "categories keep their case");
    let (_, _, c) = raw(&dc, "POST", &format!("/guilds/{g}/channels"), Some(&tok), Some(json!({"name": "My Group!", "type": 0, "parent_id": cat["id"]})));
    assert_eq!(c["name"], json!("my-group"));
    assert_eq!(c["parent_id"], cat["id"]);
    let (_, _, list) = raw(&dc, "GET", &format!("/guilds/{g}/channels"), Some(&tok), None);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let id = c["id"].as_str().unwrap();
    let (_, _, r) = raw(&dc, "PATCH", &format!("/channels/{id}"), Some(&tok), Some(json!({"name": "renamed group"})));
    assert_eq!(r["name"], json!("renamed-group"));
    dc.delete_channel(id.parse().unwrap());
    assert_eq!(raw(&dc, "GET", &format!("/channels/{id}"), Some(&tok), None).0, 404);
}

#[test]
fn interaction_callbacks_enforce_the_deadline_and_single_ack() {
    let dc = FakeDiscord::start();
    let g = dc.guild("G");
    let ch = dc.channels(g)[0].id;
    let alice = dc.user("alice");
    let tok = dc.token();
    let row = json!([{"type": 1, "components": [{"type": 2, "style": 1, "label": "Reply", "custom_id": "reply:e1"}]}]);
    let (_, _, m) = raw(&dc, "POST", &format!("/channels/{ch}/messages"), Some(&tok), Some(json!({"content": "q?", "components": row})));
    let mid: u64 = m["id"].as_str().unwrap().parse().unwrap();
    let i = dc.press_button(ch, mid, &alice, "reply:e1");
    let itok = dc.shared.with(|s| s.interactions[&i].token.clone());
    let modal = json!({"type": 9, "data": {"custom_id": "m:e1", "title": "Reply", "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": "text", "label": "Your reply", "style": 2}]}]}});
    let (st, _, body) = raw(&dc, "POST", &format!("/interactions/{i}/{itok}/callback"), None, Some(modal.clone()));
    assert_eq!((st, body), (204, Value::Null));
    let (st, _, e) = raw(&dc, "POST", &format!("/interactions/{i}/{itok}/callback"), None, Some(json!({"type": 6})));
    assert_eq!((st, e["code"].clone()), (400, json!(40060)));
    let sub = dc.submit_modal(i, &alice, &[("text", "my answer")]);
    let sub_tok = dc.shared.with(|s| s.interactions[&sub].token.clone());
    assert_eq!(raw(&dc, "POST", &format!("/interactions/{sub}/{sub_tok}/callback"), None, Some(modal)).0, 400, "no modal for a modal");
    // Followup before any ack is unknown; after a deferred ack it posts an ephemeral message.
    let app = dc.application_id();
    assert_eq!(raw(&dc, "POST", &format!("/webhooks/{app}/{sub_tok}"), None, Some(json!({"content": "x"}))).0, 404);
    assert_eq!(raw(&dc, "POST", &format!("/interactions/{sub}/{sub_tok}/callback"), None, Some(json!({"type": 6}))).0, 204);
    assert_eq!(raw(&dc, "POST", &format!("/webhooks/{app}/{sub_tok}"), None, Some(json!({"content": "sent", "flags": 64}))).0, 200);
    let last = dc.bot_messages(ch).pop().unwrap();
    assert!(last.ephemeral() && last.interaction_id == Some(sub));
    // Late first answer: 10062.
    let late = dc.press_button(ch, mid, &alice, "reply:e1");
    dc.shared.mutate(|s| s.interactions.get_mut(&late).unwrap().created -= Duration::from_secs(4));
    let ltok = dc.shared.with(|s| s.interactions[&late].token.clone());
    let (st, _, e) = raw(&dc, "POST", &format!("/interactions/{late}/{ltok}/callback"), None, Some(json!({"type": 6})));
    assert_eq!((st, e["code"].clone()), (404, json!(10062)));
}

#[test]
fn serenity_http_parses_every_answer() {
    let dc = FakeDiscord::start();
    let g = dc.guild("Team");
    let alice = dc.user("alice");
    let http = http(&dc);
    rt().block_on(async {
        let me = http.get_current_user().await.expect("current user");
        assert_eq!(me.id.get(), dc.bot_id());
        let gw = http.get_bot_gateway().await.expect("gateway/bot");
        assert_eq!(gw.url, dc.gateway_url());
        let chans = http.get_channels(sy::GuildId::new(g)).await.expect("channels");
        assert_eq!(chans[0].name, "general");
        let ch = chans[0].id;
        let msg = ch
            .send_message(
                &http,
                sy::CreateMessage::new()
                    .content("hello <@1>")
                    .button(sy::CreateButton::new("ack:e1").label("Ack"))
                    .allowed_mentions(sy::CreateAllowedMentions::new())
                    .nonce(sy::Nonce::String("abc".into()))
                    .enforce_nonce(true),
            )
            .await
            .expect("send");
        assert_eq!(msg.content, "hello <@1>");
        let again = ch.send_message(&http, sy::CreateMessage::new().content("other").nonce(sy::Nonce::String("abc".into())).enforce_nonce(true)).await.unwrap();
        assert_eq!(again.id, msg.id, "serenity sees the original message back");
        let mid = dc.user_replies(ch.get(), &alice, "reply", msg.id.get());
        let reply = http.get_message(ch, sy::MessageId::new(mid)).await.expect("get message");
        assert_eq!(reply.referenced_message.as_ref().map(|m| m.id), Some(msg.id));
        let edited = ch.edit_message(&http, msg.id, sy::EditMessage::new().components(vec![])).await.expect("edit");
        assert!(edited.components.is_empty());
        let created = sy::GuildId::new(g).create_channel(&http, sy::CreateChannel::new("New One").kind(sy::ChannelType::Text)).await.expect("create");
        assert_eq!(created.name, "new-one");
        let err = sy::ChannelId::new(1).say(&http, "x").await.unwrap_err();
        match err {
            sy::Error::Http(sy::HttpError::UnsuccessfulRequest(r)) => assert_eq!((r.status_code.as_u16(), r.error.code), (404, 10003)),
            e => panic!("unexpected {e:?}"),
        }
    });
}

#[test]
fn serenity_models_accept_the_gateway_payloads() {
    let dc = FakeDiscord::start();
    let g = dc.guild("Team");
    let ch = dc.channels(g)[0].id;
    let alice = dc.user("alice");
    let m = dc.user_says(ch, &alice, "hi");
    let guild = dc.shared.with(|s| s.guild_json(&s.guilds[&g]));
    serde_json::from_value::<sy::Guild>(guild).expect("GUILD_CREATE parses");
    let msg = dc.shared.with(|s| s.message_json(s.find_message(m).unwrap()));
    serde_json::from_value::<sy::Message>(msg).expect("MESSAGE_CREATE parses");
    let row = json!([{"type": 1, "components": [{"type": 2, "style": 1, "label": "Ack", "custom_id": "ack:1"}]}]);
    let bot = dc.shared.with(|s| s.bot.clone());
    let bm = dc.shared.mutate(|s| s.create_message(ch, &bot, &json!({"content": "a", "components": row}), None).unwrap());
    let bm: u64 = bm["id"].as_str().unwrap().parse().unwrap();
    let i = dc.press_button(ch, bm, &alice, "ack:1");
    let iv = dc.shared.with(|s| s.interaction_json(&s.interactions[&i]));
    match serde_json::from_value::<sy::Interaction>(iv).expect("component interaction parses") {
        sy::Interaction::Component(c) => assert_eq!(c.data.custom_id, "ack:1"),
        other => panic!("{other:?}"),
    }
    dc.shared.with(|s| s.interactions[&i].id);
    let ready = dc.shared.mutate(|s| {
        let sid = s.identify(99, &s.token.clone(), 1 | (1 << 9) | (1 << 15)).unwrap();
        s.sessions[&sid].events[0].2.clone()
    });
    serde_json::from_value::<sy::Ready>(ready).expect("READY parses");
}

/// Events a serenity handler saw, for the gateway tests.
#[derive(Default)]
struct Seen {
    messages: StdMutex<Vec<String>>,
    buttons: StdMutex<Vec<String>>,
}

struct Handler(Arc<Seen>);

#[serenity::async_trait]
impl sy::EventHandler for Handler {
    async fn message(&self, _: sy::Context, m: sy::Message) {
        self.0.messages.lock().unwrap().push(m.content);
    }
    async fn interaction_create(&self, ctx: sy::Context, i: sy::Interaction) {
        if let sy::Interaction::Component(c) = i {
            self.0.buttons.lock().unwrap().push(c.data.custom_id.clone());
            let _ = c.create_response(&ctx.http, sy::CreateInteractionResponse::Acknowledge).await;
        }
    }
}

async fn client(dc: &FakeDiscord, token: &str, intents: sy::GatewayIntents, seen: Arc<Seen>) -> sy::Client {
    let http = sy::HttpBuilder::new(token).proxy(dc.api_base()).ratelimiter_disabled(true).build();
    let client = sy::ClientBuilder::new_with_http(http, intents).event_handler(Handler(seen)).await.expect("client");
    *client.ws_url.lock().await = dc.gateway_url();
    client
}

fn intents() -> sy::GatewayIntents {
    sy::GatewayIntents::GUILDS | sy::GatewayIntents::GUILD_MESSAGES | sy::GatewayIntents::MESSAGE_CONTENT
}

#[test]
fn serenity_shard_receives_messages_and_interactions_and_resumes_without_loss() {
    let dc = FakeDiscord::start();
    let g = dc.guild("Team");
    let ch = dc.channels(g)[0].id;
    let alice = dc.user("alice");
    let seen = Arc::new(Seen::default());
    let rt = rt();
    let mut client = rt.block_on(client(&dc, &dc.token(), intents(), seen.clone()));
    let shards = client.shard_manager.clone();
    let task = rt.spawn(async move { client.start().await });
    assert!(dc.wait_for_identify(1, T));
    dc.user_says(ch, &alice, "one");
    assert!(dc.wait_for(T, |_| seen.messages.lock().unwrap().len() == 1));
    // op 7: serenity reconnects and resumes; a message sent in between is replayed.
    dc.force_reconnect();
    dc.user_says(ch, &alice, "two");
    assert!(dc.wait_for_resume(1, T), "log: {:?}", dc.gateway_log());
    dc.user_says(ch, &alice, "three");
    assert!(dc.wait_for(T, |_| seen.messages.lock().unwrap().len() == 3), "{:?}", seen.messages.lock().unwrap());
    // Network loss: the TCP connection vanishes; serenity notices and resumes.
    dc.drop_connection();
    dc.user_says(ch, &alice, "four");
    assert!(dc.wait_for_resume(2, Duration::from_secs(20)), "log: {:?}", dc.gateway_log());
    assert!(dc.wait_for(T, |_| seen.messages.lock().unwrap().len() == 4));
    // serenity calls its handler in one task per event, so the order it sees is not the wire
    // order (the bridge restores it by snowflake); what matters here is that nothing is lost.
    let mut got = seen.messages.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec!["four", "one", "three", "two"]);
    assert_eq!(dc.identify_count(), 1, "resumed, never re-identified");
    // Interactions reach the handler and its 204 ack is recorded.
    let bot = dc.shared.with(|s| s.bot.clone());
    let row = json!([{"type": 1, "components": [{"type": 2, "style": 1, "label": "Ack", "custom_id": "ack:9"}]}]);
    let bm = dc.shared.mutate(|s| s.create_message(ch, &bot, &json!({"content": "a", "components": row}), None).unwrap());
    let i = dc.press_button(ch, bm["id"].as_str().unwrap().parse().unwrap(), &alice, "ack:9");
    let r = dc.wait_for_interaction_response(i, T);
    assert_eq!(r.kind, 6);
    assert!(r.latency < Duration::from_secs(3));
    rt.block_on(shards.shutdown_all());
    let _ = rt.block_on(task);
}

#[test]
fn gateway_rejects_a_bad_token_with_4004_and_a_disabled_intent_with_4014() {
    let dc = FakeDiscord::start_with(Options { message_content_intent: false, ..Options::default() });
    let rt = rt();
    let mut bad = rt.block_on(client(&dc, "not-the-token", sy::GatewayIntents::GUILDS, Arc::default()));
    let r = rt.block_on(async { tokio::time::timeout(T, bad.start()).await.expect("start returns") });
    assert!(matches!(r, Err(sy::Error::Gateway(sy::GatewayError::InvalidAuthentication))), "{r:?}");
    let mut no_intent = rt.block_on(client(&dc, &dc.token(), intents(), Arc::default()));
    let r = rt.block_on(async { tokio::time::timeout(T, no_intent.start()).await.expect("start returns") });
    assert!(matches!(r, Err(sy::Error::Gateway(sy::GatewayError::DisallowedGatewayIntents))), "{r:?}");
    assert!(dc.gateway_log().iter().any(|r| matches!(r, GatewayRecord::ClosedByServer { code: Some(4014), .. })));
}

#[test]
fn without_message_content_guild_messages_arrive_empty_unless_they_mention_the_bot() {
    let dc = FakeDiscord::start();
    let g = dc.guild("Team");
    let ch = dc.channels(g)[0].id;
    let alice = dc.user("alice");
    let sid = dc.shared.mutate(|s| s.identify(1, &s.token.clone(), 1 | (1 << 9)).unwrap());
    dc.user_says(ch, &alice, "ambient");
    dc.user_says(ch, &alice, &format!("<@{}> hi", dc.bot_id()));
    let contents: Vec<String> = dc.shared.with(|s| {
        s.sessions[&sid].events.iter().filter(|e| e.1 == "MESSAGE_CREATE").map(|e| e.2["content"].as_str().unwrap().to_string()).collect()
    });
    assert_eq!(contents, vec!["".to_string(), format!("<@{}> hi", dc.bot_id())]);
}

#[test]
fn resume_of_an_invalidated_session_gets_op9() {
    let dc = FakeDiscord::start();
    let tok = dc.token();
    let sid = dc.shared.mutate(|s| s.identify(1, &tok, 1).unwrap());
    assert!(dc.shared.mutate(|s| s.resume(2, &tok, &sid, 1)).is_ok());
    dc.shared.mutate(|s| s.sessions.get_mut(&sid).unwrap().valid = false);
    assert!(dc.shared.mutate(|s| s.resume(3, &tok, &sid, 1)).is_err());
    assert_eq!(dc.shared.mutate(|s| s.resume(3, "bad", &sid, 1)), Err(4004));
    assert_eq!(normalize_channel_name("  Hello   World?! ", 0), "hello-world");
}
