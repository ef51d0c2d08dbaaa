//! Public value types of the fake Telegram server: chat handles, users, observations and faults.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A handle on a chat, optionally narrowed to one forum topic (`message_thread_id`).
///
/// `ChatRef` is `Copy`: pass it by value. Build one with [`FakeTelegram::private_chat`],
/// [`FakeTelegram::group_chat`], [`FakeTelegram::supergroup_chat`] or
/// [`FakeTelegram::forum_topic`].
///
/// [`FakeTelegram::private_chat`]: super::FakeTelegram::private_chat
/// [`FakeTelegram::group_chat`]: super::FakeTelegram::group_chat
/// [`FakeTelegram::supergroup_chat`]: super::FakeTelegram::supergroup_chat
/// [`FakeTelegram::forum_topic`]: super::FakeTelegram::forum_topic
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatRef {
    /// Telegram chat id: the user id for private chats, negative for groups, `-100…` for supergroups.
    pub chat_id: i64,
    /// Forum topic id (`message_thread_id`), `None` for the chat itself / the General topic.
    pub thread_id: Option<i32>,
}

impl ChatRef {
    /// The same chat without a topic.
    pub fn whole_chat(self) -> ChatRef {
        ChatRef {
            chat_id: self.chat_id,
            thread_id: None,
        }
    }
}

/// A Telegram user (a human, or the bot itself when `is_bot`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub id: i64,
    pub is_bot: bool,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

impl User {
    /// A human user; the username defaults to the lowercased name with spaces removed.
    pub fn new(id: i64, first_name: &str) -> User {
        let username: String = first_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
            .to_lowercase();
        User {
            id,
            is_bot: false,
            first_name: first_name.to_string(),
            last_name: None,
            username: if username.is_empty() {
                None
            } else {
                Some(username)
            },
            language_code: Some("en".to_string()),
        }
    }

    /// Replace the username (`None` = the user has no username, as many real users do).
    pub fn with_username(mut self, username: Option<&str>) -> User {
        self.username = username.map(str::to_string);
        self
    }

    /// Set the last name.
    pub fn with_last_name(mut self, last_name: &str) -> User {
        self.last_name = Some(last_name.to_string());
        self
    }

    /// The Bot API `User` object.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("is_bot".into(), json!(self.is_bot));
        o.insert("first_name".into(), json!(self.first_name));
        if let Some(v) = &self.last_name {
            o.insert("last_name".into(), json!(v));
        }
        if let Some(v) = &self.username {
            o.insert("username".into(), json!(v));
        }
        if let Some(v) = &self.language_code
            && !self.is_bot
        {
            o.insert("language_code".into(), json!(v));
        }
        Value::Object(o)
    }
}

/// What kind of message the bot sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentKind {
    Text,
    Document,
    Photo,
}

/// A file the bot uploaded (sendDocument / sendPhoto).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFile {
    pub file_id: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// One successful edit of a bot message (editMessageText / editMessageCaption / editMessageReplyMarkup).
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    /// Canonical method name, e.g. `editMessageText`.
    pub method: String,
    pub at: Instant,
    /// Rendered text / caption after the edit (as a user sees it).
    pub text: String,
    /// The text exactly as the bot sent it in this edit (`None` for editMessageReplyMarkup).
    pub raw_text: Option<String>,
    pub parse_mode: Option<String>,
    /// Inline keyboard after the edit (`None` = no keyboard).
    pub reply_markup: Option<Value>,
}

/// A message the bot sent, with its current state and full edit history.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub chat_id: i64,
    pub message_id: i32,
    /// `message_thread_id` of the stored message (forum topic, or reply-thread root in supergroups).
    pub thread_id: Option<i32>,
    pub kind: SentKind,
    /// Current text (caption for media) **as a user sees it**: markup tags/escapes removed,
    /// `\r` removed and leading/trailing whitespace trimmed, exactly like the real server.
    pub text: String,
    /// Current text exactly as the bot sent it (before parsing/trimming).
    pub raw_text: String,
    /// `parse_mode` of the current text (`HTML`, `MarkdownV2`, `Markdown`) if any.
    pub parse_mode: Option<String>,
    /// Bot API `MessageEntity` objects of the current text (UTF-16 offsets).
    pub entities: Vec<Value>,
    /// Current inline keyboard (`{"inline_keyboard": [...]}`), `None` if none.
    pub reply_markup: Option<Value>,
    /// A non-inline `reply_markup` given at send time (ForceReply, ReplyKeyboardMarkup, ...).
    pub other_markup: Option<Value>,
    /// Message this one replies to (same chat), from `reply_parameters` or `reply_to_message_id`.
    pub reply_to_message_id: Option<i32>,
    pub disable_notification: bool,
    /// Unix seconds.
    pub date: i64,
    /// When the send request arrived.
    pub at: Instant,
    /// Every successful edit, oldest first.
    pub edits: Vec<Edit>,
    pub file: Option<SentFile>,
    /// Deleted by deleteMessage.
    pub deleted: bool,
    /// Canonical method that created it (`sendMessage`, `sendDocument`, `sendPhoto`).
    pub method: String,
    /// All parameters of the creating request, as JSON (multipart file parts omitted).
    pub request: Value,
}

impl Sent {
    /// `callback_data` of every button of the current inline keyboard, row by row.
    pub fn callback_data(&self) -> Vec<String> {
        markup_callback_data(self.reply_markup.as_ref())
    }

