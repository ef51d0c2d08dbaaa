//! The real [`DiscordPlatform`] (serenity REST routes + gateway shard) against the fake Discord.

use std::time::{Duration, Instant};

use bridge_testkit::discord::{DUser, FakeDiscord, Fault, Options, Snowflake, routes};
use cccc_bridge::{ChatTarget, DeliverOpts, Platform, PlatformRef, SendFailure, Update};
use cccc_discord::{ACKED_DATA, DcPiece, DiscordConfig, DiscordPlatform};

const T: Duration = Duration::from_secs(10);

struct World {
    dc: FakeDiscord,
    guild: Snowflake,
    channel: Snowflake,
    alice: DUser,
    rt: tokio::runtime::Runtime,
}

fn world_with(opts: Options) -> World {
    let dc = FakeDiscord::start_with(opts);
    let guild = dc.guild("Team");
    let channel = dc.channels(guild)[0].id;
    let alice = dc.user("alice");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    World { dc, guild, channel, alice, rt }
}

fn world() -> World {
    world_with(Options::default())
}

impl World {
    fn platform_with_token(&self, token: &str) -> DiscordPlatform {
        let mut cfg = DiscordConfig::new(token);
        cfg.api_base = Some(self.dc.api_base());
        cfg.gateway_url = Some(self.dc.gateway_url());
        cfg.poll_wait = Duration::from_millis(500);
        DiscordPlatform::new(cfg)
    }
    fn platform(&self) -> DiscordPlatform {
        let p = self.platform_with_token(&self.dc.token());
        self.rt.block_on(p.verify()).expect("verify");
        p
    }
    fn target(&self) -> ChatTarget {
        ChatTarget::new("discord", self.channel.to_string(), 0)
    }
    /// Poll `next_updates` until `pred` holds over everything collected.
    fn collect(&self, p: &DiscordPlatform, mut pred: impl FnMut(&[Update]) -> bool) -> Vec<Update> {
        let deadline = Instant::now() + T;
        let mut all = Vec::new();
        while !pred(&all) {
            assert!(Instant::now() < deadline, "timed out; collected {all:#?}\ngateway: {:?}", self.dc.gateway_log());
            all.extend(self.rt.block_on(p.next_updates()).expect("next_updates"));
        }
        all
    }
    /// Start the gateway and wait until the session is ready (READY handled).
    fn connected(&self, p: &DiscordPlatform) {
        self.rt.block_on(p.connect()).expect("connect");
        assert!(self.dc.wait_for_identify(1, T));
        // Drain READY-time updates (none expected) so later collections start clean.
        let _ = self.rt.block_on(p.next_updates());
    }
}

fn piece(content: &str, ack: Option<&str>, reply: Option<&str>) -> DcPiece {
    DcPiece { content: content.into(), ack_event: ack.map(Into::into), reply_event: reply.map(Into::into) }
}

fn opts(nonce: &str) -> DeliverOpts {
    DeliverOpts { nonce: nonce.into(), ..Default::default() }
}

