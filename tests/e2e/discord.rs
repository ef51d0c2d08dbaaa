//! The Discord bridge end to end: the real daemon supervises the real bridge process
//! (`cccc __im-bridge --platform discord`), which talks to the fake Discord REST + Gateway in
//! this test process. One group mirrored to Telegram and Discord at once is tested here too.

use crate::support::{Daemon, group_with_actors, of_kind, wait_until};
use bridge_testkit::discord::{DMessage, FakeDiscord, Snowflake};
use bridge_testkit::telegram::FakeTelegram;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const DC_ENV: &str = "CCCC_E2E_DC_TOKEN";
const TG_ENV: &str = "CCCC_E2E_TG_TOKEN_MIX";
const T: Duration = Duration::from_secs(30);

fn home() -> PathBuf {
    tempfile::Builder::new().prefix("cccc-dc-").tempdir().unwrap().keep().join("home")
}

/// A group titled `title` whose Discord bridge mirrors it into `guild` under `category`.
fn discord_group(d: &Daemon, dc: &FakeDiscord, guild: Snowflake, title: &str) -> String {
    let gid = group_with_actors(d);
    d.ok("group_update", json!({"group_id": gid, "patch": {"title": title}, "by": "user"}));
    let (guild, api) = (guild.to_string(), dc.api_base());
    let out = d.cli(&["im", "set", "discord", "--token-env", DC_ENV, "--api-url", &api, "--guild", &guild, "--category", "Agents", "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    gid
}

fn channel_named(dc: &FakeDiscord, guild: Snowflake, name: &str) -> Option<Snowflake> {
    dc.channels(guild).into_iter().find(|c| c.kind == 0 && c.name == name).map(|c| c.id)
}

fn buttons(m: &DMessage) -> Vec<Value> {
    m.components.as_array().into_iter().flatten().flat_map(|row| row["components"].as_array().cloned().unwrap_or_default()).collect()
}

fn has_button(m: &DMessage, custom_id: &str) -> bool {
    buttons(m).iter().any(|b| b["custom_id"] == json!(custom_id) && b["disabled"] != json!(true))
}

fn bot_message_with(dc: &FakeDiscord, channel: Snowflake, needle: &str) -> DMessage {
    wait_until(&format!("{needle:?} in the channel"), T, || dc.bot_messages(channel).into_iter().find(|m| m.content.contains(needle)))
}

fn acks_of(d: &Daemon, gid: &str, event: &str) -> usize {
    of_kind(&d.ledger(gid), "chat.ack").iter().filter(|a| a["data"]["event_id"] == json!(event)).count()
}

fn obligation(d: &Daemon, gid: &str, event: &str) -> Value {
    let ob = d.ok("obligations", json!({"group_id": gid, "include_closed": true}));
    ob["obligations"].as_array().unwrap().iter().find(|o| o["event_id"] == json!(event) && o["recipient"] == "user").cloned().unwrap()
}

#[test]
fn a_channel_per_group_with_ack_and_reply_buttons_native_replies_and_no_pings() {
    let dc = FakeDiscord::start();
    let guild = dc.guild("Team");
    let d = Daemon::start_with_env(&home(), &[(DC_ENV, dc.token().as_str())]);
    let alpha = discord_group(&d, &dc, guild, "Alpha Team");
    let beta = discord_group(&d, &dc, guild, "Beta");

    // One bot, one channel per group, named after the group, under the category.
    let (ca, cb) = wait_until("a channel per group", T, || Some((channel_named(&dc, guild, "alpha-team")?, channel_named(&dc, guild, "beta")?)));
    let category = dc.channels(guild).into_iter().find(|c| c.kind == 4 && c.name == "Agents").expect("the category");
    assert!(dc.channels(guild).iter().filter(|c| c.id == ca || c.id == cb).all(|c| c.parent_id == Some(category.id)));
    let text_channels = dc.channels(guild).iter().filter(|c| c.kind == 0).count();
    let st = wait_until("the bridge running", T, || {
        let st = d.ok("im_status", json!({"group_id": alpha}));
        (st["running"] == json!(true) && st["credential_state"] == json!("ok")).then_some(st)
    });
    assert_eq!(st["platform"], json!("discord"));

    // An attention + reply_required ask: Ack and Reply buttons, and it pings nobody.
    let ask = d.ok("send", json!({"group_id": alpha, "by": "lead", "to": ["user"], "text": "Deploy to prod? @everyone", "priority": "attention", "reply_required": true}));
    let ask_id = ask["event"]["id"].as_str().unwrap().to_string();
    let m = bot_message_with(&dc, ca, "Deploy to prod?");
    assert!(m.content.contains("Lead → user"), "{}", m.content);
    assert!(has_button(&m, &format!("ack:{ask_id}")) && has_button(&m, &format!("reply:{ask_id}")), "{}", m.components);
    assert!(!m.mention_everyone && m.mentions.is_empty(), "agent text pings nobody");
    assert_eq!(m.allowed_mentions, json!({"parse": []}));
    assert!(dc.bot_messages(cb).iter().all(|x| !x.content.contains("Deploy")), "no cross-talk");

    // Ack: one chat.ack, the button becomes a disabled "acked"; a second press writes nothing.
    let alice = dc.user("alice");
    let press = dc.press_button(ca, m.id, &alice, &format!("ack:{ask_id}"));
    let r = dc.wait_for_interaction_response(press, T);
    assert!(r.latency < Duration::from_secs(3), "answered within Discord's deadline");
    wait_until("the ack", T, || (acks_of(&d, &alpha, &ask_id) == 1).then_some(()));
    let acked = wait_until("the Ack button flipped", T, || dc.message(m.id).filter(|x| !has_button(x, &format!("ack:{ask_id}"))));
    assert!(buttons(&acked).iter().any(|b| b["disabled"] == json!(true)), "{}", acked.components);
    assert!(has_button(&acked, &format!("reply:{ask_id}")), "the Reply button stays");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(acks_of(&d, &alpha, &ask_id), 1, "one press, one ack");

    // Reply: the modal's answer is a daemon `reply`, which closes the ask.
    let open = dc.press_button(ca, m.id, &alice, &format!("reply:{ask_id}"));
    assert_eq!(dc.wait_for_interaction_response(open, T).kind, 9, "a modal");
    let (_, _, fields) = dc.modal(open).expect("the modal");
    dc.submit_modal(open, &alice, &[(&fields[0].custom_id, "yes, ship it")]);
    let reply = wait_until("the modal reply", T, || d.ledger(&alpha).into_iter().find(|e| e["data"]["text"] == "yes, ship it"));
    assert_eq!(reply["by"], json!("user"));
    assert_eq!(reply["data"]["reply_to"], json!(ask_id));
    let ob = obligation(&d, &alpha, &ask_id);
    assert_eq!((ob["status"]["replied"].clone(), ob["status"]["open"].clone()), (json!(true), json!(false)), "{ob}");

    // A native Discord reply to a mirrored ask closes it too.
    let ask2 = d.ok("send", json!({"group_id": alpha, "by": "lead", "to": ["user"], "text": "Which database?", "reply_required": true}));
    let ask2_id = ask2["event"]["id"].as_str().unwrap().to_string();
    let m2 = bot_message_with(&dc, ca, "Which database?");
    dc.user_replies(ca, &alice, "postgres", m2.id);
    let r2 = wait_until("the native reply", T, || d.ledger(&alpha).into_iter().find(|e| e["data"]["text"] == "postgres"));
    assert_eq!(r2["data"]["reply_to"], json!(ask2_id));
    assert_eq!(obligation(&d, &alpha, &ask2_id)["status"]["open"], json!(false));

    // Plain text in a group's channel is for the group (no mention needed), once, not echoed.
    dc.user_says(cb, &alice, "hello beta");
    let e = wait_until("the inbound message", T, || d.ledger(&beta).into_iter().find(|e| e["data"]["text"] == "hello beta"));
    assert!(e["data"]["client_id"].as_str().unwrap().starts_with("im:discord:"), "{e}");
    assert!(!d.ledger(&alpha).iter().any(|e| e["data"]["text"] == "hello beta"));
    assert!(dc.bot_messages(cb).iter().all(|m| !m.content.contains("hello beta")), "nothing the user sent is echoed");

    // Renaming the group renames its channel (no second channel).
    d.ok("group_update", json!({"group_id": alpha, "patch": {"title": "Alpha Prime"}, "by": "user"}));
    wait_until("the renamed channel", T, || (channel_named(&dc, guild, "alpha-prime") == Some(ca)).then_some(()));
    assert_eq!(dc.channels(guild).iter().filter(|c| c.kind == 0).count(), text_channels, "renamed, not duplicated");

    // A deleted channel is made again, and delivery goes on there.
    dc.delete_channel(cb);
    let cb2 = wait_until("a new channel for beta", T, || channel_named(&dc, guild, "beta").filter(|c| *c != cb));
    d.ok("send", json!({"group_id": beta, "by": "lead", "to": ["user"], "text": "after the deletion"}));
    bot_message_with(&dc, cb2, "after the deletion");
}

/// kill -9 of the bridge at random points during a 500-message burst: each message arrives
/// exactly once, in order (Discord's nonce + enforce_nonce closes the resend window).
#[test]
fn kill9_of_the_bridge_during_a_500_message_burst_delivers_each_exactly_once() {
    let dc = FakeDiscord::start();
    let guild = dc.guild("Burst");
    let d = Daemon::start_with_env(&home(), &[(DC_ENV, dc.token().as_str())]);
    let gid = discord_group(&d, &dc, guild, "Burst");
    let ch = wait_until("the group channel", T, || channel_named(&dc, guild, "burst"));
    let n = 500;
    for i in 0..n {
        d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": format!("b-{i:03}")}));
    }
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..3 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 1200));
        let pid = wait_until("the bridge running", Duration::from_secs(90), || d.ok("im_status", json!({"group_id": gid}))["pid"].as_i64());
        // SAFETY: SIGKILL to the bridge process the daemon reports.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let last = format!("b-{:03}", n - 1);
    wait_until("the whole burst", Duration::from_secs(300), || dc.bot_messages(ch).iter().any(|m| m.content.contains(&last)).then_some(()));
    let got: Vec<String> = dc.bot_messages(ch).iter().filter_map(|m| m.content.split_whitespace().find(|w| w.starts_with("b-")).map(str::to_string)).collect();
    let want: Vec<String> = (0..n).map(|i| format!("b-{i:03}")).collect();
    assert_eq!(got, want, "each message exactly once, in order");
}

