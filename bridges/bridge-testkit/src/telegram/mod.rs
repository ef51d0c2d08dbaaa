//! A faithful fake of the Telegram Bot API on `127.0.0.1`, for end-to-end tests of a real bridge
//! (teloxide or any HTTP client) without any network.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use bridge_testkit::telegram::{FakeTelegram, Fault};
//!
//! let tg = FakeTelegram::start();              // own thread + tokio runtime, 127.0.0.1:<random>
//! let alice = tg.user(1001, "Alice");          // a human
//! let dm = tg.private_chat(alice.id);          // she has opened a chat with the bot
//! let team = tg.forum_topic(-1001234567890, 42); // topic 42 of a forum supergroup
//!
//! // Start the bridge under test against the fake (in-process or as a child process):
//! //   teloxide:  Bot::new(tg.bot_token()).set_api_url(tg.api_url().parse().unwrap())
//! //   CLI:       --api-url <tg.api_url()>, token tg.bot_token()
//!
//! // Act as the human; the bridge receives it through getUpdates.
//! let msg_id = tg.send_text(dm, &alice, "hello");
//! assert!(tg.wait_until_consumed(Duration::from_secs(5))); // the bridge confirmed the update
//!
//! // Observe what the bot sent (text as the user sees it, raw_text as sent, markup, edits...).
//! let sent = tg.wait_for_sent(dm, 1, Duration::from_secs(5));
//! assert_eq!(sent[0].reply_to_message_id, Some(msg_id));
//!
//! // Buttons: press one, then check the bot answered the callback query.
//! let q = tg.press_button(dm, sent[0].message_id, "ack:1234");
//! tg.wait_for_callback_answer(&q, Duration::from_secs(5));
//!
//! // Faults: the next sendMessage gets a real 429 and is not performed.
//! tg.fail_next("sendMessage", Fault::TooManyRequests { retry_after_secs: 2 }, 1);
//! // Pacing: every request with its arrival time and answer status.
//! let sends: Vec<_> = tg.requests("sendMessage").into_iter().map(|r| (r.at, r.status)).collect();
//! ```
//!
//! Every observation method (`sent`, `all_requests`, `callback_answers`, ...) returns a
//! snapshot; [`FakeTelegram::wait_for`] re-evaluates any predicate over the fake after each
//! change until it holds; the `wait_for_*` helpers panic with a diagnostic (what was sent, which
//! requests failed) on timeout. Dropping the `FakeTelegram` stops the server.
//!
//! **Text is compared as Telegram shows it.** [`Sent::text`] is the text after `parse_mode`
//! parsing, with `\r` removed and leading/trailing whitespace trimmed (the real server does
//! that, so a chunk ending in `"\n\n"` loses it); [`Sent::raw_text`] is the exact string the bot
//! sent. Reassemble chunked output from `raw_text` when checking losslessness.
//!
//! # The wire protocol, as faithful as it matters for a bridge
//!
//! * Requests: `POST|GET {api_url}bot<TOKEN>/<method>`; method names are matched
//!   case-insensitively (teloxide sends `SendMessage`), parameters may come in the query string,
//!   as JSON, as `x-www-form-urlencoded`, or as `multipart/form-data` (JSON-typed parameters such
//!   as `reply_markup` are then JSON strings, as on Telegram). Files: `GET {api_url}file/bot<TOKEN>/<file_path>`.
//! * Answers: `{"ok":true,"result":…}`; errors `{"ok":false,"error_code":N,"description":"…"}`
//!   with the HTTP status = `error_code`; 429 adds `"parameters":{"retry_after":N}`.
//! * Unknown token → 401 `Unauthorized` (a token without `:` → 404 `Not Found`); unknown or
//!   unimplemented method → 404 `Not Found`.
//! * `getUpdates`: `offset` confirms (updates with a lower id are forgotten for good; a negative
//!   offset keeps the last `-offset`), `limit` (1..=100), `timeout` (long poll: answers as soon
//!   as an update exists, or `[]` when the timeout passes), `allowed_updates` (persisted like the
//!   real setting and applied when an update is *created*; by default everything except
//!   `chat_member`, `message_reaction`, `message_reaction_count`). A second getUpdates while one
//!   is waiting makes the first answer 409 `Conflict: terminated by other getUpdates request; …`.
//!   With a webhook set (`setWebhook` / [`FakeTelegram::set_webhook`]) getUpdates answers 409
//!   until `deleteWebhook`.
//! * `sendMessage`: `text` rendered with `parse_mode` (`HTML`, `MarkdownV2`, `Markdown`) by
//!   parsers that reject what Telegram rejects (`400 Bad Request: can't parse entities: …`,
//!   TDLib's wording: unknown/unbalanced HTML tags, unescaped MarkdownV2 reserved characters,
//!   unclosed entities); `\r` removed and leading/trailing whitespace trimmed like the server;
//!   `> 4096` UTF-16 units after parsing → `400 Bad Request: message is too long`; empty →
//!   `400 Bad Request: message text is empty`; `reply_parameters` or the legacy
//!   `reply_to_message_id` (missing target → `400 Bad Request: message to be replied not found`
//!   unless `allow_sending_without_reply`); `message_thread_id` (forum: unknown topic or the
//!   General topic id 1 → `400 Bad Request: message thread not found`); inline keyboards
//!   validated (`callback_data` 1..=64 bytes else `400 Bad Request: BUTTON_DATA_INVALID`, bad
//!   URL → `BUTTON_URL_INVALID`, button without action rejected); kicked/blocked chat → 403.
//! * `editMessageText` / `editMessageCaption` / `editMessageReplyMarkup`: `400 Bad Request:
//!   message is not modified: …` for identical content, `message to edit not found`,
//!   `message can't be edited` (not the bot's); **omitting `reply_markup` removes the inline
//!   keyboard**, as on Telegram. Every edit is kept in [`Sent::edits`].
//! * `answerCallbackQuery` (unknown or already answered id → `400 Bad Request: query is too old
//!   and response timeout expired or query ID is invalid`), `sendDocument` / `sendPhoto`
//!   (multipart upload, `attach://name`, or an existing `file_id`; caption ≤ 1024), `getFile`
//!   and the file download, `deleteMessage`, `setMessageReaction` (only Telegram's bot reaction emoji; ✅ is
//!   `REACTION_INVALID`, like the real thing), `sendChatAction`, `setMyCommands` /
//!   `getMyCommands` / `deleteMyCommands`, `getMe`, `getChat`, `getWebhookInfo`, `setWebhook`,
//!   `deleteWebhook`, `leaveChat`, `logOut`, `close`.
//!
//! # Messages and updates
//!
//! Message ids increase per chat starting at 1; update ids are large and increasing; `date` is
//! unix seconds. Messages carry complete `from` / `chat` objects (teloxide deserializes them:
//! this crate's tests check that with `teloxide-core`). Human messages get auto-detected
//! entities (`bot_command`, `mention`, `url`, `hashtag`) like a real client produces. Replies
//! embed the full `reply_to_message` (one level deep, like Telegram). Supergroup quirks are
//! reproduced on purpose, because bridges get them wrong:
//!
//! * in a **forum topic** every message has `message_thread_id` + `is_topic_message: true`, and a
//!   message that is not an explicit reply still carries `reply_to_message` = the topic's
//!   `forum_topic_created` service message (whose `message_id` is the thread id);
//! * in a **non-forum supergroup** (and the General topic of a forum) a *reply* carries
//!   `message_thread_id` = the id of the reply chain's first message but **no**
//!   `is_topic_message`: it is not a topic.
//!
//! # Simplified
//!
//! One bot identity per server. No channels, inline mode, payments, media groups, polls,
//! stickers, voice (use [`FakeTelegram::send_custom`] / [`FakeTelegram::push_update`] for
//! arbitrary payloads). Private chats and basic groups ignore `message_thread_id`. Photo sizes
//! are fixed placeholders (90×68, 800×600). Message ids are per chat (real private chats share
//! one counter per bot). Callback queries never expire by age. Explicit `entities` sent by the
//! bot are stored as given. Rate limiting is off unless [`FakeTelegram::set_rate_limits`] is
//! called; then it follows the documented limits exactly (Telegram's real limits are fuzzier).

