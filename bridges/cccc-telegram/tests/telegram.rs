//! The Telegram bridge end to end: a real daemon in process, bridge-testkit's fake Bot API, and
//! the bridge run in process (`run_bridge` on its own runtime thread, stopped by its token).
//!
//! The group's `im` block is written with the daemon's `im_set` op; the token variable it names
//! is resolved by the bridge through an injected lookup (the daemon's own environment does not
//! have it, so the daemon's supervisor never spawns a bridge process of its own here).

use bridge_testkit::telegram::{ChatRef, FakeTelegram, Fault, Sent, User};
use cccc_bridge::runner::StopToken;
use cccc_core::home::Home;
use cccc_ipc::Client;
use cccc_telegram::{BridgeOptions, EXIT_CREDENTIAL, EXIT_LOCKED, EXIT_OK};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

// ---- fixtures ---------------------------------------------------------------------------------

struct Daemon {
    dir: tempfile::TempDir,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::Builder::new().prefix("cccc-tg").tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let h = home.clone();
        let thread = std::thread::spawn(move || cccc_daemon::run_blocking(Home::at(h)).expect("daemon"));
        let d = Daemon { dir, thread: Some(thread) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if d.home().join("daemon/ccccd.sock").exists() && d.client().with_timeout(Duration::from_secs(1)).call("ping", json!({})).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up");
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn client(&self) -> Client {
        Client::for_home(&self.home())
    }

    fn call(&self, op: &str, args: Value) -> Value {
        self.client().call(op, args).unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    /// A group with two headless actors, `lead` (foreman, title "Lead") and `peer-a`.
    fn group(&self) -> String {
        let gid = self.call("group_create", json!({"title": "tg-test", "by": "user"}))["group_id"].as_str().unwrap().to_string();
        let project = self.dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        self.call("attach", json!({"path": project.to_str().unwrap(), "group_id": gid, "by": "user"}));
        for (id, title) in [("lead", "Lead"), ("peer-a", "Peer A")] {
            self.call("actor_add", json!({"group_id": gid, "actor_id": id, "title": title, "runtime": "custom", "runner": "headless", "by": "user"}));
        }
        gid
    }

    /// A message from an agent; returns its event id.
    fn agent_says(&self, gid: &str, by: &str, extra: Value) -> String {
        let mut a = json!({"group_id": gid, "by": by, "to": ["user"]});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        self.call("send", a)["event"]["id"].as_str().unwrap().to_string()
    }

    fn ledger(&self, gid: &str) -> Vec<Value> {
        std::fs::read_to_string(self.home().join("groups").join(gid).join("ledger.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn user_messages(&self, gid: &str) -> Vec<Value> {
        self.ledger(gid).into_iter().filter(|e| e["kind"] == "chat.message" && e["by"] == "user").collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.client().call("shutdown", json!({}));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The bridge under test, on its own runtime thread.
struct Bridge {
    stop: StopToken,
    thread: Option<std::thread::JoinHandle<i32>>,
}

impl Bridge {
    fn start(opts: BridgeOptions) -> Bridge {
        let stop = StopToken::new();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(cccc_telegram::run_bridge(opts, s))
        });
        Bridge { stop, thread: Some(thread) }
    }

    /// Stop and return the exit code.
    fn stop(mut self) -> i32 {
        self.stop.stop();
        self.thread.take().unwrap().join().unwrap()
    }

    /// Wait for the bridge to exit by itself.
    fn join(mut self) -> i32 {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static VARS: AtomicUsize = AtomicUsize::new(0);

/// Daemon + group + fake Telegram + options for a bridge serving that group.
struct World {
    d: Daemon,
    tg: FakeTelegram,
    gid: String,
    opts: BridgeOptions,
    alice: User,
    dm: ChatRef,
}

impl World {
    fn new() -> World {
        let d = Daemon::start();
        let gid = d.group();
        let tg = FakeTelegram::start();
        let var = format!("CCCC_TG_TEST_TOKEN_{}_{}", std::process::id(), VARS.fetch_add(1, Ordering::SeqCst));
        d.call("im_set", json!({"group_id": gid, "platform": "telegram", "bot_token_env": var, "api_url": tg.api_url(), "by": "user"}));
        let mut opts = BridgeOptions::new(d.home(), tg.bot_token());
        opts.api_url = Some(tg.api_url());
        let token = tg.bot_token();
        opts.env = Arc::new(move |name: &str| (name == var).then(|| token.clone()));
        opts.poll_timeout_secs = 2;
        opts.scan_every = Duration::from_millis(500);
        opts.pass_every = Duration::from_millis(200);
        opts.status_every = Duration::from_millis(500);
        let alice = tg.user(1001, "Alice");
        let dm = tg.private_chat(alice.id);
        World { d, tg, gid, opts, alice, dm }
    }

    /// Start a bridge and wait until it holds the credential lock (so a second start in the
    /// test is the one refused, never this one).
    fn bridge(&self) -> Bridge {
        let b = Bridge::start(self.opts.clone());
        let deadline = Instant::now() + WAIT;
        loop {
            let held = std::fs::File::open(cccc_telegram::lock_path(&self.opts)).is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)));
            if held {
                return b;
            }
            assert!(Instant::now() < deadline, "the bridge never took its lock");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self) -> Value {
        cccc_core::home::read_json(&cccc_telegram::state_dir(&self.opts).join("status.json")).unwrap_or(Value::Null)
    }

    fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status never showed {what}: {s:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/subscribe` in `chat`, then `cccc im bind` (the daemon's `im_bind_chat`), then wait
    /// until the bridge delivers to the chat. Returns how many messages the chat holds.
    fn pair(&self, chat: ChatRef, user: &User) -> usize {
        let before = self.tg.sent(chat).len();
        self.tg.send_text(chat, user, "/subscribe");
        let sent = self.tg.wait_for_sent(chat, before + 1, WAIT);
        let reply = &sent[before].text;
        let key = reply.split("--key ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no key in {reply:?}")).to_string();
        assert!(reply.contains(&format!("cccc im bind --key {key} --group {}", self.gid)), "{reply}");
        let r = self.d.call("im_bind_chat", json!({"group_id": self.gid, "key": key, "by": "user"}));
        let ck = r["chat_key"].as_str().unwrap().to_string();
        self.wait_status("the paired chat", |s| s["chats"][&ck]["group_id"] == json!(self.gid));
        before + 1
    }

    fn wait_ledger(&self, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let l = self.d.ledger(&self.gid);
            if f(&l) {
                return l;
            }
            assert!(Instant::now() < deadline, "ledger never showed {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_sent(&self, chat: ChatRef, what: &str, f: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
        let ok = self.tg.wait_for(|tg| f(&tg.sent(chat)), WAIT);
        let sent = self.tg.sent(chat);
        assert!(ok, "chat never showed {what}: {:#?}", sent.iter().map(|s| &s.text).collect::<Vec<_>>());
        sent
    }
}

fn texts(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(|s| s.text.clone()).collect()
}

fn count_containing(sent: &[Sent], needle: &str) -> usize {
    sent.iter().filter(|s| s.text.contains(needle)).count()
}

// ---- tests ------------------------------------------------------------------------------------

/// Pairing, inbound text, outbound rendering, Ack buttons, reply → reply_required, long messages.
#[test]
fn pair_talk_ack_reply_and_split() {
    let w = World::new();
    let bridge = w.bridge();

    // Before pairing: nothing reaches the daemon.
    w.tg.send_text(w.dm, &w.alice, "hello before pairing");
    w.pair(w.dm, &w.alice);
    assert!(w.d.user_messages(&w.gid).is_empty(), "an unbound chat reached the daemon");
    assert_eq!(count_containing(&w.tg.sent(w.dm), "before pairing"), 0);

    // Inbound: a DM becomes one chat.message by user with the idempotency key.
    let mid = w.tg.send_text(w.dm, &w.alice, "hello");
    let l = w.wait_ledger("the DM", |l| l.iter().any(|e| e["kind"] == "chat.message" && e["data"]["text"] == "hello"));
    let msgs: Vec<&Value> = l.iter().filter(|e| e["kind"] == "chat.message" && e["by"] == "user").collect();
    assert_eq!(msgs.len(), 1);
    let m = msgs[0];
    assert_eq!(m["data"]["client_id"], json!(format!("im:telegram:{}:{mid}", w.dm.chat_id)));
    assert_eq!(m["data"]["source_platform"], "telegram");
    assert_eq!(m["data"]["source_user_id"], json!(w.alice.id.to_string()));
    assert_eq!(m["data"]["to"], json!(["@foreman"]));
    // Never echoed back.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_containing(&w.tg.sent(w.dm), "hello"), 0);

    // `/send` with explicit recipients.
    w.tg.send_text(w.dm, &w.alice, "/send @peer-a please review");
    let l = w.wait_ledger("/send", |l| l.iter().any(|e| e["data"]["text"] == "please review"));
    let e = l.iter().find(|e| e["data"]["text"] == "please review").unwrap();
    assert_eq!(e["data"]["to"], json!(["peer-a"]));

    // Outbound: sender → recipients, HTML.
    w.d.agent_says(&w.gid, "lead", json!({"text": "Build is <green> & done"}));
    let sent = w.wait_sent(w.dm, "the agent message", |s| count_containing(s, "Build is <green> & done") == 1);
    let s = sent.iter().find(|s| s.text.contains("Build is")).unwrap();
    assert!(s.text.starts_with("Lead → user"), "{:?}", s.text);
    assert_eq!(s.parse_mode.as_deref(), Some("HTML"));
    assert!(s.reply_markup.is_none());

    // Attention: an Ack button; pressing it writes exactly one chat.ack.
    let att = w.d.agent_says(&w.gid, "lead", json!({"text": "Approve the deploy?", "priority": "attention"}));
    let sent = w.wait_sent(w.dm, "the attention message", |s| count_containing(s, "Approve the deploy?") == 1);
    let s = sent.iter().find(|s| s.text.contains("Approve the deploy?")).unwrap().clone();
    assert!(s.text.starts_with("⚠️"), "{}", s.text);
    assert_eq!(s.callback_data(), vec![format!("ack:{att}")]);
    assert_eq!(s.button_texts(), vec!["Ack".to_string()]);
    let q = w.tg.press_button(w.dm, s.message_id, &format!("ack:{att}"));
    assert_eq!(w.tg.wait_for_callback_answer(&q, WAIT).text.as_deref(), Some("Acked"));
    let acks = |l: &[Value]| l.iter().filter(|e| e["kind"] == "chat.ack" && e["data"]["event_id"] == json!(att) && e["data"]["actor_id"] == "user").count();
    w.wait_ledger("the ack", |l| acks(l) == 1);
    let att_mid = s.message_id;
    w.wait_sent(w.dm, "the acked button", |s| s.iter().any(|m| m.message_id == att_mid && m.button_texts() == vec!["✓ Acked".to_string()]));
    // A second press (of the flipped button) is "already".
    let acked = w.tg.sent_message(w.dm, s.message_id).unwrap();
    let q2 = w.tg.press_button(w.dm, s.message_id, &acked.callback_data()[0]);
    assert_eq!(w.tg.wait_for_callback_answer(&q2, WAIT).text.as_deref(), Some("Already acked"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(acks(&w.d.ledger(&w.gid)), 1);

    // An ack from elsewhere (CLI/Web) flips the button too.
    let att2 = w.d.agent_says(&w.gid, "lead", json!({"text": "Second approval", "priority": "attention"}));
    let sent = w.wait_sent(w.dm, "the second attention message", |s| count_containing(s, "Second approval") == 1);
    let mid2 = s_find(&sent, "Second approval").message_id;
    w.d.call("chat_ack", json!({"group_id": w.gid, "actor_id": "user", "event_id": att2, "by": "user"}));
    w.wait_sent(w.dm, "the remotely acked button", |s| s.iter().any(|m| m.message_id == mid2 && m.button_texts() == vec!["✓ Acked".to_string()]));

    // reply_required: a native reply becomes a `reply` and closes the obligation.
    let ask = w.d.agent_says(&w.gid, "lead", json!({"text": "Which branch?", "reply_required": true}));
    let sent = w.wait_sent(w.dm, "the ask", |s| count_containing(s, "Which branch?") == 1);
    let asked = s_find(&sent, "Which branch?");
    assert!(asked.text.contains("reply requested"), "{}", asked.text);
    let open = |d: &Daemon| d.call("obligations", json!({"group_id": w.gid, "actor_id": "user"}))["obligations"].as_array().unwrap().iter().any(|o| o["event_id"] == json!(ask));
    assert!(open(&w.d));
    w.tg.send_reply(w.dm, &w.alice, "main, please", asked.message_id);
    let l = w.wait_ledger("the reply", |l| l.iter().any(|e| e["data"]["text"] == "main, please"));
    let r = l.iter().find(|e| e["data"]["text"] == "main, please").unwrap();
    assert_eq!(r["by"], "user");
    assert_eq!(r["data"]["reply_to"], json!(ask));
    assert_eq!(r["data"]["to"], json!(["lead"]));
    assert!(!open(&w.d), "the obligation is closed by the reply");
    // A reply to a message that maps to no event (the pairing notice) is a plain send.
    let notice_id = w.tg.sent(w.dm)[0].message_id;
    w.tg.send_reply(w.dm, &w.alice, "about that", notice_id);
    let l = w.wait_ledger("the plain reply", |l| l.iter().any(|e| e["data"]["text"] == "about that"));
    let e = l.iter().find(|e| e["data"]["text"] == "about that").unwrap();
    assert_eq!(e["by"], "user");
    assert!(e["data"]["reply_to"].is_null(), "{e}");

    // 10,000 characters: ≥ 3 ordered parts, each within the limit, nothing lost.
    let words: Vec<String> = (0..1800).map(|i| format!("w{i:04}")).collect();
    let long: String = words.chunks(12).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n");
    let long = long[..10_000.min(long.len())].to_string();
    assert!(long.len() >= 10_000);
    let before = w.tg.sent(w.dm).len();
    w.d.agent_says(&w.gid, "lead", json!({"text": long}));
    let complete = |m: &Sent| {
        let h = m.text.lines().next().unwrap_or("");
        h.rsplit_once('(').and_then(|(_, p)| p.strip_suffix(')')).and_then(|p| p.split_once('/')).is_some_and(|(a, b)| a == b)
    };
    let sent = w.wait_sent(w.dm, "the long message", |s| s.len() >= before + 3 && s.last().is_some_and(complete));
    let parts: Vec<&Sent> = sent[before..].iter().collect();
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let n = parts.len();
    let mut body = String::new();
    for (i, p) in parts.iter().enumerate() {
        assert!(p.text.encode_utf16().count() <= 4096);
        let (header, rest) = p.text.split_once('\n').unwrap();
        assert!(header.ends_with(&format!("({}/{n})", i + 1)), "{header}");
        body.push_str(rest);
        body.push(' ');
    }
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(squash(&body), squash(&long));

    // Edited messages create no events.
    let count = w.d.user_messages(&w.gid).len();
    w.tg.edit_text(w.dm, mid, "hello (edited)");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.d.user_messages(&w.gid).len(), count);

    assert_eq!(bridge.stop(), EXIT_OK);
}

fn s_find(sent: &[Sent], needle: &str) -> Sent {
    sent.iter().find(|s| s.text.contains(needle)).unwrap_or_else(|| panic!("no message with {needle:?} in {:#?}", texts(sent))).clone()
}

/// A 429 with retry_after holds that chat, in order; a restart delivers the backlog once, and
/// an update received while down is applied once.
#[test]
fn rate_limit_and_restart_are_exactly_once() {
    let w = World::new();
    let bridge = w.bridge();
    let base = w.pair(w.dm, &w.alice);

    w.tg.fail_next("sendMessage", Fault::TooManyRequests { retry_after_secs: 2 }, 1);
    for i in 1..=3 {
        w.d.agent_says(&w.gid, "lead", json!({"text": format!("update {i}")}));
    }
    let sent = w.wait_sent(w.dm, "three updates", |s| count_containing(s, "update ") == 3);
    assert_eq!(texts(&sent[base..]).iter().map(|t| t.lines().last().unwrap().to_string()).collect::<Vec<_>>(), vec!["update 1", "update 2", "update 3"]);
    let reqs = w.tg.requests("sendMessage");
    let limited = reqs.iter().find(|r| r.status == 429).expect("a 429");
    let next_ok = reqs.iter().find(|r| r.status == 200 && r.at > limited.at).unwrap();
    assert!(next_ok.at.duration_since(limited.at) >= Duration::from_millis(1950), "retry_after honoured: {:?}", next_ok.at.duration_since(limited.at));
    assert!(next_ok.params["text"].as_str().unwrap().contains("update 1"), "the same message first: {}", next_ok.params["text"]);

    // Down: two agent messages and one inbound message arrive.
    assert_eq!(bridge.stop(), EXIT_OK);
    w.d.agent_says(&w.gid, "lead", json!({"text": "while down A"}));
    w.d.agent_says(&w.gid, "peer-a", json!({"text": "while down B"}));
    w.tg.send_text(w.dm, &w.alice, "sent while the bridge was down");

    let bridge = w.bridge();
    let sent = w.wait_sent(w.dm, "the backlog", |s| count_containing(s, "while down B") == 1);
    w.wait_ledger("the inbound backlog", |l| l.iter().any(|e| e["data"]["text"] == "sent while the bridge was down"));
    // Another restart must not repeat anything.
    assert_eq!(bridge.stop(), EXIT_OK);
    let bridge = w.bridge();
    w.wait_status("the second start", |s| s["credential_state"] == "ok" && s["chats"][w.dm.chat_id.to_string()]["backlog"] == json!(0));
    std::thread::sleep(Duration::from_secs(2));
    let sent2 = w.tg.sent(w.dm);
    assert_eq!(sent2.len(), sent.len(), "{:#?}", texts(&sent2));
    for needle in ["update 1", "update 2", "update 3", "while down A", "while down B"] {
        assert_eq!(count_containing(&sent2, needle), 1, "{needle}");
    }
    let pos = |n: &str| sent2.iter().position(|s| s.text.contains(n)).unwrap();
    assert!(pos("while down A") < pos("while down B"));
    assert!(s_find(&sent2, "while down B").text.starts_with("Peer A → user"));
    let inbound: Vec<Value> = w.d.user_messages(&w.gid).into_iter().filter(|e| e["data"]["text"] == "sent while the bridge was down").collect();
    assert_eq!(inbound.len(), 1);
    // The offset was persisted past every handled update.
    let offset = cccc_core::home::read_json(&cccc_telegram::state_dir(&w.opts).join("offset.json")).unwrap();
    assert!(offset["offset"].as_i64().unwrap() > 0);
    assert!(w.tg.pending_updates().is_empty() || w.tg.wait_until_consumed(WAIT));
    assert_eq!(bridge.stop(), EXIT_OK);
}

/// Commands, pause/verbose, unbound chats, group chats, the credential lock and rejection.
#[test]
fn commands_locks_and_credentials() {
    let w = World::new();
    let bridge = w.bridge();

    // A second bridge for the same credential is refused (exit 3), the lock names the pid.
    let second = Bridge::start(w.opts.clone());
    assert_eq!(second.join(), EXIT_LOCKED);
    let pid = std::fs::read_to_string(cccc_telegram::lock_path(&w.opts)).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());

    // Unbound DM: /start gets pairing help, text is dropped.
    w.tg.send_text(w.dm, &w.alice, "/start");
    let sent = w.wait_sent(w.dm, "pairing help", |s| !s.is_empty());
    assert!(sent[0].text.contains("/subscribe"), "{}", sent[0].text);

    // Group chat: ambient text ignored, commands and mentions read.
    let bob = w.tg.user(1002, "Bob");
    let grp = w.tg.group_chat(-4001, "Ops room");
    w.pair(grp, &bob);
    w.tg.send_text(grp, &bob, "just chatting among humans");
    w.tg.send_text(grp, &bob, &format!("@{} ping from the group", w.tg.bot_username()));
    let l = w.wait_ledger("the mention", |l| l.iter().any(|e| e["data"]["text"] == "ping from the group"));
    assert!(!l.iter().any(|e| e["data"]["text"].as_str().is_some_and(|t| t.contains("among humans"))));
    let pending = cccc_core::home::read_json(&cccc_telegram::state_dir(&w.opts).join("im_pending_keys.json")).unwrap();
    assert!(pending.as_object().unwrap().is_empty(), "the bind consumed the key: {pending}");

    // /status names the group and the actors.
    let n = w.tg.sent(grp).len();
    w.tg.send_text(grp, &bob, "/status");
    let sent = w.wait_sent(grp, "the status", |s| s.len() > n);
    let st = &sent[n].text;
    assert!(st.contains(&w.gid) && st.contains("lead") && st.contains("Open obligations"), "{st}");

    // /pause: nothing arrives; /resume: it does again.
    w.tg.send_text(grp, &bob, "/pause");
    w.wait_sent(grp, "pause ack", |s| count_containing(s, "Paused") == 1);
    let paused_id = w.d.agent_says(&w.gid, "lead", json!({"text": "while paused"}));
    // Wait until the chat has passed that event (its outbox cursor), so /resume cannot
    // overtake it on a slow machine.
    let outbox = w.d.home().join("groups").join(&w.gid).join("state/im_outbox.json");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&outbox).is_ok_and(|t| t.contains(&paused_id)) {
        assert!(Instant::now() < deadline, "the chat never passed the paused message");
        std::thread::sleep(Duration::from_millis(50));
    }
    w.tg.send_text(grp, &bob, "/resume");
    w.wait_sent(grp, "resume ack", |s| count_containing(s, "Resumed") == 1);
    w.d.agent_says(&w.gid, "lead", json!({"text": "after resume"}));
    let sent = w.wait_sent(grp, "after resume", |s| count_containing(s, "after resume") == 1);
    assert_eq!(count_containing(&sent, "while paused"), 0);

    // Agent-to-agent traffic only in verbose chats.
    w.d.agent_says(&w.gid, "lead", json!({"text": "quiet internal note", "to": ["peer-a"]}));
    // A chat handles its events in ledger order: once a later message arrived, the quiet note
    // was decided under verbose off (without this, a slow machine may decide it after /verbose).
    w.d.agent_says(&w.gid, "lead", json!({"text": "marker after the quiet note"}));
    w.wait_sent(grp, "the marker", |s| count_containing(s, "marker after the quiet note") == 1);
    w.tg.send_text(grp, &bob, "/verbose");
    w.wait_sent(grp, "verbose ack", |s| count_containing(s, "Verbose on") == 1);
    w.d.agent_says(&w.gid, "lead", json!({"text": "loud internal note", "to": ["peer-a"]}));
    let sent = w.wait_sent(grp, "the verbose note", |s| count_containing(s, "loud internal note") == 1);
    assert_eq!(count_containing(&sent, "quiet internal note"), 0);
    let loud = s_find(&sent, "loud internal note");
    assert!(loud.text.starts_with("Lead → Peer A"), "{}", loud.text);
    assert!(loud.disable_notification);

    // /unsubscribe removes the authorization.
    let ck = grp.chat_id.to_string();
    w.tg.send_text(grp, &bob, "/unsubscribe");
    w.wait_sent(grp, "unsubscribe ack", |s| count_containing(s, "Unsubscribed") == 1);
    let auth = cccc_core::home::read_json(&w.d.home().join("groups").join(&w.gid).join("state/im_authorized_chats.json")).unwrap();
    assert!(auth.get(&ck).is_none(), "{auth}");
    drop(bridge);
}

/// Only listed users may talk when `allowed_user_ids` is set; a rejected token exits 4.
#[test]
fn allowlist_and_rejected_credential() {
    let w = World::new();
    let bridge = w.bridge();
    let grp = w.tg.group_chat(-4002, "Team");
    let bob = w.tg.user(1002, "Bob");
    let eve = w.tg.user(1003, "Eve");
    w.pair(grp, &bob);
    let var = w.d.call("im_config", json!({"group_id": w.gid}))["im"]["bot_token_env"].as_str().unwrap().to_string();
    w.d.call(
        "im_set",
        json!({"group_id": w.gid, "platform": "telegram", "bot_token_env": var, "api_url": w.tg.api_url(), "allowed_user_ids": [bob.id], "by": "user"}),
    );
    std::thread::sleep(Duration::from_millis(1200)); // a scan picks the allowlist up
    w.tg.send_text(grp, &eve, &format!("@{} from eve", w.tg.bot_username()));
    w.tg.send_text(grp, &bob, &format!("@{} from bob", w.tg.bot_username()));
    let l = w.wait_ledger("bob's message", |l| l.iter().any(|e| e["data"]["text"] == "from bob"));
    assert!(!l.iter().any(|e| e["data"]["text"] == "from eve"));
    assert_eq!(bridge.stop(), EXIT_OK);

    // The token is revoked: the bridge stops with exit 4 and says so in status.json.
    w.tg.set_valid_tokens(&["7000000001:another-token"]);
    let rejected = Bridge::start(w.opts.clone());
    assert_eq!(rejected.join(), EXIT_CREDENTIAL);
    let s = w.status();
    assert_eq!(s["credential_state"], "rejected", "{s:#}");
    assert!(!s.to_string().contains(&w.tg.bot_token()), "the token never appears in status");
}

/// Checklist 24 and 36: an inbound photo becomes a blob and a ledger attachment, an oversized
/// document only a "too large" reply; an agent message's attachments follow its text as
/// sendDocument uploads, and a missing or oversized blob is skipped while the rest arrives.
#[test]
fn attachments_in_and_out() {
    let w = World::new();
    let bridge = w.bridge();
    w.pair(w.dm, &w.alice);
    let group_dir = w.d.home().join("groups").join(&w.gid);
    let blobs = || std::fs::read_dir(group_dir.join("state/blobs")).map(|d| d.count()).unwrap_or(0);

    // Inbound photo without caption: one blob, one ledger message with a placeholder text.
    let photo: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mid = w.tg.send_photo(w.dm, &w.alice, &photo, None);
    let l = w.wait_ledger("the photo", |l| l.iter().any(|e| e["kind"] == "chat.message" && e["by"] == "user"));
    let msgs: Vec<&Value> = l.iter().filter(|e| e["kind"] == "chat.message" && e["by"] == "user").collect();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0]["data"];
    assert_eq!(m["client_id"], json!(format!("im:telegram:{}:{mid}", w.dm.chat_id)));
    let att = m["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1, "{m:#}");
    let path = att[0]["path"].as_str().unwrap();
    assert!(path.starts_with("state/blobs/") && path.ends_with(".jpg"), "{path}");
    assert_eq!(att[0]["kind"], "image");
    assert_eq!(att[0]["bytes"], json!(photo.len()));
    assert_eq!(std::fs::read(group_dir.join(path)).unwrap(), photo);
    assert_eq!(m["text"], json!(format!("[file] {}", att[0]["title"].as_str().unwrap())));
    assert_eq!(m["to"], json!(["@foreman"]));
    assert_eq!(blobs(), 1);

    // A document over the Telegram default of 20 MB: a "too large" reply, no blob, no message.
    let before = w.tg.sent(w.dm).len();
    let downloads = w.tg.requests("file").len();
    assert_eq!(downloads, 1);
    let big = vec![0u8; 21 * 1024 * 1024];
    w.tg.send_document(w.dm, &w.alice, "huge.bin", "application/octet-stream", &big, None);
    let sent = w.wait_sent(w.dm, "the too-large reply", |s| s.len() > before && count_containing(&s[before..], "too large") == 1);
    assert!(sent[before].text.contains("huge.bin"), "{}", sent[before].text);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(w.d.user_messages(&w.gid).len(), 1);
    assert_eq!(blobs(), 1);
    assert_eq!(w.tg.requests("file").len(), downloads, "an oversized file was downloaded");

    // Outbound, queued while the bridge is down: two blobs, one deleted after the send (missing
    // at delivery) and one over max_mb. The text, then exactly the two good files, in order.
    assert_eq!(bridge.stop(), EXIT_OK);
    let blob_dir = group_dir.join("state/blobs");
    let files: [(&str, Vec<u8>); 4] = [
        ("aa_report.txt", b"report body\n".to_vec()),
        ("bb_chart.png", vec![0x89, b'P', b'N', b'G', 1, 2, 3]),
        ("cc_gone.txt", b"soon gone".to_vec()),
        ("dd_huge.bin", vec![1u8; 21 * 1024 * 1024]),
    ];
    for (n, b) in &files {
        std::fs::write(blob_dir.join(n), b).unwrap();
    }
    let attachments: Vec<Value> = files.iter().map(|(n, _)| json!({"path": format!("state/blobs/{n}"), "title": n.split_once('_').unwrap().1})).collect();
    w.d.agent_says(&w.gid, "lead", json!({"text": "Here are the files", "attachments": attachments}));
    std::fs::remove_file(blob_dir.join("cc_gone.txt")).unwrap();
    let before = w.tg.sent(w.dm).len();
    let _bridge = w.bridge();
    w.wait_sent(w.dm, "the text and two documents", |s| s.len() >= before + 3);
    std::thread::sleep(Duration::from_millis(800));
    let sent = &w.tg.sent(w.dm)[before..];
    assert_eq!(sent.len(), 3, "{:#?}", texts(sent));
    assert!(sent[0].text.contains("Here are the files"), "{}", sent[0].text);
    assert_eq!(sent[0].method, "sendMessage");
    for (s, (name, bytes)) in sent[1..].iter().zip(&files[..2]) {
        assert_eq!(s.method, "sendDocument");
        let f = s.file.as_ref().expect("an uploaded file");
        assert_eq!(f.file_name.as_deref(), Some(name.split_once('_').unwrap().1));
        assert_eq!(&f.bytes, bytes);
    }
    assert_eq!(w.tg.requests("sendDocument").len(), 2);
}

/// Checklist 44: a 👀 placed on an inbound message is cleared by its answer (with `reply_to`,
/// or the only one pending without), across a restart, and by the timeout when none comes.
#[test]
fn processing_marker_is_always_resolved() {
    let mut w = World::new();
    let bridge = w.bridge();
    w.pair(w.dm, &w.alice);
    let eyes = vec!["👀".to_string()];
    fn event_of(w: &World, text: &str) -> String {
        let l = w.wait_ledger(text, |l| l.iter().any(|e| e["data"]["text"] == text));
        l.iter().find(|e| e["data"]["text"] == text).unwrap()["id"].as_str().unwrap().to_string()
    }

    // Answered with reply_to: 👀, then cleared.
    let mid = w.tg.send_text(w.dm, &w.alice, "please build");
    let ev = event_of(&w, "please build");
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid) == eyes, WAIT), "no 👀 on the inbound message");
    w.d.agent_says(&w.gid, "lead", json!({"text": "built", "reply_to": ev}));
    w.wait_sent(w.dm, "the answer", |s| count_containing(s, "built") == 1);
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid).is_empty(), WAIT), "the answer did not clear 👀");

    // Answered without reply_to while it is the only one pending: cleared too.
    let mid = w.tg.send_text(w.dm, &w.alice, "and test it");
    event_of(&w, "and test it");
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid) == eyes, WAIT));
    w.d.agent_says(&w.gid, "lead", json!({"text": "tests pass"}));
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid).is_empty(), WAIT), "the only pending marker was not cleared");

    // A restart between receipt and answer: the marker was persisted and is still cleared.
    let mid = w.tg.send_text(w.dm, &w.alice, "deploy please");
    let ev = event_of(&w, "deploy please");
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid) == eyes, WAIT));
    assert_eq!(bridge.stop(), EXIT_OK);
    let markers = cccc_core::home::read_json(&cccc_telegram::state_dir(&w.opts).join("markers.json")).unwrap();
    assert!(markers.get(&ev).is_some(), "{markers}");
    w.d.agent_says(&w.gid, "lead", json!({"text": "deployed", "reply_to": ev}));
    let bridge = w.bridge();
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid).is_empty(), WAIT), "the answer after a restart did not clear 👀");
    assert_eq!(bridge.stop(), EXIT_OK);

    // Never answered: the timeout clears it.
    w.opts.marker_timeout = Duration::from_secs(2);
    let bridge = w.bridge();
    let mid = w.tg.send_text(w.dm, &w.alice, "anyone there?");
    let sent_at = Instant::now();
    event_of(&w, "anyone there?");
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid) == eyes, WAIT));
    assert!(w.tg.wait_for(|tg| tg.reactions(w.dm, mid).is_empty(), WAIT), "the timeout did not clear 👀");
    assert!(sent_at.elapsed() >= Duration::from_millis(1900), "cleared before the timeout: {:?}", sent_at.elapsed());
    // Forgotten once Telegram confirmed the clearing (kept until then, for a crash in between).
    let path = cccc_telegram::state_dir(&w.opts).join("markers.json");
    let deadline = Instant::now() + WAIT;
    while cccc_core::home::read_json(&path).unwrap() != json!({}) {
        assert!(Instant::now() < deadline, "markers.json never emptied: {}", cccc_core::home::read_json(&path).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(bridge.stop(), EXIT_OK);
}
