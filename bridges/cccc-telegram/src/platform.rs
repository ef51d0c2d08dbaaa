//! [`TelegramPlatform`]: the Bot API transport behind the shared runner (teloxide-core requests
//! over a plain `Bot`; no dispatcher, because the `getUpdates` offset must be persisted).
//!
//! * **Pieces** carry the HTML rendering, its plain-text twin and the Ack event; a 400 "can't
//!   parse entities" resends the plain twin (same piece, so the outbox still sees one send).
//! * **Attachments.** Outbound, [`Platform::render`] plans one `sendDocument` piece per
//!   attachment after the text pieces (so files go through the outbox like text: once, in
//!   order); the blob is read when the piece is sent, and a vanished one is `Rejected` (that
//!   piece is skipped, the rest goes on). Inbound, a message's `document` or largest `photo`
//!   becomes a [`RemoteFile`]; [`Platform::fetch_file`] does `getFile` then
//!   `GET <api_url>/file/bot<token>/<file_path>` with the size cap enforced while streaming, and
//!   the runner stores the bytes as the group blob.
//! * **Errors** are classified for the outbox: 429 → `RetryAfter` (exactly `retry_after`),
//!   network / 5xx / 409 → `Transient`, 401 → `CredentialRejected`, 403 blocked / kicked / chat
//!   not found / migrated → `ChatGone`, any other 400 → `Rejected`. The token is redacted from
//!   every error text.
//! * **Offset.** `getUpdates` is called with the offset in `offset.json`; the offset past a
//!   batch is written only when the runner says the batch is handled
//!   ([`Platform::updates_handled`]), and Telegram learns it with the next `getUpdates`. An
//!   update whose effect was not finished before a crash is therefore delivered again (inbound
//!   sends are idempotent by `client_id`), and a handled one never is.

use cccc_bridge::outbox::pacing::Pacer;
use cccc_bridge::render::{Outbound, Profile, to_plain, to_telegram_html};
use cccc_bridge::{BotIdentity, BoxFuture, ChatTarget, DeliverOpts, FetchError, InboundMessage, Marker, Platform, PlatformRef, RemoteFile, SendFailure, Update};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Mutex;
use teloxide::payloads::setters::*;
use teloxide::requests::Requester;
use teloxide::types::{
    AllowedUpdate, CallbackQueryId, ChatId, FileId, InputFile, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message, MessageId, ParseMode,
    ReplyParameters, ThreadId, UpdateKind,
};
use teloxide::{ApiError, Bot, RequestError};

/// Callback data of the button after an ack (pressing it again answers "Already acked").
pub const ACKED_DATA: &str = cccc_bridge::runner::ACKED_BUTTON_DATA;
/// Text of the Ack button, and of the button once acked.
pub const ACK_TEXT: &str = "Ack";
pub const ACKED_TEXT: &str = "✓ Acked";
/// Offset file in the credential's state directory.
pub const OFFSET_FILE: &str = "offset.json";

/// One planned Telegram message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TgPiece {
    /// `parse_mode: HTML` text.
    pub html: String,
    /// The same visible text without markup (fallback on "can't parse entities").
    pub plain: String,
    /// Attach an Ack button for this event.
    #[serde(default)]
    pub ack_event: Option<String>,
    /// A file to upload with `sendDocument` instead of a text message (`html`/`plain` are
    /// then empty). Planned after the text pieces, so it is sent exactly once and in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<TgDocument>,
}

/// A planned `sendDocument`: an attachment's blob, read when the piece is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TgDocument {
    /// Absolute path of the blob (resolved by the runner).
    pub path: String,
    /// File name shown in the chat.
    pub name: String,
    #[serde(default)]
    pub mime_type: String,
}

/// The Bot API cannot upload documents over 50 MB (nor download over 20 MB).
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;

#[derive(Default)]
struct Poll {
    /// The next `getUpdates` offset (confirms everything below it).
    offset: i64,
    /// Highest update id returned and not yet handled.
    pending_max: Option<i64>,
}

pub struct TelegramPlatform {
    bot: Bot,
    token: String,
    state_dir: PathBuf,
    poll: Mutex<Poll>,
    me_id: Mutex<Option<u64>>,
    /// Long-poll timeout in seconds (below teloxide's 17 s request timeout).
    pub poll_timeout_secs: u32,
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions { is_disabled: true, url: None, prefer_small_media: false, prefer_large_media: false, show_above_text: false }
}

fn ack_keyboard(event_id: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(ACK_TEXT, format!("ack:{event_id}"))]])
}

fn acked_keyboard() -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(ACKED_TEXT, ACKED_DATA)]])
}