mod markup;
mod server;
mod state;
mod types;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

pub use markup::utf16_len;
pub use types::*;

use state::{ChatKind, Media, State};

/// The default bot token accepted by a fresh fake (`bot id` = 7000000001).
pub const DEFAULT_TOKEN: &str = "7000000001:fake-token-for-tests";
/// The default bot username (without `@`).
pub const DEFAULT_BOT_USERNAME: &str = "cccc_test_bot";

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    updates_notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Read-only access.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }
    /// Mutation: bumps the version, wakes `wait_for` callers and long polls.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, wake_polls) = {
            let mut s = self.lock();
            let before = (s.next_update_id, s.poll_generation, s.webhook_url.is_some());
            let r = f(&mut s);
            s.version += 1;
            (
                r,
                before != (s.next_update_id, s.poll_generation, s.webhook_url.is_some()),
            )
        };
        self.changed.notify_all();
        if wake_polls {
            self.updates_notify.notify_waiters();
        }
        r
    }
}

/// Options for [`FakeTelegram::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The token accepted at start (more with [`FakeTelegram::set_valid_tokens`]).
    pub token: String,
    /// Bot id (getMe `id`); Telegram uses the token's numeric prefix.
    pub bot_id: i64,
    pub bot_username: String,
    pub bot_first_name: String,
    /// Address to bind; port 0 = any free port.
    pub addr: SocketAddr,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: DEFAULT_TOKEN.to_string(),
            bot_id: 7_000_000_001,
            bot_username: DEFAULT_BOT_USERNAME.to_string(),
            bot_first_name: "CCCC Test Bot".to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// A running fake Telegram Bot API server. Dropping it stops the server and closes every