fn messages_from(updates: &[Update], author: Snowflake) -> Vec<String> {
    updates
        .iter()
        .filter_map(|u| match u {
            Update::Message(m) if m.author_id == author.to_string() => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn verify_returns_the_bot_and_a_bad_token_is_a_credential_error() {
    let w = world();
    let p = w.platform_with_token(&w.dc.token());
    let me = w.rt.block_on(p.verify()).unwrap();
    assert_eq!((me.id, me.username), (w.dc.bot_id().to_string(), w.dc.bot_name()));
    let bad = w.platform_with_token("wrong-token");
    assert!(matches!(w.rt.block_on(bad.verify()), Err(SendFailure::CredentialRejected(_))));
    // A token reset mid-run: sends fail with a credential error too.
    w.dc.set_token("new-token");
    let r = w.rt.block_on(p.deliver(&w.target(), &piece("x", None, None), &opts("")));
    assert!(matches!(r, Err(SendFailure::CredentialRejected(_))), "{r:?}");
}

#[test]
fn deliver_sends_buttons_nonce_and_never_pings() {
    let w = world();
    let p = w.platform();
    let text = format!("@everyone and <@{}> look", w.alice.id);
    let id = w.rt.block_on(p.deliver(&w.target(), &piece(&text, Some("e1"), Some("e1")), &opts("n000000000000000000000000"))).unwrap();
    let m = w.dc.message(id.parse().unwrap()).unwrap();
    assert_eq!(m.content, text);
    let ids: Vec<String> = m.buttons().into_iter().map(|b| b.custom_id).collect();
    assert_eq!(ids, vec!["ack:e1", "reply:e1"]);
    assert_eq!(m.allowed_mentions, serde_json::json!({"parse": []}));
    assert!(!m.mention_everyone && m.mentions.is_empty(), "nobody is pinged");
    assert!(m.enforce_nonce && m.nonce == serde_json::json!("n000000000000000000000000"));
    // Native reply threading, silent flag.
    let o = DeliverOpts { nonce: "n2".into(), reply_to_message: Some(id.clone()), silent: true };
    let r = w.rt.block_on(p.deliver(&w.target(), &piece("answer", None, None), &o)).unwrap();
    let r = w.dc.message(r.parse().unwrap()).unwrap();
    assert_eq!(r.reply_to, Some(id.parse().unwrap()));
    assert!(r.buttons().is_empty());
    let notice = w.rt.block_on(p.notice(&w.target(), &"y".repeat(3000), None)).unwrap();
    assert_eq!(w.dc.message(notice.parse().unwrap()).unwrap().content.chars().count(), 2000, "notices are clamped");
}

#[test]
fn the_same_nonce_after_a_crash_posts_one_message() {
    let w = world();
    let p = w.platform();
    let first = w.rt.block_on(p.deliver(&w.target(), &piece("part 1", None, None), &opts("abcdef0123456789abcdef012"))).unwrap();
    drop(p); // "crash" after Discord stored it but before the outbox recorded the id
    let p2 = w.platform();
    let again = w.rt.block_on(p2.deliver(&w.target(), &piece("part 1", None, None), &opts("abcdef0123456789abcdef012"))).unwrap();
    assert_eq!(first, again);
    assert_eq!(w.dc.bot_messages(w.channel).len(), 1);
    assert_eq!(w.dc.requests(routes::CREATE_MESSAGE).len(), 2);
}

#[test]
fn failures_are_classified_for_the_outbox() {
    let w = world();
    let p = w.platform();
    let send = |n: &str| w.rt.block_on(p.deliver(&w.target(), &piece("x", None, None), &opts(n)));
    w.dc.fail_next(routes::CREATE_MESSAGE, Fault::TooManyRequests { retry_after: 0.5, global: false }, 1);
    assert_eq!(send("a"), Err(SendFailure::RetryAfter { retry_after_ms: 500 }));
    assert!(w.dc.bot_messages(w.channel).is_empty());
    // The bucket is spent (X-RateLimit-Remaining: 0): until its reset nothing is sent at all,
    // the platform answers "retry after" itself.
    let requests = w.dc.requests(routes::CREATE_MESSAGE).len();
    match send("a") {
        Err(SendFailure::RetryAfter { retry_after_ms }) => assert!((1..=501).contains(&retry_after_ms), "{retry_after_ms}"),
        other => panic!("a spent bucket must wait: {other:?}"),
    }
    assert_eq!(w.dc.requests(routes::CREATE_MESSAGE).len(), requests, "no request while the bucket is spent");
    std::thread::sleep(Duration::from_millis(550));
    w.dc.fail_next(routes::CREATE_MESSAGE, Fault::TooManyRequests { retry_after: 0.3, global: true }, 1);
    assert_eq!(send("a"), Err(SendFailure::RetryAfter { retry_after_ms: 300 }));
    std::thread::sleep(Duration::from_millis(350));
    w.dc.fail_next(routes::CREATE_MESSAGE, Fault::ServerError(502), 1);
    assert!(matches!(send("a"), Err(SendFailure::Transient(_))));
    w.dc.fail_next(routes::CREATE_MESSAGE, Fault::Forbidden { code: 50013, message: "Missing Permissions".into() }, 1);
    assert!(matches!(send("a"), Err(SendFailure::ChatGone(_))));
    assert!(send("a").is_ok());
    let too_long = w.rt.block_on(p.deliver(&w.target(), &piece(&"z".repeat(2001), None, None), &opts("b")));
    assert!(matches!(too_long, Err(SendFailure::Rejected(_))), "{too_long:?}");
    w.dc.delete_channel(w.channel);
    assert!(matches!(send("c"), Err(SendFailure::ChatGone(_))));
}

#[test]
fn button_press_is_acknowledged_within_the_deadline_and_acked_flips_the_button() {
    let w = world();
    let p = w.platform();
    w.connected(&p);
    let mid = w.rt.block_on(p.deliver(&w.target(), &piece("⚠️ look", Some("e1"), Some("e1")), &opts("n1"))).unwrap();
    let mid: Snowflake = mid.parse().unwrap();
    let press = w.dc.press_button(w.channel, mid, &w.alice, "ack:e1");
    let updates = w.collect(&p, |u| u.iter().any(|x| matches!(x, Update::Button { .. })));
    let (at, data, user_id, user_name, cb) = updates
        .iter()
        .find_map(|u| match u {
            Update::Button { at, data, user_id, user_name, callback_id } => Some((at.clone(), data.clone(), user_id.clone(), user_name.clone(), callback_id.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(at, PlatformRef { target: w.target(), message_id: mid.to_string() });
    assert_eq!((data.as_str(), user_id, user_name.as_str()), ("ack:e1", w.alice.id.to_string(), "alice"));
    assert!(cb.starts_with(&format!("{press}:")));
    // The platform answered before the runner did anything: a deferred update within 3 s.
    let r = w.dc.wait_for_interaction_response(press, T);
    assert_eq!(r.kind, 6);
    assert!(r.latency < Duration::from_secs(3), "{:?}", r.latency);
    // The runner's answer arrives as an ephemeral followup.
    w.rt.block_on(p.answer_button(&cb, "Acked")).unwrap();
    let followup = w.dc.bot_messages(w.channel).into_iter().find(|m| m.interaction_id == Some(press)).expect("followup");
    assert!(followup.ephemeral() && followup.content == "Acked");
    // mark_acked: Ack → disabled "✓ Acked by alice", the Reply button stays.
    w.rt.block_on(p.mark_acked(&at, "alice")).unwrap();
    let b = w.dc.message(mid).unwrap().buttons();
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].custom_id.as_str(), b[0].label.as_str(), b[0].disabled), (ACKED_DATA, "✓ Acked by alice", true));
    assert_eq!(b[1].custom_id, "reply:e1");
    w.rt.block_on(p.mark_acked(&at, "bob")).unwrap();
    assert_eq!(w.dc.message(mid).unwrap().edits.len(), 1, "a second mark_acked changes nothing");
    w.rt.block_on(p.shutdown());
}

#[test]
fn reply_button_opens_a_modal_and_the_submit_becomes_a_form_reply() {
    let w = world();
    let p = w.platform();
    w.connected(&p);
    let mid: Snowflake = w.rt.block_on(p.deliver(&w.target(), &piece("answer me", None, Some("ev42")), &opts("n1"))).unwrap().parse().unwrap();
    let press = w.dc.press_button(w.channel, mid, &w.alice, "reply:ev42");
    let r = w.dc.wait_for_interaction_response(press, T);
    assert_eq!(r.kind, 9, "the platform answers with a modal itself");
    assert!(r.latency < Duration::from_secs(3));
    let (modal_id, _, fields) = w.dc.modal(press).unwrap();
    assert_eq!(modal_id, "reply:ev42");
    let submit = w.dc.submit_modal(press, &w.alice, &[(&fields[0].custom_id, "here is my answer")]);
    assert!(w.dc.wait_for(T, |_| !w.dc.interaction_responses(submit).is_empty()));
    let mut updates = Vec::new();
    let deadline = std::time::Instant::now() + T;
    let form = loop {
        updates.extend(w.rt.block_on(p.next_updates()).unwrap());
        if let Some(u) = updates.iter().find(|u| matches!(u, Update::FormReply { .. })) {
            break u.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no FormReply: {updates:?}");
    };
    let Update::FormReply { at, event_id, text, user_name, callback_id, .. } = form else { unreachable!() };
    assert_eq!((event_id.as_str(), text.as_str(), user_name.as_str()), ("ev42", "here is my answer", "alice"));
    assert_eq!(at.message_id, mid.to_string());
    assert_eq!(w.dc.interaction_responses(submit)[0].kind, 6);
    // The Reply press itself never reached the runner as a Button.
    assert!(!updates.iter().any(|u| matches!(u, Update::Button { .. })), "{updates:?}");
    w.rt.block_on(p.answer_button(&callback_id, "Reply sent")).unwrap();
    assert!(w.dc.bot_messages(w.channel).iter().any(|m| m.interaction_id == Some(submit) && m.ephemeral() && m.content == "Reply sent"));
    w.rt.block_on(p.shutdown());
}

#[test]
fn inbound_messages_map_replies_mentions_and_bots() {
    let w = world();
    let p = w.platform();
    w.connected(&p);
    let bot_msg = w.rt.block_on(p.deliver(&w.target(), &piece("from the agent", None, None), &opts("n1"))).unwrap();
    w.dc.user_says(w.channel, &w.alice, &format!("<@{}> hello", w.dc.bot_id()));
    let reply = w.dc.user_replies(w.channel, &w.alice, "my answer", bot_msg.parse().unwrap());
    let other = w.dc.other_bot("otherbot");
    w.dc.user_says(w.channel, &other, "beep");
    let ups = w.collect(&p, |u| u.iter().filter(|x| matches!(x, Update::Message(_))).count() >= 4);
    let msgs: Vec<_> = ups.iter().filter_map(|u| if let Update::Message(m) = u { Some(m.clone()) } else { None }).collect();
    let own = &msgs[0];
    assert!(own.from_bot && own.text.contains("from the agent"), "the bot's own message comes back as from_bot");
    let hello = &msgs[1];
    assert_eq!(hello.text, format!("@{} hello", w.dc.bot_name()));
    assert!(!hello.direct && !hello.from_bot && !hello.edited);
    assert_eq!(hello.target, w.target());
    assert_eq!(hello.author_name, "alice");
    assert_eq!(hello.chat_title, "Team #general");
    let r = &msgs[2];
    assert_eq!(r.message_id, reply.to_string());
    assert_eq!(r.reply_to_message.as_deref(), Some(bot_msg.as_str()));
    assert!(r.reply_to_bot);
    assert!(msgs[3].from_bot && msgs[3].author_name == "otherbot");
    w.rt.block_on(p.shutdown());
}

#[test]
fn reconnect_and_network_loss_resume_without_losing_messages() {
    let w = world();
    let p = w.platform();
    w.connected(&p);
    w.dc.user_says(w.channel, &w.alice, "one");
    w.dc.force_reconnect();
    w.dc.user_says(w.channel, &w.alice, "two");
    assert!(w.dc.wait_for_resume(1, T), "{:?}", w.dc.gateway_log());
    w.dc.drop_connection();
    w.dc.user_says(w.channel, &w.alice, "three");
    assert!(w.dc.wait_for_resume(2, Duration::from_secs(20)), "{:?}", w.dc.gateway_log());
    w.dc.user_says(w.channel, &w.alice, "four");
    let ups = w.collect(&p, |u| messages_from(u, w.alice.id).len() >= 4);
    assert_eq!(messages_from(&ups, w.alice.id), vec!["one", "two", "three", "four"]);
    assert_eq!(w.dc.identify_count(), 1, "resumed both times");
    w.rt.block_on(p.shutdown());
}

#[test]
fn gateway_rejections_are_credential_errors_with_clear_text() {
    let w = world();
    // REST accepts nothing but the gateway is the first thing that runs here.
    let bad = w.platform_with_token("not-the-token");
    let r = w.rt.block_on(async {
        loop {
            match bad.next_updates().await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        }
    });
    assert!(matches!(&r, SendFailure::CredentialRejected(m) if m.contains("token")), "{r:?}");
    let w2 = world_with(Options { message_content_intent: false, ..Options::default() });
    let p = w2.platform();
    let r = w2.rt.block_on(async {
        loop {
            match p.next_updates().await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        }
    });
    assert!(matches!(&r, SendFailure::CredentialRejected(m) if m.contains("MESSAGE_CONTENT intent not enabled")), "{r:?}");
    assert!(p.gateway_error().is_some());
}

#[test]
fn group_channels_are_found_created_and_renamed() {
    let w = world();
    let p = w.platform();
    let g = w.guild.to_string();
    let general = w.rt.block_on(p.ensure_group_channel(&g, None, "General")).unwrap();
    assert_eq!(general, w.channel.to_string(), "an existing channel is found by its normalised name");
    let c = w.rt.block_on(p.ensure_group_channel(&g, Some("CCCC"), "My Group")).unwrap();
    let chans = w.dc.channels(w.guild);
    assert_eq!(chans.len(), 3);
    let created = chans.iter().find(|x| x.id.to_string() == c).unwrap();
    let cat = chans.iter().find(|x| x.kind == 4).unwrap();
    assert_eq!((created.name.as_str(), created.parent_id), ("my-group", Some(cat.id)));
    assert_eq!(cat.name, "CCCC");
    let again = w.rt.block_on(p.ensure_group_channel(&g, Some("cccc"), "my group")).unwrap();
    assert_eq!(again, c);
    assert_eq!(w.dc.channels(w.guild).len(), 3, "nothing new created");
    assert_eq!(w.rt.block_on(p.rename_channel(&c, "Renamed Group")).unwrap(), "renamed-group");
    assert_eq!(w.rt.block_on(p.ensure_group_channel(&g, Some("CCCC"), "renamed group")).unwrap(), c);
    assert!(matches!(w.rt.block_on(p.ensure_group_channel("123", None, "x")), Err(SendFailure::Rejected(_)) | Err(SendFailure::ChatGone(_))));
}