/// Telegram forum topic id to send with: 0 and the General topic (1) are sent without one.
fn thread_of(target: &ChatTarget) -> Option<ThreadId> {
    (target.thread_id > 1 && target.thread_id <= i32::MAX as i64).then(|| ThreadId(MessageId(target.thread_id as i32)))
}

fn chat_of(target: &ChatTarget) -> Result<ChatId, SendFailure> {
    target.chat_id.trim().parse::<i64>().map(ChatId).map_err(|_| SendFailure::Rejected(format!("not a Telegram chat id: {}", target.chat_id)))
}

fn message_id_of(s: &str) -> Option<MessageId> {
    s.trim().parse::<i32>().ok().map(MessageId)
}

impl TelegramPlatform {
    /// A platform for `token` at `api_url` (None: the public Bot API), keeping its offset in
    /// `state_dir`.
    pub fn new(token: &str, api_url: Option<&str>, state_dir: PathBuf) -> Result<TelegramPlatform, String> {
        let mut builder = teloxide::net::default_reqwest_settings();
        let mut url = None;
        if let Some(raw) = api_url.map(str::trim).filter(|u| !u.is_empty()) {
            let parsed = reqwest::Url::parse(raw).map_err(|e| format!("invalid --api-url {raw:?}: {e}"))?;
            if parsed.cannot_be_a_base() || !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("invalid --api-url {raw:?}: not an http(s) base URL"));
            }
            if parsed.host_str().is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]") {
                // A local Bot API server (or a test fake) is never reached through a proxy.
                builder = builder.no_proxy();
            }
            url = Some(parsed);
        }
        let client = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut bot = Bot::with_client(token, client);
        if let Some(u) = url {
            bot = bot.set_api_url(u);
        }
        let offset = cccc_core::home::read_json(&state_dir.join(OFFSET_FILE)).ok().and_then(|v| v.get("offset").and_then(|o| o.as_i64())).unwrap_or(0);
        Ok(TelegramPlatform {
            bot,
            token: token.to_string(),
            state_dir,
            poll: Mutex::new(Poll { offset, pending_max: None }),
            me_id: Mutex::new(None),
            poll_timeout_secs: 10,
        })
    }

    /// Remove the token from a text meant for logs or status.
    pub fn redact(&self, s: &str) -> String {
        if self.token.is_empty() { s.to_string() } else { s.replace(&self.token, "<redacted>") }
    }

    /// The persisted `getUpdates` offset.
    pub fn offset(&self) -> i64 {
        self.poll.lock().unwrap().offset
    }

    fn classify(&self, e: RequestError) -> SendFailure {
        match e {
            RequestError::RetryAfter(s) => SendFailure::RetryAfter { retry_after_ms: (s.seconds() as i64).max(1) * 1000 },
            RequestError::MigrateToChatId(id) => SendFailure::ChatGone(format!("the group was migrated to supergroup {}", id.0)),
            RequestError::Network(e) => SendFailure::Transient(self.redact(&format!("network: {e}"))),
            RequestError::InvalidJson { .. } => SendFailure::Transient("unexpected answer from the Bot API".into()),
            RequestError::Io(e) => SendFailure::Transient(self.redact(&format!("io: {e}"))),
            RequestError::Api(a) => match a {
                ApiError::InvalidToken => SendFailure::CredentialRejected("Unauthorized".into()),
                ApiError::BotBlocked
                | ApiError::ChatNotFound
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::BotKickedFromChannel
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::CantTalkWithBots
                | ApiError::GroupDeactivated
                | ApiError::NotEnoughRightsToPostMessages => SendFailure::ChatGone(a.to_string()),
                ApiError::TerminatedByOtherGetUpdates => {
                    SendFailure::Transient("409 Conflict: another process is polling this bot (terminated by other getUpdates request)".into())
                }
                ApiError::Unknown(desc) => {
                    let d = self.redact(&desc);
                    if d.starts_with("Unauthorized") {
                        SendFailure::CredentialRejected(d)
                    } else if d.starts_with("Forbidden") || d.contains("message thread not found") {
                        SendFailure::ChatGone(d)
                    } else if d.starts_with("Too Many Requests") {
                        SendFailure::RetryAfter { retry_after_ms: 1000 }
                    } else if d.starts_with("Bad Request") {
                        SendFailure::Rejected(d)
                    } else {
                        // 5xx, Conflict, gateways: try again later.
                        SendFailure::Transient(d)
                    }
                }
                other => SendFailure::Rejected(self.redact(&other.to_string())),
            },
        }
    }

    fn persist_offset(&self) {
        let mut p = self.poll.lock().unwrap();
        let Some(max) = p.pending_max.take() else { return };
        if max + 1 <= p.offset {
            return;
        }
        p.offset = max + 1;
        let _ = std::fs::create_dir_all(&self.state_dir);
        let v = json!({"offset": p.offset, "updated_at": cccc_proto::ts::now()});
        if let Err(e) = cccc_core::home::write_json_pretty(&self.state_dir.join(OFFSET_FILE), &v) {
            tracing::error!(error = %e, "cannot persist the getUpdates offset");
        }
    }

    fn me(&self) -> Option<u64> {
        *self.me_id.lock().unwrap()
    }

    fn inbound(&self, msg: &Message, edited: bool) -> Option<InboundMessage> {
        let from = msg.from.as_ref()?;
        let thread = if msg.is_topic_message { msg.thread_id.map(|t| t.0.0 as i64).unwrap_or(0) } else { 0 };
        let target = ChatTarget::new("telegram", msg.chat.id.0.to_string(), thread);
        // In a forum topic every message "replies" to the topic's creation message.
        let reply = msg.reply_to_message().filter(|r| !(msg.is_topic_message && Some(r.id.0 as i64) == msg.thread_id.map(|t| t.0.0 as i64)));
        let me = self.me();
        Some(InboundMessage {
            target,
            message_id: msg.id.0.to_string(),
            text: msg.text().or_else(|| msg.caption()).unwrap_or("").to_string(),
            direct: msg.chat.is_private(),
            from_bot: from.is_bot,
            edited,
            author_id: from.id.0.to_string(),
            author_name: from.full_name(),
            chat_title: msg.chat.title().unwrap_or("").to_string(),
            reply_to_message: reply.map(|r| r.id.0.to_string()),
            reply_to_bot: reply.and_then(|r| r.from.as_ref()).is_some_and(|u| Some(u.id.0) == me),
            attachments: Vec::new(),
            files: inbound_files(msg),
        })
    }

    fn convert(&self, u: teloxide::types::Update) -> Option<Update> {
        match u.kind {
            UpdateKind::Message(m) => self.inbound(&m, false).map(Update::Message),
            UpdateKind::EditedMessage(m) => self.inbound(&m, true).map(Update::Message),
            UpdateKind::CallbackQuery(q) => {
                let msg = q.message.as_ref()?;
                let thread = msg.regular_message().filter(|m| m.is_topic_message).and_then(|m| m.thread_id).map(|t| t.0.0 as i64).unwrap_or(0);
                let target = ChatTarget::new("telegram", msg.chat().id.0.to_string(), thread);
                Some(Update::Button {
                    at: PlatformRef { target, message_id: msg.id().0.to_string() },
                    data: q.data.clone().unwrap_or_default(),
                    user_id: q.from.id.0.to_string(),
                    user_name: q.from.full_name(),
                    callback_id: q.id.0.clone(),
                })
            }
            UpdateKind::MyChatMember(c) if !c.new_chat_member.is_present() => {
                Some(Update::Gone { target: ChatTarget::new("telegram", c.chat.id.0.to_string(), 0) })
            }
            _ => None,
        }
    }

    async fn send_text(&self, target: &ChatTarget, text: &str, html: bool, markup: Option<InlineKeyboardMarkup>, opts: &DeliverOpts) -> Result<Message, RequestError> {
        let chat = chat_of(target).map_err(|_| RequestError::Api(ApiError::ChatNotFound))?;
        let mut req = self.bot.send_message(chat, text).link_preview_options(no_preview());
        if html {
            req = req.parse_mode(ParseMode::Html);
        }
        if let Some(t) = thread_of(target) {
            req = req.message_thread_id(t);
        }
        if opts.silent {
            req = req.disable_notification(true);
        }
        if let Some(r) = opts.reply_to_message.as_deref().and_then(message_id_of) {
            req = req.reply_parameters(ReplyParameters::new(r).allow_sending_without_reply());
        }
        if let Some(m) = markup {
            req = req.reply_markup(m);
        }
        req.await
    }
}