/// One group on Telegram and Discord at once: an ack on either platform flips the button on
/// the other.
#[test]
fn one_group_on_telegram_and_discord_an_ack_on_one_shows_on_the_other() {
    let dc = FakeDiscord::start();
    let tg = FakeTelegram::start();
    let guild = dc.guild("Both");
    let d = Daemon::start_with_env(&home(), &[(DC_ENV, dc.token().as_str()), (TG_ENV, tg.bot_token().as_str())]);
    let gid = group_with_actors(&d);
    let out = d.cli(&["im", "set", "telegram", "--token-env", TG_ENV, "--api-url", &tg.api_url(), "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    discord_set_also(&d, &dc, guild, &gid);
    let st = wait_until("both bridges running", T, || {
        let st = d.ok("im_status", json!({"group_id": gid}));
        let both = st["running"] == json!(true) && st["mirrors"][0]["running"] == json!(true);
        both.then_some(st)
    });
    assert_eq!((st["platform"].clone(), st["mirrors"][0]["platform"].clone()), (json!("telegram"), json!("discord")));
    let ch = wait_until("the discord channel", T, || channel_named(&dc, guild, "demo"));

    // Pair a Telegram DM.
    let alice_tg = tg.user(5001, "Alice");
    let dm = tg.private_chat(alice_tg.id);
    tg.send_text(dm, &alice_tg, "/subscribe");
    let sent = tg.wait_for_sent(dm, 1, T);
    let key = sent[0].text.split("--key").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    let out = d.cli(&["im", "bind", "--key", &key, "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the telegram chat bound", T, || {
        d.ok("im_status", json!({"group_id": gid}))["chats"].as_array().unwrap().iter().any(|c| c["subscribed"] == json!(true)).then_some(())
    });

    let tg_ack = |s: &bridge_testkit::telegram::Sent, id: &str| {
        s.reply_markup.as_ref().is_some_and(|k| k.to_string().contains(&format!("ack:{id}")))
    };
    let alice = dc.user("alice");

    // Acked on Discord → the Telegram button changes.
    let a1 = d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": "first alert", "priority": "attention"}))["event"]["id"].as_str().unwrap().to_string();
    let dm1 = bot_message_with(&dc, ch, "first alert");
    let tg1 = wait_until("first alert on telegram", T, || tg.sent(dm).into_iter().find(|s| s.text.contains("first alert")));
    assert!(tg_ack(&tg1, &a1), "an Ack button on Telegram too");
    let p = dc.press_button(ch, dm1.id, &alice, &format!("ack:{a1}"));
    dc.wait_for_interaction_response(p, T);
    wait_until("the telegram button flipped", T, || {
        tg.sent(dm).into_iter().find(|s| s.message_id == tg1.message_id).filter(|s| !tg_ack(s, &a1)).map(|_| ())
    });
    assert_eq!(acks_of(&d, &gid, &a1), 1);

    // Acked on Telegram → the Discord button changes.
    let a2 = d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": "second alert", "priority": "attention"}))["event"]["id"].as_str().unwrap().to_string();
    let dm2 = bot_message_with(&dc, ch, "second alert");
    let tg2 = wait_until("second alert on telegram", T, || tg.sent(dm).into_iter().find(|s| s.text.contains("second alert")));
    let cb = tg.press_button(dm, tg2.message_id, &format!("ack:{a2}"));
    tg.wait_for_callback_answer(&cb, T);
    wait_until("the discord button flipped", T, || dc.message(dm2.id).filter(|m| !has_button(m, &format!("ack:{a2}"))).map(|_| ()));
    assert_eq!(acks_of(&d, &gid, &a2), 1);

    // `im unset` removes every bridge of the group, the mirror too.
    let out = d.cli(&["im", "unset", "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.ok("im_status", json!({"group_id": gid}))["configured"], json!(false));
    let yaml = std::fs::read_to_string(d.home.join("groups").join(&gid).join("group.yaml")).unwrap();
    assert!(!yaml.contains("im_mirrors") && !yaml.contains("bot_token_env"), "{yaml}");
}

fn discord_set_also(d: &Daemon, dc: &FakeDiscord, guild: Snowflake, gid: &str) {
    let guild = guild.to_string();
    let api = dc.api_base();
    let out = d.cli(&["im", "set", "discord", "--token-env", DC_ENV, "--api-url", &api, "--guild", &guild, "--also", "--group", gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Without `--guild`, a Discord channel pairs like a Telegram chat: `/subscribe` there gives a
/// key, `cccc im bind --key` authorizes it, and the group's messages arrive in it.
#[test]
fn a_channel_can_be_paired_with_subscribe_and_a_key() {
    let dc = FakeDiscord::start();
    let guild = dc.guild("Keys");
    let general = dc.channels(guild).into_iter().find(|c| c.kind == 0).expect("the guild's text channel").id;
    let d = Daemon::start_with_env(&home(), &[(DC_ENV, dc.token().as_str())]);
    let gid = group_with_actors(&d);
    let api = dc.api_base();
    let out = d.cli(&["im", "set", "discord", "--token-env", DC_ENV, "--api-url", &api, "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the bridge running", T, || (d.ok("im_status", json!({"group_id": gid}))["credential_state"] == json!("ok")).then_some(()));
    let alice = dc.user("alice");
    dc.user_says(general, &alice, "hello before pairing");
    dc.user_says(general, &alice, "/subscribe");
    let m = bot_message_with(&dc, general, "--key");
    let key = m.content.split("--key").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().trim_matches('`').to_string();
    let out = d.cli(&["im", "bind", "--key", &key, "--group", &gid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the channel bound", T, || {
        d.ok("im_status", json!({"group_id": gid}))["chats"].as_array().unwrap().iter().any(|c| c["subscribed"] == json!(true)).then_some(())
    });
    d.ok("send", json!({"group_id": gid, "by": "lead", "to": ["user"], "text": "paired by key"}));
    bot_message_with(&dc, general, "paired by key");
    assert!(!d.ledger(&gid).iter().any(|e| e["data"]["text"] == "hello before pairing"), "an unbound channel never reaches the daemon");
}
