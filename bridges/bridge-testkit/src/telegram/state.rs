//! The fake server's state: chats, messages, updates, files, recorded calls, and the Bot API
//! methods that complete synchronously (everything except the long-poll wait of getUpdates).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::markup::{self, RenderError};
use super::types::*;

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An error answer: `{"ok":false,"error_code":code,"description":…,"parameters":{…}}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub description: String,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn bad(desc: &str) -> ApiError {
        ApiError {
            code: 400,
            description: format!("Bad Request: {desc}"),
            retry_after: None,
        }
    }
    pub fn new(code: u16, desc: &str) -> ApiError {
        ApiError {
            code,
            description: desc.to_string(),
            retry_after: None,
        }
    }
    pub fn too_many(secs: u32) -> ApiError {
        ApiError {
            code: 429,
            description: format!("Too Many Requests: retry after {secs}"),
            retry_after: Some(secs),
        }
    }
    pub fn body(&self) -> Value {
        let mut o = json!({"ok": false, "error_code": self.code, "description": self.description});
        if let Some(s) = self.retry_after {
            o["parameters"] = json!({"retry_after": s});
        }
        o
    }
}

pub(crate) type ApiResult = Result<Value, ApiError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChatKind {
    Private,
    Group,
    Supergroup { is_forum: bool },
}

#[derive(Clone, Debug)]
pub(crate) struct ChatInfo {
    pub id: i64,
    pub kind: ChatKind,
    pub title: String,
    /// For private chats: the other party.
    pub user: Option<User>,
    pub next_message_id: i32,
    pub topics: BTreeMap<i32, String>,
    pub kicked: bool,
    pub last_human: Option<User>,
}

impl ChatInfo {
    pub fn to_json(&self) -> Value {
        match self.kind {
            ChatKind::Private => {
                let u = self
                    .user
                    .clone()
                    .unwrap_or_else(|| User::new(self.id, &format!("User{}", self.id)));
                let mut o = json!({"id": self.id, "type": "private", "first_name": u.first_name});
                if let Some(l) = &u.last_name {
                    o["last_name"] = json!(l);
                }
                if let Some(n) = &u.username {
                    o["username"] = json!(n);
                }
                o
            }
            ChatKind::Group => json!({"id": self.id, "type": "group", "title": self.title}),
            ChatKind::Supergroup { is_forum } => {
                let mut o = json!({"id": self.id, "type": "supergroup", "title": self.title});
                if is_forum {
                    o["is_forum"] = json!(true);
                }
                o
            }
        }
    }
    fn forbidden_description(&self) -> &'static str {
        match self.kind {
            ChatKind::Private => "Forbidden: bot was blocked by the user",
            ChatKind::Group => "Forbidden: bot was kicked from the group chat",
            ChatKind::Supergroup { .. } => "Forbidden: bot was kicked from the supergroup chat",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Media {
    Document { file_id: String },
    Photo { file_id: String },
}

#[derive(Clone, Debug)]
pub(crate) struct BotInfo {
    pub raw_text: String,
    pub parse_mode: Option<String>,
    pub other_markup: Option<Value>,
    pub disable_notification: bool,
    pub at: Instant,
    pub edits: Vec<Edit>,
    pub method: String,
    pub request: Value,
    pub seq: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Msg {
    pub chat_id: i64,
    pub message_id: i32,
    pub thread_id: Option<i32>,
    pub is_topic_message: bool,
    pub from: User,
    pub date: i64,
    pub edit_date: Option<i64>,
    /// text, or caption for media
    pub text: String,
    pub entities: Vec<Value>,
    pub media: Option<Media>,
    pub reply_to: Option<i32>,
    pub reply_markup: Option<Value>,
    /// extra fields merged into the JSON (service messages, custom test payloads)
    pub extra: Map<String, Value>,
    pub bot: Option<BotInfo>,
    pub deleted: bool,
    pub reactions: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct FileEntry {
    pub file_id: String,
    pub file_unique_id: String,
    pub file_path: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(crate) struct FaultRule {
    pub method: String, // lowercase, "*" = any
    pub chat_id: Option<i64>,
    pub fault: Fault,
    pub remaining: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct CbQuery {
    pub answered: bool,
}

pub(crate) struct State {
    pub version: u64,
    pub bot: User,
    pub valid_tokens: Vec<String>,
    pub chats: HashMap<i64, ChatInfo>,
    pub users: HashMap<i64, User>,
    pub messages: BTreeMap<(i64, i32), Msg>,
    pub bot_seq: u64,
    pub files: HashMap<String, FileEntry>,
    pub next_file: u64,
    pub updates: VecDeque<(i64, Value)>,
    pub next_update_id: i64,
    pub allowed_updates: Option<Vec<String>>,
    pub poll_generation: u64,
    pub webhook_url: Option<String>,
    pub callbacks: HashMap<String, CbQuery>,
    pub next_callback: u64,
    pub callback_answers: Vec<CallbackAnswer>,
    pub requests: Vec<RequestRecord>,
    /// Records dropped by clear_requests (request indexes are absolute).
    pub requests_cleared: usize,
    pub faults: Vec<FaultRule>,
    pub rate_limits: Option<RateLimits>,
    pub send_log: Vec<(i64, Instant)>,
    pub commands: Vec<MyCommands>,
    pub chat_actions: Vec<ChatAction>,
    pub timeout_hold: Duration,
    pub dropped_updates: u64,
    /// Group privacy mode (BotFather): in groups only commands, mentions of the bot and
    /// replies to the bot are delivered.
    pub privacy_mode: bool,
    pub privacy_hidden: u64,
}

/// Bot API methods this fake implements (canonical spelling). Anything else answers 404.
pub(crate) const METHODS: &[&str] = &[
    "getMe",
    "logOut",
    "close",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "sendMessage",
    "sendDocument",
    "sendPhoto",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "getFile",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendChatAction",
    "setMessageReaction",
    "getChat",
    "leaveChat",
];

pub(crate) fn canonical_method(raw: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(raw))
}

const SEND_METHODS: &[&str] = &["sendMessage", "sendDocument", "sendPhoto"];
const EDIT_METHODS: &[&str] = &[
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
];

/// Emoji a bot may use with setMessageReaction (Bot API `ReactionTypeEmoji`). ✅ is not one.
const REACTION_EMOJI: &[&str] = &[
    "👍",
    "👎",
    "❤",
    "🔥",
    "🥰",
    "👏",
    "😁",
    "🤔",
    "🤯",
    "😱",
    "🤬",
    "😢",
    "🎉",
    "🤩",
    "🤮",
    "💩",
    "🙏",
    "👌",
    "🕊",
    "🤡",
    "🥱",
    "🥴",
    "😍",
    "🐳",
    "❤\u{200d}🔥",
    "🌚",
    "🌭",
    "💯",
    "🤣",
    "⚡",
    "🍌",
    "🏆",
    "💔",
    "🤨",
    "😐",
    "🍓",
    "🍾",
    "💋",
    "🖕",
    "😈",
    "😴",
    "😭",
    "🤓",
    "👻",
    "👨\u{200d}💻",
    "👀",
    "🎃",
    "🙈",
    "😇",
    "😨",
    "🤝",
    "✍",
    "🤗",
    "🫡",
    "🎅",
    "🎄",
    "☃",
    "💅",
    "🤪",
    "🗿",
    "🆒",
    "💘",
    "🙉",
    "🦄",
    "😘",
    "💊",
    "🙊",
    "😎",
    "👾",
    "🤷\u{200d}♂",
    "🤷",
    "🤷\u{200d}♀",
    "😡",
];

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// Update kinds not delivered unless explicitly listed in allowed_updates.
const OPT_IN_UPDATES: &[&str] = &["chat_member", "message_reaction", "message_reaction_count"];

// ---------------------------------------------------------------------------------------------
// Parameters

/// Request parameters normalised to JSON: values from query strings, forms and multipart text
/// parts arrive as strings, so every accessor also accepts the string form.
pub(crate) struct Params {
    pub map: Map<String, Value>,
    pub files: HashMap<String, Upload>,
}

#[derive(Clone, Debug)]
pub(crate) struct Upload {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl Params {
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }
    pub fn i64(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(&format!("invalid {k} specified"))),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad(&format!("invalid {k} specified"))),
            Some(_) => Err(ApiError::bad(&format!("invalid {k} specified"))),
        }
    }
    pub fn str(&self, k: &str) -> Option<String> {
        match self.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    pub fn bool(&self, k: &str) -> bool {
        match self.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }
    /// A JSON-typed parameter, given either as JSON or as a JSON-encoded string.
    pub fn json(&self, k: &str) -> Result<Option<Value>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    return Ok(None);
                }
                serde_json::from_str(s)
                    .map(Some)
                    .map_err(|_| ApiError::bad(&format!("can't parse {k} JSON object")))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    }
    /// chat_id: numeric, or "@username" (which this fake never knows).
    pub fn chat_id(&self) -> Result<i64, ApiError> {
        match self.get("chat_id") {
            None => Err(ApiError::bad("chat_id is empty")),
            Some(Value::String(s)) if s.starts_with('@') => Err(ApiError::bad("chat not found")),
            _ => self
                .i64("chat_id")?
                .ok_or_else(|| ApiError::bad("chat_id is empty")),
        }
    }
}

// ---------------------------------------------------------------------------------------------

impl State {
    pub fn new(bot: User, token: String) -> State {
        State {
            version: 0,
            bot,
            valid_tokens: vec![token],
            chats: HashMap::new(),
            users: HashMap::new(),
            messages: BTreeMap::new(),
            bot_seq: 0,
            files: HashMap::new(),
            next_file: 1,
            updates: VecDeque::new(),
            next_update_id: 700_000_001,
            allowed_updates: None,
            poll_generation: 0,
            webhook_url: None,
            callbacks: HashMap::new(),
            next_callback: 1,
            callback_answers: Vec::new(),
            requests: Vec::new(),
            requests_cleared: 0,
            faults: Vec::new(),
            rate_limits: None,
            send_log: Vec::new(),
            commands: Vec::new(),
            chat_actions: Vec::new(),
            timeout_hold: Duration::from_secs(20),
            dropped_updates: 0,
            privacy_mode: false,
            privacy_hidden: 0,
        }
    }

    // ----- chats & users ---------------------------------------------------------------------

    pub fn ensure_chat(
        &mut self,
        id: i64,
        kind: ChatKind,
        title: &str,
        user: Option<User>,
    ) -> &mut ChatInfo {
        let chat = self.chats.entry(id).or_insert_with(|| ChatInfo {
            id,
            kind: kind.clone(),
            title: title.to_string(),
            user: user.clone(),
            next_message_id: 1,
            topics: BTreeMap::new(),
            kicked: false,
            last_human: None,
        });
        if let (ChatKind::Supergroup { is_forum: true }, ChatKind::Supergroup { is_forum }) =
            (&kind, &mut chat.kind)
        {
            *is_forum = true;
        }
        if user.is_some() {
            chat.user = user;
        }
        if !title.is_empty() && chat.kind != ChatKind::Private {
            chat.title = title.to_string();
        }
        chat
    }

    pub fn chat(&self, id: i64) -> Result<&ChatInfo, ApiError> {
        match self.chats.get(&id) {
            Some(c) => Ok(c),
            // a known user who never opened a chat with the bot
            None if id > 0 && self.users.contains_key(&id) => Err(ApiError::new(
                403,
                "Forbidden: bot can't initiate conversation with a user",
            )),
            None => Err(ApiError::bad("chat not found")),
        }
    }

    fn alloc_message_id(&mut self, chat_id: i64) -> i32 {
        let chat = self.chats.get_mut(&chat_id).expect("chat exists");
        let id = chat.next_message_id;
        chat.next_message_id += 1;
        id
    }

    pub fn user_or_default(&self, id: i64) -> User {
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| User::new(id, &format!("User{id}")))
    }

    // ----- message JSON ----------------------------------------------------------------------

    pub fn message_json(&self, m: &Msg, with_reply: bool) -> Value {
        let chat = self
            .chats
            .get(&m.chat_id)
            .map(ChatInfo::to_json)
            .unwrap_or(json!({"id": m.chat_id, "type": "private"}));
        let mut o = Map::new();
        o.insert("message_id".into(), json!(m.message_id));
        if let Some(t) = m.thread_id {
            o.insert("message_thread_id".into(), json!(t));
        }
        o.insert("from".into(), m.from.to_json());
        o.insert("chat".into(), chat);
        o.insert("date".into(), json!(m.date));
        if let Some(e) = m.edit_date {
            o.insert("edit_date".into(), json!(e));
        }
        if m.is_topic_message {
            o.insert("is_topic_message".into(), json!(true));
        }
        if with_reply && let Some(r) = m.reply_to.and_then(|r| self.messages.get(&(m.chat_id, r))) {
            o.insert("reply_to_message".into(), self.message_json(r, false));
        }
        match &m.media {
            None => {
                if !m.text.is_empty() {
                    o.insert("text".into(), json!(m.text));
                    if !m.entities.is_empty() {
                        o.insert("entities".into(), json!(m.entities));
                    }
                }
            }
            Some(media) => {
                match media {
                    Media::Document { file_id } => {
                        let f = &self.files[file_id];
                        let mut d = json!({"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.bytes.len()});
                        if let Some(n) = &f.file_name {
                            d["file_name"] = json!(n);
                        }
                        if let Some(mt) = &f.mime_type {
                            d["mime_type"] = json!(mt);
                        }
                        o.insert("document".into(), d);
                    }
                    Media::Photo { file_id } => {
                        let f = &self.files[file_id];
                        o.insert(
                            "photo".into(),
                            json!([
                                {"file_id": format!("{}-thumb", f.file_id), "file_unique_id": format!("{}t", f.file_unique_id), "file_size": f.bytes.len().min(2048), "width": 90, "height": 68},
                                {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.bytes.len(), "width": 800, "height": 600}
                            ]),
                        );
                    }
                }
                if !m.text.is_empty() {
                    o.insert("caption".into(), json!(m.text));
                    if !m.entities.is_empty() {
                        o.insert("caption_entities".into(), json!(m.entities));
                    }
                }
            }
        }
        for (k, v) in &m.extra {
            o.insert(k.clone(), v.clone());
        }
        if let Some(rm) = &m.reply_markup {
            o.insert("reply_markup".into(), rm.clone());
        }
        Value::Object(o)
    }

    fn msg_json_by_key(&self, chat_id: i64, id: i32) -> Value {
        self.message_json(&self.messages[&(chat_id, id)], true)
    }

    // ----- updates ---------------------------------------------------------------------------

    /// Queue an update of `kind` (`message`, `callback_query`, ...). Returns its update_id, or
    /// None if the current allowed_updates setting filters it out (then it never exists, like
    /// on Telegram).
    pub fn push_update(&mut self, kind: &str, payload: Value) -> Option<i64> {
        let allowed = match &self.allowed_updates {
            None => !OPT_IN_UPDATES.contains(&kind),
            Some(list) if list.is_empty() => !OPT_IN_UPDATES.contains(&kind),
            Some(list) => list.iter().any(|k| k == kind),
        };
        if !allowed {
            self.dropped_updates += 1;
            return None;
        }
        let id = self.next_update_id;
        self.next_update_id += 1;
        let mut u = Map::new();
        u.insert("update_id".into(), json!(id));
        u.insert(kind.into(), payload);
        self.updates.push_back((id, Value::Object(u)));
        Some(id)
    }

    /// Apply getUpdates' `offset` (confirm and forget) and take up to `limit` updates.
    pub fn take_updates(&mut self, offset: i64, limit: usize) -> Vec<Value> {
        if offset > 0 {
            while self.updates.front().is_some_and(|(id, _)| *id < offset) {
                self.updates.pop_front();
            }
        } else if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while self.updates.len() > keep {
                self.updates.pop_front();
            }
        }
        self.updates
            .iter()
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect()
    }

    // ----- inbound (human side) --------------------------------------------------------------

    /// Thread id and topic flag for a new message in `chat` (ChatRef thread) replying to `reply_to`.
    fn thread_for(
        &self,
        chat_id: i64,
        thread: Option<i32>,
        reply_to: Option<i32>,
    ) -> (Option<i32>, bool) {
        let Some(info) = self.chats.get(&chat_id) else {
            return (None, false);
        };
        match info.kind {
            ChatKind::Supergroup { is_forum } => {
                if let Some(t) = thread
                    && is_forum
                {
                    return (Some(t), true);
                }
                // replies in supergroups (non-forum, or forum General) carry the reply-thread root
                if let Some(r) = reply_to
                    && let Some(rm) = self.messages.get(&(chat_id, r))
                {
                    return (Some(rm.thread_id.unwrap_or(r)), false);
                }
                (None, false)
            }
            _ => (None, false),
        }
    }

    pub fn new_human_message(
        &mut self,
        chat: ChatRef,
        from: &User,
        text: &str,
        reply_to: Option<i32>,
        media: Option<Media>,
        extra: Map<String, Value>,
    ) -> i32 {
        assert!(
            self.chats.contains_key(&chat.chat_id),
            "fake telegram: unknown chat {} (create it first)",
            chat.chat_id
        );
        if let Some(r) = reply_to {
            assert!(
                self.messages.contains_key(&(chat.chat_id, r)),
                "fake telegram: reply to unknown message {r} in chat {}",
                chat.chat_id
            );
        }
        if let Some(t) = chat.thread_id {
            let info = &self.chats[&chat.chat_id];
            assert!(
                info.topics.contains_key(&t),
                "fake telegram: unknown forum topic {t} in chat {}",
                chat.chat_id
            );
        }
        self.users.insert(from.id, from.clone());
        let id = self.alloc_message_id(chat.chat_id);
        let (thread_id, is_topic) = self.thread_for(chat.chat_id, chat.thread_id, reply_to);
        // Real quirk: a topic message that is not an explicit reply carries reply_to_message =
        // the topic's forum_topic_created service message.
        let reply_to = reply_to.or(if is_topic { thread_id } else { None });
        let cleaned: String = text.chars().filter(|c| *c != '\r').collect();
        let trimmed = cleaned
            .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n'))
            .to_string();
        let entities = markup::detect_entities(&trimmed);
        let msg = Msg {
            chat_id: chat.chat_id,
            message_id: id,
            thread_id,
            is_topic_message: is_topic,
            from: from.clone(),
            date: now_unix(),
            edit_date: None,
            text: trimmed,
            entities,
            media,
            reply_to,
            reply_markup: None,
            extra,
            bot: None,
            deleted: false,
            reactions: Vec::new(),
        };
        self.messages.insert((chat.chat_id, id), msg);
        if let Some(c) = self.chats.get_mut(&chat.chat_id) {
            c.last_human = Some(from.clone());
        }
        if self.delivered_with_privacy(chat.chat_id, id) {
            let json = self.msg_json_by_key(chat.chat_id, id);
            self.push_update("message", json);
        } else {
            self.privacy_hidden += 1;
        }
        id
    }

    /// Whether a new human message reaches the bot under the current privacy mode.
    fn delivered_with_privacy(&self, chat_id: i64, id: i32) -> bool {
        let chat = &self.chats[&chat_id];
        if !self.privacy_mode || chat.kind == ChatKind::Private {
            return true;
        }
        let m = &self.messages[&(chat_id, id)];
        let me = self.bot.username.clone().unwrap_or_default().to_lowercase();
        if m.reply_to
            .and_then(|r| self.messages.get(&(chat_id, r)))
            .is_some_and(|r| r.bot.is_some())
        {
            return true;
        }
        let chars: Vec<u16> = m.text.encode_utf16().collect();
        m.entities.iter().any(|e| {
            let off = e["offset"].as_u64().unwrap_or(0) as usize;
            let len = e["length"].as_u64().unwrap_or(0) as usize;
            let t =
                String::from_utf16_lossy(chars.get(off..off + len).unwrap_or(&[])).to_lowercase();
            match e["type"].as_str() {
                Some("mention") => t == format!("@{me}"),
                Some("bot_command") => match t.split_once('@') {
                    Some((_, bot)) => bot == me,
                    None => true,
                },
                _ => false,
            }
        })
    }

    pub fn human_edit(&mut self, chat: ChatRef, message_id: i32, new_text: &str) {
        let m = self
            .messages
            .get_mut(&(chat.chat_id, message_id))
            .unwrap_or_else(|| {
                panic!(
                    "fake telegram: no message {message_id} in chat {}",
                    chat.chat_id
                )
            });
        assert!(
            m.bot.is_none(),
            "fake telegram: edit_text is for human messages; the bot edits via the API"
        );
        m.text = new_text.trim().to_string();
        m.entities = markup::detect_entities(&m.text);
        m.edit_date = Some(now_unix());
        let json = self.msg_json_by_key(chat.chat_id, message_id);
        self.push_update("edited_message", json);
    }

    pub fn add_file(
        &mut self,
        bytes: Vec<u8>,
        file_name: Option<String>,
        mime_type: Option<String>,
        dir: &str,
    ) -> String {
        let n = self.next_file;
        self.next_file += 1;
        let file_id = format!("BQACAgIAAxkBAAI{n:06}fake");
        let ext = file_name
            .as_deref()
            .and_then(|f| f.rsplit_once('.').map(|(_, e)| e.to_string()))
            .unwrap_or_else(|| {
                if dir == "photos" {
                    "jpg".into()
                } else {
                    "bin".into()
                }
            });
        let entry = FileEntry {
            file_id: file_id.clone(),
            file_unique_id: format!("AgAD{n:06}"),
            file_path: format!("{dir}/file_{n}.{ext}"),
            file_name,
            mime_type,
            bytes,
        };
        self.files.insert(file_id.clone(), entry);
        file_id
    }

    pub fn press_button(
        &mut self,
        chat: ChatRef,
        from: &User,
        message_id: i32,
        data: &str,
    ) -> String {
        let m = self
            .messages
            .get(&(chat.chat_id, message_id))
            .unwrap_or_else(|| {
                panic!(
                    "fake telegram: no message {message_id} in chat {}",
                    chat.chat_id
                )
            });
        let mut ever: Vec<String> = markup_callback_data(m.reply_markup.as_ref());
        if let Some(b) = &m.bot {
            for e in &b.edits {
                ever.extend(markup_callback_data(e.reply_markup.as_ref()));
            }
            ever.extend(markup_callback_data(b.request.get("reply_markup")));
        }
        assert!(
            ever.iter().any(|d| d == data),
            "fake telegram: message {message_id} never had a button with callback_data {data:?} (has {ever:?})"
        );
        self.users.insert(from.id, from.clone());
        let id = format!("{}", 4_000_000_000_000_000_000u64 + self.next_callback);
        self.next_callback += 1;
        self.callbacks
            .insert(id.clone(), CbQuery { answered: false });
        let payload = json!({
            "id": id,
            "from": from.to_json(),
            "message": self.msg_json_by_key(chat.chat_id, message_id),
            "chat_instance": format!("{}", (chat.chat_id as i128).unsigned_abs() as u64 ^ 0x5f5e_1000),
            "data": data,
        });
        self.push_update("callback_query", payload);
        id
    }

    pub fn my_chat_member(&mut self, chat_id: i64, from: User, old: &str, new: &str) {
        let chat = self
            .chats
            .get(&chat_id)
            .unwrap_or_else(|| panic!("fake telegram: unknown chat {chat_id}"));
        let mut newm = json!({"status": new, "user": self.bot.to_json()});
        if new == "kicked" {
            newm["until_date"] = json!(0);
        }
        let payload = json!({
            "chat": chat.to_json(),
            "from": from.to_json(),
            "date": now_unix(),
            "old_chat_member": {"status": old, "user": self.bot.to_json()},
            "new_chat_member": newm,
        });
        self.push_update("my_chat_member", payload);
    }

    // ----- observation -----------------------------------------------------------------------

    pub fn sent(&self, filter: impl Fn(&Msg) -> bool) -> Vec<Sent> {
        let mut v: Vec<&Msg> = self
            .messages
            .values()
            .filter(|m| m.bot.is_some() && filter(m))
            .collect();
        v.sort_by_key(|m| m.bot.as_ref().unwrap().seq);
        v.into_iter().map(|m| self.to_sent(m)).collect()
    }

    fn to_sent(&self, m: &Msg) -> Sent {
        let b = m.bot.as_ref().unwrap();
        let file = match &m.media {
            Some(Media::Document { file_id }) | Some(Media::Photo { file_id }) => {
                let f = &self.files[file_id];
                Some(SentFile {
                    file_id: f.file_id.clone(),
                    file_name: f.file_name.clone(),
                    mime_type: f.mime_type.clone(),
                    bytes: f.bytes.clone(),
                })
            }
            None => None,
        };
        Sent {
            chat_id: m.chat_id,
            message_id: m.message_id,
            thread_id: m.thread_id,
            kind: match m.media {
                None => SentKind::Text,
                Some(Media::Document { .. }) => SentKind::Document,
                Some(Media::Photo { .. }) => SentKind::Photo,
            },
            text: m.text.clone(),
            raw_text: b.raw_text.clone(),
            parse_mode: b.parse_mode.clone(),
            entities: m.entities.clone(),
            reply_markup: m.reply_markup.clone(),
            other_markup: b.other_markup.clone(),
            reply_to_message_id: m.reply_to.filter(|r| {
                !(m.is_topic_message && Some(*r) == m.thread_id && !b.request_has_reply())
            }),
            disable_notification: b.disable_notification,
            date: m.date,
            at: b.at,
            edits: b.edits.clone(),
            file,
            deleted: m.deleted,
            method: b.method.clone(),
            request: b.request.clone(),
        }
    }

    // ----- faults & rate limits ----------------------------------------------------------------

    pub fn take_fault(&mut self, method: &str, chat_id: Option<i64>) -> Option<Fault> {
        let lower = method.to_ascii_lowercase();
        let pos = self.faults.iter().position(|r| {
            (r.method == "*" || r.method == lower)
                && (r.chat_id.is_none() || r.chat_id == chat_id)
                && r.remaining > 0
        })?;
        let rule = &mut self.faults[pos];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            self.faults.remove(pos);
        }
        Some(fault)
    }

    fn counts_for_rate(&self, method: &str) -> bool {
        SEND_METHODS.contains(&method)
            || (EDIT_METHODS.contains(&method)
                && self.rate_limits.as_ref().is_some_and(|r| r.count_edits))
    }

    /// 429 if sending now to `chat_id` would exceed a configured window.
    pub fn check_rate(
        &self,
        method: &str,
        chat_id: Option<i64>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let Some(rl) = &self.rate_limits else {
            return Ok(());
        };
        let Some(chat_id) = chat_id else {
            return Ok(());
        };
        if !self.counts_for_rate(method) {
            return Ok(());
        }
        let check =
            |limit: Option<(u32, Duration)>, pred: &dyn Fn(i64) -> bool| -> Result<(), ApiError> {
                let Some((max, window)) = limit else {
                    return Ok(());
                };
                let window = window.saturating_sub(rl.slack);
                let in_window: Vec<Instant> = self
                    .send_log
                    .iter()
                    .filter(|(c, at)| pred(*c) && now.saturating_duration_since(*at) < window)
                    .map(|(_, at)| *at)
                    .collect();
                if in_window.len() as u32 >= max {
                    let oldest = in_window.iter().min().copied().unwrap();
                    let wait = (oldest + window).saturating_duration_since(now);
                    let secs = (wait.as_millis().div_ceil(1000) as u32).max(1);
                    return Err(ApiError::too_many(secs));
                }
                Ok(())
            };
        check(rl.per_chat, &|c| c == chat_id)?;
        if chat_id < 0 {
            check(rl.per_group, &|c| c == chat_id)?;
        }
        check(rl.global, &|_| true)?;
        Ok(())
    }

    pub fn note_accepted(&mut self, method: &str, chat_id: Option<i64>, at: Instant) {
        if let Some(c) = chat_id
            && (SEND_METHODS.contains(&method) || EDIT_METHODS.contains(&method))
            && (self.rate_limits.is_none() || self.counts_for_rate(method))
        {
            self.send_log.push((c, at));
            if self.send_log.len() > 10_000 {
                self.send_log.drain(..5_000);
            }
        }
    }

    // ----- methods -------------------------------------------------------------------------------

    pub fn me_json(&self) -> Value {
        let mut me = self.bot.to_json();
        let o = me.as_object_mut().unwrap();
        for (k, v) in [
            ("can_join_groups", true),
            ("can_read_all_group_messages", !self.privacy_mode),
            ("supports_inline_queries", false),
            ("can_connect_to_business", false),
            ("has_main_web_app", false),
        ] {
            o.insert(k.into(), json!(v));
        }
        me
    }

    /// Execute a method that does not block. getUpdates is handled by the server (long poll).
    pub fn call(&mut self, method: &str, p: &Params, at: Instant) -> ApiResult {
        match method {
            "getMe" => Ok(self.me_json()),
            "logOut" | "close" => Ok(json!(true)),
            "setWebhook" => {
                let url = p.str("url").unwrap_or_default();
                if url.is_empty() {
                    self.webhook_url = None;
                } else if !url.starts_with("https://") {
                    return Err(ApiError::bad(
                        "bad webhook: HTTPS url must be provided for webhook",
                    ));
                } else {
                    self.webhook_url = Some(url);
                }
                if p.bool("drop_pending_updates") {
                    self.updates.clear();
                }
                Ok(json!(true))
            }
            "deleteWebhook" => {
                self.webhook_url = None;
                if p.bool("drop_pending_updates") {
                    self.updates.clear();
                }
                Ok(json!(true))
            }
            "getWebhookInfo" => Ok(json!({
                "url": self.webhook_url.clone().unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": self.updates.len(),
            })),
            "sendMessage" => self.send_message(p, at),
            "sendDocument" => self.send_media(p, at, false),
            "sendPhoto" => self.send_media(p, at, true),
            "editMessageText" | "editMessageCaption" | "editMessageReplyMarkup" => {
                self.edit_message(method, p, at)
            }
            "deleteMessage" => {
                let chat_id = p.chat_id()?;
                self.chat(chat_id)?;
                let id = p
                    .i64("message_id")?
                    .ok_or_else(|| ApiError::bad("message identifier is not specified"))?
                    as i32;
                match self.messages.get_mut(&(chat_id, id)) {
                    Some(m) if !m.deleted => {
                        m.deleted = true;
                        Ok(json!(true))
                    }
                    _ => Err(ApiError::bad("message to delete not found")),
                }
            }
            "answerCallbackQuery" => {
                let id = p.str("callback_query_id").unwrap_or_default();
                let text = p.str("text");
                if text.as_deref().is_some_and(|t| t.chars().count() > 200) {
                    return Err(ApiError::bad("MESSAGE_TOO_LONG"));
                }
                match self.callbacks.get_mut(&id) {
                    Some(q) if !q.answered => {
                        q.answered = true;
                        self.callback_answers.push(CallbackAnswer {
                            callback_query_id: id,
                            text,
                            show_alert: p.bool("show_alert"),
                            url: p.str("url"),
                            cache_time: p.i64("cache_time")?,
                            at,
                        });
                        Ok(json!(true))
                    }
                    _ => Err(ApiError::bad(
                        "query is too old and response timeout expired or query ID is invalid",
                    )),
                }
            }
            "getFile" => {
                let id = p.str("file_id").unwrap_or_default();
                let f = self
                    .files
                    .get(&id)
                    .ok_or_else(|| ApiError::bad("invalid file id"))?;
                if f.bytes.len() > 20 * 1024 * 1024 {
                    return Err(ApiError::bad("file is too big"));
                }
                Ok(
                    json!({"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": f.bytes.len(), "file_path": f.file_path}),
                )
            }
            "setMyCommands" => {
                let cmds = p
                    .json("commands")?
                    .ok_or_else(|| ApiError::bad("parameter \"commands\" is required"))?;
                let arr = cmds
                    .as_array()
                    .ok_or_else(|| ApiError::bad("can't parse commands JSON object"))?;
                if arr.len() > 100 {
                    return Err(ApiError::bad("too many commands specified"));
                }
                let mut list = Vec::new();
                for c in arr {
                    let cmd = c.get("command").and_then(Value::as_str).unwrap_or("");
                    let desc = c.get("description").and_then(Value::as_str).unwrap_or("");
                    let valid = !cmd.is_empty()
                        && cmd.len() <= 32
                        && cmd
                            .chars()
                            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
                    if !valid {
                        return Err(ApiError::bad("BOT_COMMAND_INVALID"));
                    }
                    let dl = desc.chars().count();
                    if dl == 0 || dl > 256 {
                        return Err(ApiError::bad("BOT_COMMAND_DESCRIPTION_INVALID"));
                    }
                    list.push((cmd.to_string(), desc.to_string()));
                }
                let scope = p.json("scope")?.unwrap_or(json!({"type": "default"}));
                let lang = p.str("language_code").unwrap_or_default();
                self.commands
                    .retain(|c| !(c.scope == scope && c.language_code == lang));
                self.commands.push(MyCommands {
                    scope,
                    language_code: lang,
                    commands: list,
                });
                Ok(json!(true))
            }
            "getMyCommands" => {
                let scope = p.json("scope")?.unwrap_or(json!({"type": "default"}));
                let lang = p.str("language_code").unwrap_or_default();
                let cmds = self
                    .commands
                    .iter()
                    .find(|c| c.scope == scope && c.language_code == lang)
                    .map(|c| {
                        c.commands
                            .iter()
                            .map(|(c, d)| json!({"command": c, "description": d}))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                Ok(json!(cmds))
            }
            "deleteMyCommands" => {
                let scope = p.json("scope")?.unwrap_or(json!({"type": "default"}));
                let lang = p.str("language_code").unwrap_or_default();
                self.commands
                    .retain(|c| !(c.scope == scope && c.language_code == lang));
                Ok(json!(true))
            }
            "sendChatAction" => {
                let chat_id = p.chat_id()?;
                let chat = self.chat(chat_id)?;
                if chat.kicked {
                    return Err(ApiError::new(403, chat.forbidden_description()));
                }
                let action = p.str("action").unwrap_or_default();
                if !CHAT_ACTIONS.contains(&action.as_str()) {
                    return Err(ApiError::bad("wrong parameter action in request"));
                }
                let thread_id = p.i64("message_thread_id")?.map(|t| t as i32);
                self.chat_actions.push(ChatAction {
                    chat_id,
                    thread_id,
                    action,
                    at,
                });
                Ok(json!(true))
            }
            "setMessageReaction" => {
                let chat_id = p.chat_id()?;
                let chat = self.chat(chat_id)?;
                if chat.kicked {
                    return Err(ApiError::new(403, chat.forbidden_description()));
                }
                let id = p
                    .i64("message_id")?
                    .ok_or_else(|| ApiError::bad("message identifier is not specified"))?
                    as i32;
                let reactions = p.json("reaction")?.unwrap_or(json!([]));
                let arr = reactions.as_array().cloned().unwrap_or_default();
                let mut emojis = Vec::new();
                for r in &arr {
                    match (
                        r.get("type").and_then(Value::as_str),
                        r.get("emoji").and_then(Value::as_str),
                    ) {
                        (Some("emoji"), Some(e))
                            if REACTION_EMOJI.contains(&e.trim_end_matches('\u{fe0f}')) =>
                        {
                            emojis.push(e.to_string())
                        }
                        _ => return Err(ApiError::bad("REACTION_INVALID")),
                    }
                }
                if emojis.len() > 1 {
                    return Err(ApiError::bad("REACTIONS_TOO_MANY"));
                }
                let m = self
                    .messages
                    .get_mut(&(chat_id, id))
                    .filter(|m| !m.deleted)
                    .ok_or_else(|| ApiError::bad("message to react not found"))?;
                m.reactions = emojis;
                Ok(json!(true))
            }
            "getChat" => {
                let chat_id = p.chat_id()?;
                let chat = self.chat(chat_id)?;
                let mut o = chat.to_json();
                o["accent_color_id"] = json!(0);
                o["max_reaction_count"] = json!(11);
                o["accepted_gift_types"] = json!({
                    "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false, "premium_subscription": false
                });
                Ok(o)
            }
            "leaveChat" => {
                let chat_id = p.chat_id()?;
                self.chat(chat_id)?;
                self.chats.get_mut(&chat_id).unwrap().kicked = true;
                Ok(json!(true))
            }
            _ => Err(ApiError::new(404, "Not Found")),
        }
    }

    /// Common checks for sending into a chat; returns (thread_id to store, is_topic, reply_to).
    fn prepare_send(
        &self,
        chat_id: i64,
        p: &Params,
    ) -> Result<(Option<i32>, bool, Option<i32>), ApiError> {
        let chat = self.chat(chat_id)?;
        if chat.kicked {
            return Err(ApiError::new(403, chat.forbidden_description()));
        }
        let requested_thread = p
            .i64("message_thread_id")?
            .filter(|t| *t != 0)
            .map(|t| t as i32);
        // reply target: reply_parameters (Bot API 7+) or the legacy reply_to_message_id
        let mut reply_to = None;
        let mut allow_without = p.bool("allow_sending_without_reply");
        if let Some(rp) = p.json("reply_parameters")? {
            if rp
                .get("chat_id")
                .is_some_and(|c| c.as_i64() != Some(chat_id) && !c.is_null())
            {
                return Err(ApiError::bad(
                    "cross-chat replies are not supported by the fake",
                ));
            }
            reply_to = rp
                .get("message_id")
                .and_then(Value::as_i64)
                .map(|v| v as i32);
            if reply_to.is_none() {
                return Err(ApiError::bad("can't parse reply parameters JSON object"));
            }
            allow_without = rp
                .get("allow_sending_without_reply")
                .and_then(Value::as_bool)
                .unwrap_or(allow_without);
        } else if let Some(r) = p.i64("reply_to_message_id")? {
            reply_to = Some(r as i32);
        }
        if let Some(r) = reply_to {
            let exists = self.messages.get(&(chat_id, r)).is_some_and(|m| !m.deleted);
            if !exists {
                if allow_without {
                    reply_to = None;
                } else {
                    return Err(ApiError::bad("message to be replied not found"));
                }
            }
        }
        let (thread, is_topic) = match chat.kind {
            ChatKind::Supergroup { is_forum: true } => match requested_thread {
                Some(t) if chat.topics.contains_key(&t) => (Some(t), true),
                Some(_) => return Err(ApiError::bad("message thread not found")),
                None => match reply_to.and_then(|r| self.messages.get(&(chat_id, r))) {
                    // replying inside a topic keeps the topic
                    Some(rm) if rm.is_topic_message => (rm.thread_id, true),
                    Some(rm) => (Some(rm.thread_id.unwrap_or(rm.message_id)), false),
                    None => (None, false),
                },
            },
            ChatKind::Supergroup { is_forum: false } => {
                match reply_to.and_then(|r| self.messages.get(&(chat_id, r))) {
                    Some(rm) => (Some(rm.thread_id.unwrap_or(rm.message_id)), false),
                    None => (None, false),
                }
            }
            _ => (None, false),
        };
        let reply_to = reply_to.or(if is_topic { thread } else { None });
        Ok((thread, is_topic, reply_to))
    }

    /// Validate and normalise reply_markup. Returns (inline keyboard to store on the message, other markup).
    fn check_markup(&self, p: &Params) -> Result<(Option<Value>, Option<Value>), ApiError> {
        let Some(rm) = p.json("reply_markup")? else {
            return Ok((None, None));
        };
        if !rm.is_object() {
            return Err(ApiError::bad(
                "can't parse reply keyboard markup JSON object",
            ));
        }
        let Some(kb) = rm.get("inline_keyboard") else {
            return Ok((None, Some(rm)));
        };
        let rows = kb
            .as_array()
            .ok_or_else(|| ApiError::bad("can't parse inline keyboard markup JSON object"))?;
        let mut total = 0;
        for row in rows {
            let row = row
                .as_array()
                .ok_or_else(|| ApiError::bad("can't parse inline keyboard markup JSON object"))?;
            if row.len() > 8 {
                return Err(ApiError::bad("BUTTONS_TOO_MUCH"));
            }
            for b in row {
                total += 1;
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                if text.is_empty() {
                    return Err(ApiError::bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
                    ));
                }
                if let Some(d) = b.get("callback_data") {
                    let d = d.as_str().unwrap_or("");
                    if d.is_empty() || d.len() > 64 {
                        return Err(ApiError::bad("BUTTON_DATA_INVALID"));
                    }
                } else if let Some(u) = b.get("url") {
                    let u = u.as_str().unwrap_or("");
                    let ok = ["http://", "https://", "tg://"]
                        .iter()
                        .any(|s| u.starts_with(s) && u.len() > s.len());
                    if !ok {
                        return Err(ApiError::bad("BUTTON_URL_INVALID"));
                    }
                } else if ![
                    "switch_inline_query",
                    "switch_inline_query_current_chat",
                    "copy_text",
                    "web_app",
                    "login_url",
                    "pay",
                    "callback_game",
                    "switch_inline_query_chosen_chat",
                ]
                .iter()
                .any(|k| b.get(*k).is_some())
                {
                    return Err(ApiError::bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
                    ));
                }
            }
        }
        if total > 100 {
            return Err(ApiError::bad("BUTTONS_TOO_MUCH"));
        }
        if total == 0 {
            return Ok((None, None));
        }
        Ok((Some(rm), None))
    }

    fn render_text(
        text: &str,
        parse_mode: Option<&str>,
        explicit_entities: Option<Value>,
    ) -> Result<(String, Vec<Value>), ApiError> {
        if parse_mode.is_none()
            && let Some(Value::Array(ents)) = explicit_entities
        {
            return Ok(markup::plain_with_entities(text, &ents));
        }
        markup::render(text, parse_mode).map_err(|e| match e {
            RenderError::Parse(m) => ApiError::bad(&format!("can't parse entities: {m}")),
            RenderError::UnsupportedParseMode => ApiError::bad("unsupported parse_mode"),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn store_bot_message(
        &mut self,
        chat_id: i64,
        thread: (Option<i32>, bool, Option<i32>),
        text: String,
        entities: Vec<Value>,
        media: Option<Media>,
        markup: (Option<Value>, Option<Value>),
        bot: BotInfo,
    ) -> Value {
        let id = self.alloc_message_id(chat_id);
        let msg = Msg {
            chat_id,
            message_id: id,
            thread_id: thread.0,
            is_topic_message: thread.1,
            from: self.bot.clone(),
            date: now_unix(),
            edit_date: None,
            text,
            entities,
            media,
            reply_to: thread.2,
            reply_markup: markup.0,
            extra: Map::new(),
            bot: Some(BotInfo {
                other_markup: markup.1,
                ..bot
            }),
            deleted: false,
            reactions: Vec::new(),
        };
        self.messages.insert((chat_id, id), msg);
        self.msg_json_by_key(chat_id, id)
    }

    fn bot_info(
        &mut self,
        method: &str,
        raw_text: String,
        parse_mode: Option<String>,
        p: &Params,
        at: Instant,
    ) -> BotInfo {
        self.bot_seq += 1;
        BotInfo {
            raw_text,
            parse_mode,
            other_markup: None,
            disable_notification: p.bool("disable_notification"),
            at,
            edits: Vec::new(),
            method: method.to_string(),
            request: Value::Object(p.map.clone()),
            seq: self.bot_seq,
        }
    }

    fn send_message(&mut self, p: &Params, at: Instant) -> ApiResult {
        let chat_id = p.chat_id()?;
        let raw = p.str("text").unwrap_or_default();
        let thread = self.prepare_send(chat_id, p)?;
        if raw.is_empty() {
            return Err(ApiError::bad("message text is empty"));
        }
        let parse_mode = p.str("parse_mode").filter(|s| !s.is_empty());
        let (text, entities) = Self::render_text(&raw, parse_mode.as_deref(), p.json("entities")?)?;
        if text.is_empty() {
            return Err(ApiError::bad("message text is empty"));
        }
        if markup::utf16_len(&text) > 4096 {
            return Err(ApiError::bad("message is too long"));
        }
        let markup = self.check_markup(p)?;
        let info = self.bot_info("sendMessage", raw, parse_mode, p, at);
        Ok(self.store_bot_message(chat_id, thread, text, entities, None, markup, info))
    }

    fn send_media(&mut self, p: &Params, at: Instant, photo: bool) -> ApiResult {
        let field = if photo { "photo" } else { "document" };
        let method = if photo { "sendPhoto" } else { "sendDocument" };
        let chat_id = p.chat_id()?;
        let thread = self.prepare_send(chat_id, p)?;
        // the file: an uploaded part (directly under the field name, or "attach://name"),
        // or an existing file_id
        let upload = match p.files.get(field) {
            Some(u) => Some(u.clone()),
            None => match p.str(field) {
                Some(s) if s.starts_with("attach://") => Some(
                    p.files
                        .get(&s["attach://".len()..])
                        .cloned()
                        .ok_or_else(|| ApiError::bad("can't find attached file"))?,
                ),
                _ => None,
            },
        };
        let file_id = match upload {
            Some(u) => {
                if u.bytes.is_empty() {
                    return Err(ApiError::bad("file must be non-empty"));
                }
                if u.bytes.len() > 50 * 1024 * 1024 {
                    return Err(ApiError::new(413, "Request Entity Too Large"));
                }
                let mime = u
                    .content_type
                    .clone()
                    .filter(|c| c != "application/octet-stream")
                    .or_else(|| guess_mime(u.file_name.as_deref()));
                let name = if photo {
                    None
                } else {
                    u.file_name.clone().or(Some("document".into()))
                };
                self.add_file(
                    u.bytes,
                    name,
                    if photo { None } else { mime },
                    if photo { "photos" } else { "documents" },
                )
            }
            None => match p.str(field) {
                Some(id) if self.files.contains_key(&id) => id,
                Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
                    return Err(ApiError::bad("failed to get HTTP URL content"));
                }
                Some(_) => return Err(ApiError::bad("wrong file identifier/HTTP URL specified")),
                None => {
                    return Err(ApiError::bad(&format!(
                        "there is no {field} in the request"
                    )));
                }
            },
        };
        let raw = p.str("caption").unwrap_or_default();
        let parse_mode = p.str("parse_mode").filter(|s| !s.is_empty());
        let (text, entities) =
            Self::render_text(&raw, parse_mode.as_deref(), p.json("caption_entities")?)?;
        if markup::utf16_len(&text) > 1024 {
            return Err(ApiError::bad("message caption is too long"));
        }
        let markup = self.check_markup(p)?;
        let media = if photo {
            Media::Photo { file_id }
        } else {
            Media::Document { file_id }
        };
        let info = self.bot_info(method, raw, parse_mode, p, at);
        Ok(self.store_bot_message(chat_id, thread, text, entities, Some(media), markup, info))
    }

    fn edit_message(&mut self, method: &str, p: &Params, at: Instant) -> ApiResult {
        if p.get("inline_message_id").is_some() {
            return Err(ApiError::bad("MESSAGE_ID_INVALID"));
        }
        let chat_id = p.chat_id()?;
        let chat = self.chat(chat_id)?;
        if chat.kicked {
            return Err(ApiError::new(403, chat.forbidden_description()));
        }
        let id = p
            .i64("message_id")?
            .ok_or_else(|| ApiError::bad("message identifier is not specified"))?
            as i32;
        let (markup, _) = self.check_markup(p)?;
        let m = self
            .messages
            .get(&(chat_id, id))
            .filter(|m| !m.deleted)
            .ok_or_else(|| ApiError::bad("message to edit not found"))?;
        if m.bot.is_none() {
            return Err(ApiError::bad("message can't be edited"));
        }
        let (new_text, new_entities, raw, parse_mode) = match method {
            "editMessageText" => {
                if m.media.is_some() {
                    return Err(ApiError::bad("there is no text in the message to edit"));
                }
                let raw = p.str("text").unwrap_or_default();
                if raw.is_empty() {
                    return Err(ApiError::bad("message text is empty"));
                }
                let pm = p.str("parse_mode").filter(|s| !s.is_empty());
                let (t, e) = Self::render_text(&raw, pm.as_deref(), p.json("entities")?)?;
                if t.is_empty() {
                    return Err(ApiError::bad("message text is empty"));
                }
                if markup::utf16_len(&t) > 4096 {
                    return Err(ApiError::bad("message is too long"));
                }
                (t, e, Some(raw), pm)
            }
            "editMessageCaption" => {
                if m.media.is_none() {
                    return Err(ApiError::bad("there is no caption in the message to edit"));
                }
                let raw = p.str("caption").unwrap_or_default();
                let pm = p.str("parse_mode").filter(|s| !s.is_empty());
                let (t, e) = Self::render_text(&raw, pm.as_deref(), p.json("caption_entities")?)?;
                if markup::utf16_len(&t) > 1024 {
                    return Err(ApiError::bad("message caption is too long"));
                }
                (t, e, Some(raw), pm)
            }
            _ => (
                m.text.clone(),
                m.entities.clone(),
                None,
                m.bot.as_ref().unwrap().parse_mode.clone(),
            ),
        };
        // Like Telegram: omitting reply_markup in an edit removes the inline keyboard.
        if new_text == m.text && new_entities == m.entities && markup == m.reply_markup {
            return Err(ApiError::bad(
                "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            ));
        }
        let m = self.messages.get_mut(&(chat_id, id)).unwrap();
        m.text = new_text.clone();
        m.entities = new_entities;
        m.reply_markup = markup.clone();
        m.edit_date = Some(now_unix());
        let b = m.bot.as_mut().unwrap();
        if let Some(r) = &raw {
            b.raw_text = r.clone();
            b.parse_mode = parse_mode.clone();
        }
        b.edits.push(Edit {
            method: method.to_string(),
            at,
            text: new_text,
            raw_text: raw,
            parse_mode,
            reply_markup: markup,
        });
        Ok(self.msg_json_by_key(chat_id, id))
    }
}

impl BotInfo {
    fn request_has_reply(&self) -> bool {
        self.request.get("reply_parameters").is_some()
            || self.request.get("reply_to_message_id").is_some()
    }
}

fn guess_mime(name: Option<&str>) -> Option<String> {
    let ext = name?.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(
        match ext.as_str() {
            "txt" | "log" => "text/plain",
            "md" => "text/markdown",
            "json" => "application/json",
            "pdf" => "application/pdf",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "zip" => "application/zip",
            "csv" => "text/csv",
            _ => return None,
        }
        .to_string(),
    )
}