/// A message's downloadable files: its `document`, or the largest `photo` size (named
/// `photo_<file_unique_id>.jpg`). Voice, audio and video are ignored (bridges.md §4.8).
fn inbound_files(msg: &Message) -> Vec<RemoteFile> {
    if let Some(d) = msg.document() {
        return vec![RemoteFile {
            id: d.file.id.0.clone(),
            name: d.file_name.clone().unwrap_or_default(),
            mime_type: d.mime_type.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            size: Some(d.file.size as u64),
        }];
    }
    if let Some(p) = msg.photo().and_then(|sizes| sizes.iter().max_by_key(|p| (p.width as u64) * (p.height as u64))) {
        return vec![RemoteFile {
            id: p.file.id.0.clone(),
            name: format!("photo_{}.jpg", p.file.unique_id.0),
            mime_type: "image/jpeg".into(),
            size: Some(p.file.size as u64),
        }];
    }
    Vec::new()
}

impl TelegramPlatform {
    /// `sendDocument` (multipart) of one planned attachment. A blob that has disappeared or
    /// grown past the upload limit is `Rejected`: the outbox skips that piece only.
    async fn send_document(&self, target: &ChatTarget, doc: &TgDocument, opts: &DeliverOpts) -> Result<String, SendFailure> {
        let chat = chat_of(target)?;
        let bytes = match tokio::fs::metadata(&doc.path).await {
            Ok(m) if m.len() > MAX_UPLOAD_BYTES => return Err(SendFailure::Rejected(format!("attachment {} is larger than 50 MB", doc.name))),
            Ok(_) => tokio::fs::read(&doc.path).await,
            Err(e) => Err(e),
        }
        .map_err(|e| {
            tracing::warn!(chat = %target.chat_key(), file = %doc.name, error = %e, "attachment unreadable; skipped");
            SendFailure::Rejected(format!("attachment {} unreadable: {e}", doc.name))
        })?;
        let mut req = self.bot.send_document(chat, InputFile::memory(bytes).file_name(doc.name.clone()));
        if let Some(t) = thread_of(target) {
            req = req.message_thread_id(t);
        }
        if opts.silent {
            req = req.disable_notification(true);
        }
        if let Some(r) = opts.reply_to_message.as_deref().and_then(message_id_of) {
            req = req.reply_parameters(ReplyParameters::new(r).allow_sending_without_reply());
        }
        req.await.map(|m| m.id.0.to_string()).map_err(|e| self.classify(e))
    }
}