/// connection.
///
/// All methods are synchronous and may be called from plain `#[test]` functions (or from async
/// code: they only take a mutex briefly; the `wait_*` helpers block the calling thread).
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    control: mpsc::UnboundedSender<server::Control>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTelegram {
    /// Start on `127.0.0.1:<free port>` with [`DEFAULT_TOKEN`] and [`DEFAULT_BOT_USERNAME`].
    pub fn start() -> FakeTelegram {
        FakeTelegram::start_with(Options::default())
    }

    /// Start with custom options.
    pub fn start_with(opts: Options) -> FakeTelegram {
        let bot = User {
            id: opts.bot_id,
            is_bot: true,
            first_name: opts.bot_first_name.clone(),
            last_name: None,
            username: Some(opts.bot_username.clone()),
            language_code: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(bot, opts.token.clone())),
            changed: Condvar::new(),
            updates_notify: Notify::new(),
        });
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let shared2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-telegram".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = match server::bind(opts.addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(Ok(listener.local_addr().expect("local addr")));
                    server::serve(shared2, listener, ctl_rx).await;
                });
                rt.shutdown_background();
            })
            .expect("spawn fake-telegram thread");
        let addr = addr_rx
            .recv()
            .expect("fake-telegram thread died")
            .expect("bind fake telegram");
        FakeTelegram {
            shared,
            addr,
            control: ctl_tx,
            thread: Some(thread),
        }
    }

    // ----- identity ----------------------------------------------------------------------------

    /// Base URL for `Bot::set_api_url` / `--api-url`: `http://127.0.0.1:PORT/` (with the trailing
    /// slash; requests are `{api_url}bot<TOKEN>/<method>`).
    pub fn api_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token the fake accepts (the first valid one).
    pub fn bot_token(&self) -> String {
        self.shared
            .with(|s| s.valid_tokens.first().cloned().unwrap_or_default())
    }

    /// Replace the set of accepted tokens; any other token gets 401 `Unauthorized`
    /// (an empty slice = revoke every token, e.g. to simulate a revoked token mid-run).
    pub fn set_valid_tokens(&self, tokens: &[&str]) {
        self.shared
            .mutate(|s| s.valid_tokens = tokens.iter().map(|t| t.to_string()).collect());
    }

    /// The bot's username without `@`.
    pub fn bot_username(&self) -> String {
        self.shared
            .with(|s| s.bot.username.clone().unwrap_or_default())
    }

    /// The bot's user id.
    pub fn bot_id(&self) -> i64 {
        self.shared.with(|s| s.bot.id)
    }

    /// The bot as a `User`.
    pub fn bot_user(&self) -> User {
        self.shared.with(|s| s.bot.clone())
    }

    // ----- chats & users -------------------------------------------------------------------------

    /// Register a human user (username = lowercased name). Re-registering updates the profile.
    pub fn user(&self, id: i64, name: &str) -> User {
        let u = User::new(id, name);
        self.add_user(u.clone());
        u
    }

    /// Register a user built by hand (e.g. `User::new(..).with_username(None)`).
    pub fn add_user(&self, user: User) {
        self.shared.mutate(|s| {
            if let Some(c) = s.chats.get_mut(&user.id)
                && c.kind == ChatKind::Private
            {
                c.user = Some(user.clone());
            }
            s.users.insert(user.id, user);
        });
    }

    /// The private chat between the bot and user `user_id` (chat id = user id). The user is
    /// taken as having started the bot, so the bot may write to it. Unknown users get a
    /// placeholder profile `User<id>`.
    pub fn private_chat(&self, user_id: i64) -> ChatRef {
        self.shared.mutate(|s| {
            let u = s.user_or_default(user_id);
            s.users.insert(user_id, u.clone());
            s.ensure_chat(user_id, ChatKind::Private, "", Some(u));
        });
        ChatRef {
            chat_id: user_id,
            thread_id: None,
        }
    }

    /// A group the bot is a member of. `chat_id` must be negative; ids `<= -1000000000000`
    /// (`-100…`) are supergroups, others basic groups, as on Telegram.
    pub fn group_chat(&self, chat_id: i64, title: &str) -> ChatRef {
        assert!(
            chat_id < 0,
            "fake telegram: group chat ids are negative (got {chat_id})"
        );
        let kind = if chat_id <= -1_000_000_000_000 {
            ChatKind::Supergroup { is_forum: false }
        } else {
            ChatKind::Group
        };
        self.shared.mutate(|s| {
            s.ensure_chat(chat_id, kind, title, None);
        });
        ChatRef {
            chat_id,
            thread_id: None,
        }
    }

    /// A supergroup (`chat_id` must be `-100…`), optionally a forum.
    pub fn supergroup_chat(&self, chat_id: i64, title: &str, is_forum: bool) -> ChatRef {
        assert!(
            chat_id <= -1_000_000_000_000,
            "fake telegram: supergroup ids look like -100xxxxxxxxxx (got {chat_id})"
        );
        self.shared.mutate(|s| {
            s.ensure_chat(chat_id, ChatKind::Supergroup { is_forum }, title, None);
        });
        ChatRef {
            chat_id,
            thread_id: None,
        }
    }

    /// Topic `thread_id` of forum supergroup `chat_id` (created, and the chat made a forum, if
    /// needed). The topic's `forum_topic_created` service message gets `message_id = thread_id`,
    /// as on Telegram, so pick thread ids not yet used as message ids in that chat (e.g. 42).
    /// `thread_id` 1 is the General topic and cannot be used here: use the chat itself.
    pub fn forum_topic(&self, chat_id: i64, thread_id: i32) -> ChatRef {
        assert!(
            thread_id > 1,
            "fake telegram: thread id 1 is the General topic; use the chat ref without thread"
        );
        if !self.shared.with(|s| s.chats.contains_key(&chat_id)) {
            self.supergroup_chat(chat_id, &format!("Forum {chat_id}"), true);
        }
        self.shared.mutate(|s| {
            let chat = s.chats.get_mut(&chat_id).unwrap();
            assert!(
                matches!(chat.kind, ChatKind::Supergroup { .. }),
                "fake telegram: topics exist only in supergroups ({chat_id} is not one)"
            );
            chat.kind = ChatKind::Supergroup { is_forum: true };
            if chat.topics.contains_key(&thread_id) {
                return;
            }
            let name = format!("Topic {thread_id}");
            chat.topics.insert(thread_id, name.clone());
            chat.next_message_id = chat.next_message_id.max(thread_id + 1);
            assert!(
                !s.messages.contains_key(&(chat_id, thread_id)),
                "fake telegram: message id {thread_id} already used in chat {chat_id}; pick another thread id"
            );
            let admin = User::new(1, "Admin");
            let mut extra = Map::new();
            extra.insert("forum_topic_created".into(), serde_json::json!({"name": name, "icon_color": 7322096}));
            s.messages.insert(
                (chat_id, thread_id),
                state::Msg {
                    chat_id,
                    message_id: thread_id,
                    thread_id: Some(thread_id),
                    is_topic_message: true,
                    from: admin,
                    date: state::now_unix(),
                    edit_date: None,
                    text: String::new(),
                    entities: Vec::new(),
                    media: None,
                    reply_to: None,
                    reply_markup: None,
                    extra,
                    bot: None,
                    deleted: false,
                    reactions: Vec::new(),
                },
            );
        });
        ChatRef {
            chat_id,
            thread_id: Some(thread_id),
        }
    }

    // ----- inbound: what humans do -------------------------------------------------------------

    /// `from_user` writes `text` in `chat` (topic if the ChatRef has one). Queues a `message`
    /// update; returns the new message_id. Entities (`/commands`, `@mentions`, URLs, hashtags)
    /// are detected like a Telegram client does.
    pub fn send_text(&self, chat: ChatRef, from_user: &User, text: &str) -> i32 {
        self.shared
            .mutate(|s| s.new_human_message(chat, from_user, text, None, None, Map::new()))
    }

    /// Like [`send_text`](Self::send_text), as a reply to `reply_to_message_id` (the bot's or a
    /// human's message in the same chat); the update embeds the full `reply_to_message`.
    pub fn send_reply(
        &self,
        chat: ChatRef,
        from_user: &User,
        text: &str,
        reply_to_message_id: i32,
    ) -> i32 {
        self.shared.mutate(|s| {
            s.new_human_message(
                chat,
                from_user,
                text,
                Some(reply_to_message_id),
                None,
                Map::new(),
            )
        })
    }

    /// A message with arbitrary extra Bot API fields merged in (e.g. `{"voice": {...}}`,
    /// `{"sticker": {...}}`); `text` may be empty.
    pub fn send_custom(&self, chat: ChatRef, from_user: &User, text: &str, fields: Value) -> i32 {
        let extra = match fields {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        self.shared
            .mutate(|s| s.new_human_message(chat, from_user, text, None, None, extra))
    }

    /// The human edits their message `message_id`: queues an `edited_message` update.
    pub fn edit_text(&self, chat: ChatRef, message_id: i32, new_text: &str) {
        self.shared
            .mutate(|s| s.human_edit(chat, message_id, new_text));
    }

    /// A human presses the inline button with `callback_data` on the bot's message
    /// `message_id`. The presser is the private chat's user, else the last human who wrote in
    /// the chat, else a placeholder user 1 "Tester". Queues a `callback_query` update (with the
    /// message as it currently is) and returns its id. Panics if that message never had such a
    /// button (a typo in the test); a button removed by a later edit can still be pressed (a
    /// stale client), as on Telegram.
    pub fn press_button(&self, chat: ChatRef, message_id: i32, callback_data: &str) -> String {
        let from = self.shared.with(|s| {
            let c = s.chats.get(&chat.chat_id);
            c.and_then(|c| {
                if c.kind == ChatKind::Private {
                    c.user.clone()
                } else {
                    c.last_human.clone()
                }
            })
            .unwrap_or_else(|| User::new(1, "Tester"))
        });
        self.press_button_as(chat, &from, message_id, callback_data)
    }

    /// [`press_button`](Self::press_button) by a given user.
    pub fn press_button_as(
        &self,
        chat: ChatRef,
        from_user: &User,
        message_id: i32,
        callback_data: &str,
    ) -> String {
        self.shared
            .mutate(|s| s.press_button(chat, from_user, message_id, callback_data))
    }

    /// A human sends a document (downloadable through getFile). Returns the message_id.
    pub fn send_document(
        &self,
        chat: ChatRef,
        from_user: &User,
        file_name: &str,
        mime_type: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i32 {
        self.shared.mutate(|s| {
            let id = s.add_file(
                bytes.to_vec(),
                Some(file_name.to_string()),
                Some(mime_type.to_string()),
                "documents",
            );
            s.new_human_message(
                chat,
                from_user,
                caption.unwrap_or(""),
                None,
                Some(Media::Document { file_id: id }),
                Map::new(),
            )
        })
    }

    /// A human sends a photo (two sizes, the largest is the real bytes). Returns the message_id.
    pub fn send_photo(
        &self,
        chat: ChatRef,
        from_user: &User,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> i32 {
        self.shared.mutate(|s| {
            let id = s.add_file(bytes.to_vec(), None, None, "photos");
            s.new_human_message(
                chat,
                from_user,
                caption.unwrap_or(""),
                None,
                Some(Media::Photo { file_id: id }),
                Map::new(),
            )
        })
    }

    /// The bot is removed: in a private chat the user blocks it (`my_chat_member` member →
    /// kicked, then sends answer 403 `Forbidden: bot was blocked by the user`); in a group it is
    /// kicked (`… → left` for basic groups, `kicked` for supergroups; 403 `Forbidden: bot was
    /// kicked from the group chat` / `… supergroup chat`).
    pub fn bot_kicked(&self, chat: ChatRef) {
        self.shared.mutate(|s| {
            let c = s
                .chats
                .get_mut(&chat.chat_id)
                .unwrap_or_else(|| panic!("fake telegram: unknown chat {}", chat.chat_id));
            c.kicked = true;
            let (from, new) = match c.kind {
                ChatKind::Private => (c.user.clone().unwrap(), "kicked"),
                ChatKind::Group => (
                    c.last_human
                        .clone()
                        .unwrap_or_else(|| User::new(1, "Admin")),
                    "left",
                ),
                ChatKind::Supergroup { .. } => (
                    c.last_human
                        .clone()
                        .unwrap_or_else(|| User::new(1, "Admin")),
                    "kicked",
                ),
            };
            s.my_chat_member(chat.chat_id, from, "member", new);
        });
    }

    /// The bot is (re)added / unblocked: `my_chat_member` → member, sends work again.
    pub fn bot_added(&self, chat: ChatRef) {
        self.shared.mutate(|s| {
            let c = s
                .chats
                .get_mut(&chat.chat_id)
                .unwrap_or_else(|| panic!("fake telegram: unknown chat {}", chat.chat_id));
            let old = if c.kicked {
                if c.kind == ChatKind::Group {
                    "left"
                } else {
                    "kicked"
                }
            } else {
                "left"
            };
            c.kicked = false;
            let from = if c.kind == ChatKind::Private {
                c.user.clone().unwrap()
            } else {
                User::new(1, "Admin")
            };
            s.my_chat_member(chat.chat_id, from, old, "member");
        });
    }

    /// Queue a raw update: `kind` is the Update field (`"message"`, `"channel_post"`, ...),
    /// `payload` its object. Returns the update_id, or `None` if the bot's current
    /// `allowed_updates` excludes `kind` (then it never exists, like on Telegram).
    pub fn push_update(&self, kind: &str, payload: Value) -> Option<i64> {
        self.shared.mutate(|s| s.push_update(kind, payload))
    }

    // ----- observation ---------------------------------------------------------------------------

    /// Messages the bot sent to `chat`, in send order. With a thread in the ChatRef only that
    /// topic's messages; without, **every** message in the chat (filter on `thread_id` for the
    /// General topic). Includes deleted ones (`deleted: true`).
    pub fn sent(&self, chat: ChatRef) -> Vec<Sent> {
        self.shared.with(|s| {
            s.sent(|m| {
                m.chat_id == chat.chat_id
                    && (chat.thread_id.is_none() || m.thread_id == chat.thread_id)
            })
        })
    }

    /// Every message the bot sent, all chats, in send order.
    pub fn sent_all(&self) -> Vec<Sent> {
        self.shared.with(|s| s.sent(|_| true))
    }

    /// One bot message by id.
    pub fn sent_message(&self, chat: ChatRef, message_id: i32) -> Option<Sent> {
        self.shared.with(|s| {
            s.sent(|m| m.chat_id == chat.chat_id && m.message_id == message_id)
                .pop()
        })
    }

    /// Any stored message (human's or bot's) as the Bot API `Message` JSON, with `reply_to_message`.
    pub fn message_json(&self, chat: ChatRef, message_id: i32) -> Option<Value> {
        self.shared.with(|s| {
            s.messages
                .get(&(chat.chat_id, message_id))
                .map(|m| s.message_json(m, true))
        })
    }

    /// Current bot reaction emoji on a message (setMessageReaction; empty after clearing).
    pub fn reactions(&self, chat: ChatRef, message_id: i32) -> Vec<String> {
        self.shared.with(|s| {
            s.messages
                .get(&(chat.chat_id, message_id))
                .map(|m| m.reactions.clone())
                .unwrap_or_default()
        })
    }

    /// Forget the recorded requests (e.g. after start-up, before a pacing assertion).
    pub fn clear_requests(&self) {
        self.shared.mutate(|s| {
            s.requests_cleared += s.requests.len();
            s.requests.clear();
        });
    }

    /// Every request received, in arrival order (includes failed, faulted and pending ones).
    pub fn all_requests(&self) -> Vec<RequestRecord> {
        self.shared.with(|s| s.requests.clone())
    }

    /// Requests for one method (canonical name, case-insensitive).
    pub fn requests(&self, method: &str) -> Vec<RequestRecord> {
        self.shared.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.method.eq_ignore_ascii_case(method))
                .cloned()
                .collect()
        })
    }

    /// Accepted answerCallbackQuery calls, in order.
    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.shared.with(|s| s.callback_answers.clone())
    }

    /// Accepted sendChatAction calls, in order.
    pub fn chat_actions(&self) -> Vec<ChatAction> {
        self.shared.with(|s| s.chat_actions.clone())
    }

    /// Command lists currently registered with setMyCommands.
    pub fn my_commands(&self) -> Vec<MyCommands> {
        self.shared.with(|s| s.commands.clone())
    }

    /// Updates still queued (not yet confirmed by a getUpdates `offset`), as JSON.
    pub fn pending_updates(&self) -> Vec<Value> {
        self.shared
            .with(|s| s.updates.iter().map(|(_, u)| u.clone()).collect())
    }

    /// The `allowed_updates` the bot last set (`None` if it never did).
    pub fn allowed_updates(&self) -> Option<Vec<String>> {
        self.shared.with(|s| s.allowed_updates.clone())
    }

    /// Number of updates discarded because `allowed_updates` excluded their kind.
    pub fn filtered_update_count(&self) -> u64 {
        self.shared.with(|s| s.dropped_updates)
    }

    /// Block until `predicate(self)` holds or `timeout` passes; returns whether it held. The
    /// predicate is re-evaluated after every change of the fake's state (and every 50 ms).
    ///
    /// ```no_run
    /// # use bridge_testkit::telegram::FakeTelegram; use std::time::Duration;
    /// # let tg = FakeTelegram::start(); let dm = tg.private_chat(1);
    /// assert!(tg.wait_for(|tg| tg.sent(dm).len() >= 3, Duration::from_secs(5)));
    /// ```
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut(&FakeTelegram) -> bool,
        timeout: Duration,
    ) -> bool {
        crate::wait::until(&self.shared.state, &self.shared.changed, |s| s.version, timeout, || predicate(self))
    }

    /// Wait until the bot has sent at least `count` messages to `chat` (see [`sent`](Self::sent))
    /// and return them; panics with what was sent so far on timeout.
    pub fn wait_for_sent(&self, chat: ChatRef, count: usize, timeout: Duration) -> Vec<Sent> {
        if !self.wait_for(|tg| tg.sent(chat).len() >= count, timeout) {
            let got: Vec<String> = self.sent(chat).into_iter().map(|s| s.text).collect();
            let errors: Vec<String> = self
                .all_requests()
                .into_iter()
                .filter(|r| r.status >= 400)
                .map(|r| format!("{} -> {} {:?}", r.method, r.status, r.description))
                .collect();
            panic!(
                "fake telegram: expected {count} bot messages in {chat:?} within {timeout:?}, got {}: {got:#?}\nerror answers: {errors:#?}",
                got.len()
            );
        }
        self.sent(chat)
    }

    /// Wait until at least `count` requests of `method` arrived; returns them. Panics on timeout.
    pub fn wait_for_requests(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<RequestRecord> {
        if !self.wait_for(|tg| tg.requests(method).len() >= count, timeout) {
            panic!(
                "fake telegram: expected {count} {method} requests within {timeout:?}, got {}",
                self.requests(method).len()
            );
        }
        self.requests(method)
    }

    /// Wait until `callback_query_id` was answered; returns the answer. Panics on timeout.
    pub fn wait_for_callback_answer(
        &self,
        callback_query_id: &str,
        timeout: Duration,
    ) -> CallbackAnswer {
        let find = |tg: &FakeTelegram| {
            tg.callback_answers()
                .into_iter()
                .find(|a| a.callback_query_id == callback_query_id)
        };
        if !self.wait_for(|tg| find(tg).is_some(), timeout) {
            panic!(
                "fake telegram: callback query {callback_query_id} not answered within {timeout:?}"
            );
        }
        find(self).unwrap()
    }

    /// Wait until every queued update has been confirmed (getUpdates called with a later
    /// `offset`), i.e. the bot has taken everything. Returns whether it happened in time.
    pub fn wait_until_consumed(&self, timeout: Duration) -> bool {
        self.wait_for(|tg| tg.shared.with(|s| s.updates.is_empty()), timeout)
    }

    // ----- faults --------------------------------------------------------------------------------

    /// The next `times` requests of `method` (case-insensitive; `"*"` = any method, getUpdates
    /// included) fail with `fault` instead of being performed. Rules are consumed in the order
    /// they were added.
    pub fn fail_next(&self, method: &str, fault: Fault, times: usize) {
        self.add_fault(method, None, fault, times);
    }

    /// Like [`fail_next`](Self::fail_next), only for requests whose `chat_id` is `chat`'s.
    pub fn fail_next_in(&self, chat: ChatRef, method: &str, fault: Fault, times: usize) {
        self.add_fault(method, Some(chat.chat_id), fault, times);
    }

    fn add_fault(&self, method: &str, chat_id: Option<i64>, fault: Fault, times: usize) {
        if times == 0 {
            return;
        }
        self.shared.mutate(|s| {
            s.faults.push(state::FaultRule {
                method: method.to_ascii_lowercase(),
                chat_id,
                fault,
                remaining: times,
            })
        });
    }

    /// Drop every pending fault rule.
    pub fn clear_faults(&self) {
        self.shared.mutate(|s| s.faults.clear());
    }

    /// How long [`Fault::Timeout`] holds a request before dropping the connection (default 20 s).
    pub fn set_timeout_hold(&self, hold: Duration) {
        self.shared.mutate(|s| s.timeout_hold = hold);
    }

    /// Enable (`Some`) or disable (`None`, the default) flood control, see [`RateLimits`].
    pub fn set_rate_limits(&self, limits: Option<RateLimits>) {
        self.shared.mutate(|s| s.rate_limits = limits);
    }

    /// Group privacy mode as set in BotFather (default **off**: the bot sees every group
    /// message, as the CCCC docs recommend). When on, group messages reach the bot only if they
    /// contain a `/command` (bare, or `@`-addressed to this bot), mention `@bot_username`, or
    /// reply to one of the bot's messages, and getMe reports `can_read_all_group_messages:
    /// false`. Private chats are unaffected.
    pub fn set_privacy_mode(&self, on: bool) {
        self.shared.mutate(|s| s.privacy_mode = on);
    }

    /// Number of group messages the bot never received because of privacy mode.
    pub fn privacy_hidden_count(&self) -> u64 {
        self.shared.with(|s| s.privacy_hidden)
    }

    /// Set (`Some(https url)`) or clear a webhook, as if another deployment had called
    /// setWebhook; while set, getUpdates answers 409.
    pub fn set_webhook(&self, url: Option<&str>) {
        self.shared
            .mutate(|s| s.webhook_url = url.map(str::to_string));
    }

    /// Network outage: close the listening socket and every open connection (clients get
    /// connection refused / reset). State is kept; [`go_online`](Self::go_online) rebinds the
    /// same port.
    pub fn go_offline(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.control.send(server::Control::Offline(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// End an outage started by [`go_offline`](Self::go_offline).
    pub fn go_online(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.control.send(server::Control::Online(tx)).is_ok() {
            rx.recv()
                .expect("fake telegram server thread")
                .expect("rebind fake telegram port");
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        let _ = self.control.send(server::Control::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("addr", &self.addr)
            .finish()
    }
}