    /// Button texts of the current inline keyboard, row by row.
    pub fn button_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(rows) = self
            .reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array)
        {
            for row in rows {
                for b in row.as_array().into_iter().flatten() {
                    if let Some(t) = b.get("text").and_then(Value::as_str) {
                        out.push(t.to_string());
                    }
                }
            }
        }
        out
    }
}

pub(crate) fn markup_callback_data(markup: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rows) = markup
        .and_then(|m| m.get("inline_keyboard"))
        .and_then(Value::as_array)
    {
        for row in rows {
            for b in row.as_array().into_iter().flatten() {
                if let Some(d) = b.get("callback_data").and_then(Value::as_str) {
                    out.push(d.to_string());
                }
            }
        }
    }
    out
}

/// One HTTP request the fake received (in arrival order).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// Canonical Bot API method name (`sendMessage`, `getUpdates`, ...), whatever case the client
    /// used; the raw path segment for unknown methods; `file` for file downloads.
    pub method: String,
    /// `chat_id` parameter when it was numeric.
    pub chat_id: Option<i64>,
    /// `message_thread_id` parameter if given.
    pub thread_id: Option<i32>,
    /// Arrival time.
    pub at: Instant,
    /// HTTP status answered; `0` while still pending or when the connection was dropped
    /// ([`Fault::Timeout`], [`Fault::LostResponse`], client gave up).
    pub status: u16,
    /// `description` of an error answer.
    pub description: Option<String>,
    /// All parameters (query string, JSON, form or multipart text fields) as a JSON object.
    pub params: Value,
    /// The token used in the URL.
    pub token: String,
}

/// An answerCallbackQuery call that the fake accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
    pub url: Option<String>,
    pub cache_time: Option<i64>,
    pub at: Instant,
}

/// One `setMyCommands` scope/language entry currently registered.
#[derive(Clone, Debug, PartialEq)]
pub struct MyCommands {
    /// `BotCommandScope` object (`{"type":"default"}` when omitted).
    pub scope: Value,
    pub language_code: String,
    /// `(command, description)` pairs.
    pub commands: Vec<(String, String)>,
}

/// A `sendChatAction` the fake accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatAction {
    pub chat_id: i64,
    pub thread_id: Option<i32>,
    pub action: String,
    pub at: Instant,
}

/// An injected failure, see [`FakeTelegram::fail_next`](super::FakeTelegram::fail_next).
///
/// Except for [`Fault::LostResponse`] the request is **not performed** (no message is created,
/// no update is consumed), as with the real API.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// HTTP 429 `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after N",
    /// "parameters":{"retry_after":N}}`.
    TooManyRequests { retry_after_secs: u32 },
    /// HTTP 500 `{"ok":false,"error_code":500,"description":"Internal Server Error"}`.
    ServerError,
    /// HTTP 502 with nginx's HTML body (not JSON!), as Telegram's front end answers when the
    /// backend is down.
    BadGateway,
    /// Hold the request for the timeout hold (default 20 s, see
    /// [`FakeTelegram::set_timeout_hold`](super::FakeTelegram::set_timeout_hold)), longer than
    /// teloxide's 17 s client timeout, then drop the connection without any answer.
    Timeout,
    /// Perform the request (the message **is** created) but drop the connection instead of
    /// answering: the classic "did my send go through?" case that produces duplicates.
    LostResponse,
    /// HTTP 401 `Unauthorized`.
    Unauthorized,
    /// HTTP 403 `Forbidden: bot was blocked by the user`.
    Forbidden,
    /// HTTP 409 `Conflict: terminated by other getUpdates request; make sure that only one bot
    /// instance is running`.
    Conflict,
    /// HTTP 400 with this description (give the full text, e.g.
    /// `"Bad Request: message thread not found"`).
    BadRequest(String),
    /// Any error answer: `{"ok":false,"error_code":status,"description":description}`.
    Custom { status: u16, description: String },
}

/// Optional flood control that answers 429 like the real API when a bot sends too fast.
/// Enable with [`FakeTelegram::set_rate_limits`](super::FakeTelegram::set_rate_limits).
///
/// Sliding windows over the arrival times of *accepted* sending requests (`sendMessage`,
/// `sendDocument`, `sendPhoto`, `copyMessage`, `forwardMessage`, and edits when
/// `count_edits`). A request that would exceed a window is answered 429 with `retry_after` =
/// whole seconds until the window has room again (at least 1), and is not performed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Max messages per window to any single chat. Telegram: about 1 per second.
    pub per_chat: Option<(u32, Duration)>,
    /// Max messages per window to one group/supergroup (chat id < 0). Telegram: 20 per minute.
    pub per_group: Option<(u32, Duration)>,
    /// Max messages per window over all chats. Telegram: about 30 per second.
    pub global: Option<(u32, Duration)>,
    /// Whether edits count against the windows (they do on Telegram).
    pub count_edits: bool,
    /// Timing tolerance subtracted from each window so that a client pacing at exactly the
    /// limit is not punished for scheduler jitter. Default 50 ms.
    pub slack: Duration,
}

impl RateLimits {
    /// Telegram's documented limits: 1 msg/s per chat, 20 msg/min per group, 30 msg/s overall,
    /// edits counted, 50 ms slack.
    pub fn telegram() -> RateLimits {
        RateLimits {
            per_chat: Some((1, Duration::from_secs(1))),
            per_group: Some((20, Duration::from_secs(60))),
            global: Some((30, Duration::from_secs(1))),
            count_edits: true,
            slack: Duration::from_millis(50),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::telegram()
    }
}