impl Platform for TelegramPlatform {
    type Piece = TgPiece;

    fn name(&self) -> &'static str {
        "telegram"
    }

    fn profile(&self) -> Profile {
        Profile::TELEGRAM
    }

    fn verify(&self) -> BoxFuture<'_, Result<BotIdentity, SendFailure>> {
        Box::pin(async move {
            let me = self.bot.get_me().await.map_err(|e| self.classify(e))?;
            *self.me_id.lock().unwrap() = Some(me.user.id.0);
            Ok(BotIdentity { id: me.user.id.0.to_string(), username: me.username().to_string() })
        })
    }

    fn render(&self, parts: &[Outbound]) -> Vec<TgPiece> {
        let mut pieces: Vec<TgPiece> = parts
            .iter()
            .map(|p| TgPiece { html: to_telegram_html(p), plain: to_plain(p), ack_event: p.ackable.then(|| p.event_id.clone()), document: None })
            .collect();
        // The text first, then every attachment as its own sendDocument (bridges.md §3.7).
        for a in parts.iter().flat_map(|p| p.attachments.iter()) {
            let name = if a.title.trim().is_empty() { a.path.rsplit('/').next().unwrap_or("attachment").to_string() } else { a.title.clone() };
            pieces.push(TgPiece {
                html: String::new(),
                plain: String::new(),
                ack_event: None,
                document: Some(TgDocument { path: a.path.clone(), name, mime_type: a.mime_type.clone() }),
            });
        }
        pieces
    }

    fn deliver<'a>(&'a self, target: &'a ChatTarget, piece: &'a TgPiece, opts: &'a DeliverOpts) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            chat_of(target)?;
            if let Some(doc) = &piece.document {
                return self.send_document(target, doc, opts).await;
            }
            let markup = || piece.ack_event.as_deref().map(ack_keyboard);
            let sent = match self.send_text(target, &piece.html, true, markup(), opts).await {
                Err(RequestError::Api(ApiError::CantParseEntities(e))) => {
                    tracing::warn!(chat = %target.chat_key(), error = %e, "HTML rejected; sending plain text");
                    self.send_text(target, &piece.plain, false, markup(), opts).await
                }
                r => r,
            };
            sent.map(|m| m.id.0.to_string()).map_err(|e| self.classify(e))
        })
    }

    fn notice<'a>(&'a self, target: &'a ChatTarget, text: &'a str, reply_to_message: Option<&'a str>) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            chat_of(target)?;
            let text: String = if text.encode_utf16().count() > 4000 { text.chars().take(3900).chain("…".chars()).collect() } else { text.to_string() };
            let opts = DeliverOpts { reply_to_message: reply_to_message.map(str::to_string), ..Default::default() };
            self.send_text(target, &text, false, None, &opts).await.map(|m| m.id.0.to_string()).map_err(|e| self.classify(e))
        })
    }

    fn mark_acked<'a>(&'a self, at: &'a PlatformRef, _by_name: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async move {
            let chat = chat_of(&at.target)?;
            let Some(mid) = message_id_of(&at.message_id) else { return Ok(()) };
            match self.bot.edit_message_reply_markup(chat, mid).reply_markup(acked_keyboard()).await {
                Ok(_) => Ok(()),
                // Already flipped, or the message is gone: nothing left to do.
                Err(RequestError::Api(ApiError::MessageNotModified | ApiError::MessageToEditNotFound | ApiError::MessageCantBeEdited)) => Ok(()),
                Err(e) => match self.classify(e) {
                    SendFailure::Rejected(_) => Ok(()),
                    f => Err(f),
                },
            }
        })
    }

    /// 👀 while processing; cleared (an empty reaction list) when done or failed: ✅ is not
    /// one of the emoji a bot may react with.
    fn set_marker<'a>(&'a self, at: &'a PlatformRef, marker: Marker) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async move {
            let chat = chat_of(&at.target)?;
            let Some(mid) = message_id_of(&at.message_id) else { return Ok(()) };
            let reaction = match marker {
                Marker::Processing => vec![teloxide::types::ReactionType::Emoji { emoji: "👀".to_string() }],
                Marker::Done | Marker::Failed => Vec::new(),
            };
            self.bot.set_message_reaction(chat, mid).reaction(reaction).await.map(|_| ()).map_err(|e| self.classify(e))
        })
    }

    fn answer_button<'a>(&'a self, callback_id: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async move {
            let mut req = self.bot.answer_callback_query(CallbackQueryId(callback_id.to_string()));
            if !text.is_empty() {
                req = req.text(text);
            }
            req.await.map(|_| ()).map_err(|e| self.classify(e))
        })
    }

    fn next_updates(&self) -> BoxFuture<'_, Result<Vec<Update>, SendFailure>> {
        Box::pin(async move {
            self.persist_offset();
            let offset = self.offset();
            let mut req = self.bot.get_updates().timeout(self.poll_timeout_secs).allowed_updates(vec![
                AllowedUpdate::Message,
                AllowedUpdate::EditedMessage,
                AllowedUpdate::CallbackQuery,
                AllowedUpdate::MyChatMember,
            ]);
            if offset > 0 {
                req = req.offset(offset.min(i32::MAX as i64) as i32);
            }
            let updates = req.await.map_err(|e| self.classify(e))?;
            let mut out = Vec::new();
            let mut max = None;
            for u in updates {
                max = Some(max.map_or(u.id.0 as i64, |m: i64| m.max(u.id.0 as i64)));
                if let Some(x) = self.convert(u) {
                    out.push(x);
                }
            }
            if let Some(m) = max {
                self.poll.lock().unwrap().pending_max = Some(m);
            }
            Ok(out)
        })
    }

    fn fetch_file<'a>(&'a self, file: &'a RemoteFile, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async move {
            let f = self.bot.get_file(FileId(file.id.clone())).await.map_err(|e| FetchError::Failed(self.classify(e).to_string()))?;
            if f.size as u64 > max_bytes {
                return Err(FetchError::TooLarge(f.size as u64));
            }
            // `<api_url>/file/bot<token>/<file_path>`, the path as Telegram gave it (teloxide's
            // own download percent-encodes its `/`), streamed with the cap enforced throughout.
            let mut url = self.bot.api_url();
            let base = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{base}/file/bot{}/{}", self.token, f.path.trim_start_matches('/')));
            let fail = |e: reqwest::Error| FetchError::Failed(self.redact(&format!("download: {}", e.without_url())));
            let mut resp = self.bot.client().get(url).send().await.map_err(fail)?.error_for_status().map_err(fail)?;
            if let Some(len) = resp.content_length().filter(|l| *l > max_bytes) {
                return Err(FetchError::TooLarge(len));
            }
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(fail)? {
                buf.extend_from_slice(&chunk);
                if buf.len() as u64 > max_bytes {
                    return Err(FetchError::TooLarge(buf.len() as u64));
                }
            }
            Ok(buf)
        })
    }

    fn updates_handled(&self) {
        self.persist_offset();
    }

    fn pacer(&self) -> Option<Pacer> {
        Some(Pacer::telegram())
    }

    fn is_group_chat(&self, target: &ChatTarget) -> bool {
        target.chat_id.trim_start().starts_with('-')
    }
}
