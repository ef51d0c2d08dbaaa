//! The platform-neutral core of the CCCC chat bridges.
//!
//! This crate is the boundary between the CCCC core (a daemon that owns an append-only ledger
//! per group) and chat platforms. Platform crates (Telegram, Discord) depend on this crate and
//! never on the ledger; they implement [`Platform`] (transport only: send a piece, edit buttons,
//! fetch updates). The shared bridge runner ([`runner`]) glues them to the daemon through
//! [`CoreLink`] ([`ipc::GroupLink`] over IPC v1).
//!
//! Everything here is pure or does only local file IO, so it is testable without a network:
//!
//! | module | guarantees |
//! |---|---|
//! | [`chunk`] | lossless, limit-respecting, fence-preserving splitting (UTF-16 or chars) |
//! | [`render`] | ledger event → [`render::Outbound`] → Telegram HTML / plain / Discord Markdown, split into parts that fit |
//! | [`mirror`] | which event goes to which chat (echo suppression, verbose, paused, fail-closed notify) |
//! | [`command`] | inbound text → [`command::Command`], recipient tokens, idempotency key |
//! | [`binding`] | pairing keys (600 s TTL), authorized chats and subscriptions, Python-compatible files |
//! | [`outbox`] | per-chat durable cursor with chunk-level delivery records, message map, retry and pacing |
//! | [`ipc`] | async IPC v1 client (calls and `events_stream`), [`CoreLink`] of one group |
//! | [`runner`] | the async bridge process core: group discovery, per-chat delivery, inbound commands, status |
//! | [`process`] | the `__im-bridge` process shell: arguments, credential lock, signals, exit codes |
//!
//! Traits are kept free of an async runtime: futures are boxed ([`BoxFuture`]) so the traits
//! need neither tokio nor `async-trait` and stay object-safe where that matters. Only [`ipc`]
//! and [`runner`] use tokio.

pub mod binding;
pub mod chunk;
pub mod command;
pub mod ipc;
pub mod mirror;
pub mod outbox;
pub mod process;
pub mod render;
pub mod runner;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub use outbox::SendFailure;
pub use render::{Outbound, Profile};

/// A ledger event id (32 lowercase hex digits).
pub type EventId = String;

/// A boxed, sendable future: the async return type of the traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The unit of authorization and delivery: `(platform, chat_id, thread_id)`.
///
/// `thread_id` is the Telegram forum topic (`message_thread_id`), 0 for none. A Discord thread
/// is its own channel, so Discord always uses 0. Chat ids are kept as strings: Telegram ids are
/// signed 64-bit, Discord ids are unsigned snowflakes, and the state files store strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChatTarget {
    pub platform: String,
    pub chat_id: String,
    pub thread_id: i64,
}

impl ChatTarget {
    pub fn new(platform: impl Into<String>, chat_id: impl Into<String>, thread_id: i64) -> ChatTarget {
        ChatTarget { platform: platform.into(), chat_id: chat_id.into().trim().to_string(), thread_id }
    }

    /// The reference's chat key: `chat_id`, or `chat_id:thread_id` when `thread_id > 0`. This is
    /// the key of the Python-compatible state files (bridges.md §1.4); keep it exactly.
    pub fn chat_key(&self) -> String {
        if self.thread_id > 0 { format!("{}:{}", self.chat_id, self.thread_id) } else { self.chat_id.clone() }
    }

    /// `platform:chat_key`: unique across platforms (used by this crate's own files).
    pub fn scoped_key(&self) -> String {
        format!("{}:{}", self.platform, self.chat_key())
    }
}

/// A message a platform holds: where it is and its platform message id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlatformRef {
    pub target: ChatTarget,
    pub message_id: String,
}

/// Wall-clock milliseconds since the Unix epoch, injectable so tests control time.
///
/// Persisted deadlines (pairing-key expiry, a 429 `retry_after`) must survive restarts, so this
/// is wall-clock time, not a monotonic `Instant`. Consumers tolerate a clock that steps back
/// (token buckets treat it as "no time passed").
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        d.as_millis() as i64
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// The boundary (rust-stack.md §6), as signatures. Implementations live in the platform crates
// (Platform) and in the IPC client or the daemon (CoreLink).
// ---------------------------------------------------------------------------------------------

/// Who the bot is on the platform, from the credential check (`getMe`, `GET /users/@me`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: String,
    /// Telegram `username` (without `@`) or Discord user name.
    pub username: String,
}

/// Options for delivering one piece.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliverOpts {
    /// Deterministic per (chat, event, piece); a platform with server-side dedup (Discord
    /// `nonce` + `enforce_nonce`) passes it so a resend after a crash is not duplicated.
    pub nonce: String,
    /// Thread the message under this platform message (a reply), if known.
    pub reply_to_message: Option<String>,
    /// Send without a notification sound (verbose / agent-to-agent traffic).
    pub silent: bool,
}

/// A file the platform downloaded or will upload, referenced by its group blob path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Group-relative path, e.g. `state/blobs/<sha256>_<name>`.
    pub path: String,
    pub title: String,
    pub mime_type: String,
    pub bytes: u64,
    /// `file`, `image` (image MIME types) or `text`; empty lets the daemon default to `file`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// A file attached to an inbound platform message, not downloaded yet. The runner fetches it
/// with [`Platform::fetch_file`] only once the chat is bound to a group (an unbound chat's
/// files are never downloaded) and stores it as a group blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// The platform's handle: Telegram `file_id`, Discord attachment URL.
    pub id: String,
    /// The file name to store it under (before sanitizing).
    pub name: String,
    pub mime_type: String,
    /// The size the platform advertises, if any (checked before downloading).
    pub size: Option<u64>,
}

/// Why a file could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Larger than the limit (the size, when known).
    #[error("file too large ({0} bytes)")]
    TooLarge(u64),
    #[error("{0}")]
    Failed(String),
}

/// One inbound platform message, normalised by the platform crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundMessage {
    pub target: ChatTarget,
    pub message_id: String,
    pub text: String,
    /// A DM (every message is addressed to the bot).
    pub direct: bool,
    /// The author is a bot (ignored, to prevent loops).
    pub from_bot: bool,
    /// An edit of an earlier message (never creates a new ledger event).
    pub edited: bool,
    pub author_id: String,
    pub author_name: String,
    /// The chat's title (group name; empty for a DM), recorded with a pairing request.
    pub chat_title: String,
    /// The platform message this one replies to, if any (maps to a ledger event via the map).
    pub reply_to_message: Option<String>,
    /// The reply target is one of the bot's own messages (counts as addressing the bot).
    pub reply_to_bot: bool,
    /// Files already stored as group blobs (platforms normally leave this empty and use
    /// `files`).
    pub attachments: Vec<BlobRef>,
    /// Files attached on the platform, downloaded by the runner through
    /// [`Platform::fetch_file`] once the chat is known to be bound.
    pub files: Vec<RemoteFile>,
}

/// Something that happened on the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    Message(InboundMessage),
    /// An inline button was pressed (Telegram `callback_query`, Discord component interaction).
    Button { at: PlatformRef, data: String, user_id: String, user_name: String, callback_id: String },
    /// The bot was removed from / blocked in a chat (Telegram `my_chat_member`, Discord guild
    /// delete): stop delivering there.
    Gone { target: ChatTarget },
    /// An answer typed into a platform form tied to one ledger event (Discord: the modal opened
    /// by a `reply_required` message's Reply button). Becomes IPC `reply` with that event as
    /// `reply_to`. `callback_id` answers the form like a button press; its first `:`-separated
    /// part is unique per submission and keys the idempotent `client_id`.
    FormReply { at: PlatformRef, event_id: EventId, text: String, user_id: String, user_name: String, callback_id: String },
}

/// The processing marker on an inbound message (bridges.md §4.7, checklist 44): placed once
/// the message reached the daemon, resolved by the matching reply, a failure or a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// Being processed (👀).
    Processing,
    /// Answered, or timed out (Telegram: cleared, ✅ is not a bot reaction; Discord: ✅).
    Done,
    /// Could not be delivered to the group (Telegram: cleared; Discord: ❌).
    Failed,
}

/// A served group as a platform with a channel per group sees it (see
/// [`Platform::group_channel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupHome {
    pub group_id: String,
    /// The group's title (the channel is named after it; the id when there is none).
    pub title: String,
    /// The group's canonical `im` section (e.g. Discord `guild_id`, `category`).
    pub im: serde_json::Map<String, serde_json::Value>,
    /// The chat provisioned for this group before, if any: rename it rather than make another.
    pub known: Option<ChatTarget>,
}

/// A chat platform, as the bridge runner needs it. Implemented by the platform crates.
///
/// Transport only: filtering, rendering decisions, chunking, ordering, retry and persistence
/// are done by the shared runner with this crate's modules, so both platforms behave alike.
pub trait Platform: Send + Sync + 'static {
    /// What is persisted for one planned piece (e.g. Telegram: HTML plus a plain fallback and
    /// buttons). It is stored in the outbox before sending, so a resend is byte-identical.
    type Piece: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static;

    /// `"telegram"` or `"discord"`.
    fn name(&self) -> &'static str;
    /// Length limit and flavour used to split outbound messages.
    fn profile(&self) -> Profile;
    /// Verify the credential and return the bot's identity (fails fast on a rejected token).
    fn verify(&self) -> BoxFuture<'_, Result<BotIdentity, SendFailure>>;
    /// Render one event (already split by [`Outbound::split`]) into sendable pieces.
    ///
    /// The last part carries the event's attachments; the runner has already dropped the
    /// missing, oversized or disallowed ones and made each `path` absolute, so a platform that
    /// uploads files plans one piece per attachment after the text (the outbox then sends them
    /// exactly once and in order, like text pieces).
    fn render(&self, parts: &[Outbound]) -> Vec<Self::Piece>;
    /// Send one piece; returns the platform message id. Never retries by itself: the outbox
    /// decides from the returned [`SendFailure`].
    fn deliver<'a>(&'a self, target: &'a ChatTarget, piece: &'a Self::Piece, opts: &'a DeliverOpts)
    -> BoxFuture<'a, Result<String, SendFailure>>;
    /// Send a short plain-text notice (command replies, pairing instructions).
    fn notice<'a>(&'a self, target: &'a ChatTarget, text: &'a str, reply_to_message: Option<&'a str>)
    -> BoxFuture<'a, Result<String, SendFailure>>;
    /// Replace the Ack button of a delivered message with "acked by `name`".
    fn mark_acked<'a>(&'a self, at: &'a PlatformRef, by_name: &'a str) -> BoxFuture<'a, Result<(), SendFailure>>;
    /// Answer a button press (stops the client spinner); `text` is shown as a toast.
    fn answer_button<'a>(&'a self, callback_id: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SendFailure>>;
    /// The next batch of updates (long poll / gateway queue). An empty batch is fine.
    ///
    /// Calling it again means the previous batch is fully handled: a platform with a
    /// server-side cursor (Telegram's `offset`) persists and confirms it then, so an update
    /// whose effect was not finished is delivered again after a crash.
    fn next_updates(&self) -> BoxFuture<'_, Result<Vec<Update>, SendFailure>>;
    /// Every update returned so far is handled (called after each batch and at shutdown):
    /// persist the platform's cursor now rather than at the next poll.
    fn updates_handled(&self) {}

    /// Download an inbound file ([`InboundMessage::files`]), refusing anything larger than
    /// `max_bytes` (checked before and after the download). The bytes are returned: the runner
    /// stores them (the platform knows no group directory).
    fn fetch_file<'a>(&'a self, _file: &'a RemoteFile, _max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FetchError>> {
        Box::pin(async { Err(FetchError::Failed("file download is not supported on this platform".into())) })
    }

    /// Show `marker` on an inbound message (a reaction). Best effort: the runner only logs a
    /// failure. The default shows nothing.
    fn set_marker<'a>(&'a self, _at: &'a PlatformRef, _marker: Marker) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async { Ok(()) })
    }

    /// The platform's send limits, asked before every outbound piece (`None`: no pacing).
    fn pacer(&self) -> Option<outbox::pacing::Pacer> {
        None
    }
    /// Is this target a group chat (stricter per-chat limits)?
    fn is_group_chat(&self, _target: &ChatTarget) -> bool {
        false
    }

    /// A platform with one channel per group (Discord) finds, creates or renames the group's
    /// channel here and returns it; the runner then authorizes and subscribes it without a
    /// pairing key, and reads every message in it (not only mentions). `Ok(None)`: this
    /// platform (or this group's configuration) pairs chats by key only.
    fn group_channel<'a>(&'a self, _group: &'a GroupHome) -> BoxFuture<'a, Result<Option<ChatTarget>, SendFailure>> {
        Box::pin(async { Ok(None) })
    }
}

/// A daemon error as the IPC layer reports it (`{code, message}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CoreError {
    pub code: String,
    pub message: String,
}

impl CoreError {
    /// The group is gone: the bridge should say so once and stop (checklist 25).
    pub fn is_group_not_found(&self) -> bool {
        self.code == "group_not_found"
    }
}

/// What the bridge asks the daemon to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CoreMessage {
    pub text: String,
    /// Canonical recipient tokens (see [`command`]); empty = the group default.
    pub to: Vec<String>,
    /// The idempotency key, [`command::client_id`]: a replayed update writes nothing new.
    pub client_id: String,
    pub source_platform: String,
    pub source_user_id: String,
    pub source_user_name: String,
    pub attachments: Vec<BlobRef>,
}

/// Outcome of `chat_ack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    Acked,
    AlreadyAcked,
}

/// A pull-based stream of ledger events (no `futures::Stream` dependency).
pub trait EventFeed: Send {
    /// The next event, waiting for one if needed; `None` when the feed ended.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<cccc_proto::Event>, CoreError>>;
}

/// The daemon as the bridge sees it. Implemented by the IPC client (bridge out of process) or
/// by the daemon itself (bridge in process); tests use a fake.
pub trait CoreLink: Send + Sync + 'static {
    /// Op `send` with `by = "user"`; idempotent on `client_id`. Returns the event id.
    fn send(&self, msg: CoreMessage) -> BoxFuture<'_, Result<EventId, CoreError>>;
    /// Op `reply` to `reply_to`; idempotent on `client_id`. Returns the event id.
    fn reply(&self, reply_to: EventId, msg: CoreMessage) -> BoxFuture<'_, Result<EventId, CoreError>>;
    /// Op `chat_ack {actor_id: "user"}` for an attention message.
    fn ack(&self, event_id: EventId) -> BoxFuture<'_, Result<AckOutcome, CoreError>>;
    /// Ledger events strictly after `after` (from the start when `None`), then live ones.
    fn subscribe(&self, after: Option<EventId>) -> BoxFuture<'_, Result<Box<dyn EventFeed>, CoreError>>;
    /// Any other op of this group (`group_show`, `obligations`, `ledger_tail`, …); the link
    /// adds `group_id`.
    fn call<'a>(&'a self, op: &'a str, _args: serde_json::Value) -> BoxFuture<'a, Result<serde_json::Value, CoreError>> {
        Box::pin(async move { Err(CoreError { code: "unsupported".into(), message: format!("op {op} is not available on this link") }) })
    }
}

/// A shared handle to the daemon.
pub type Core = Arc<dyn CoreLink>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_key_matches_the_reference_format() {
        assert_eq!(ChatTarget::new("telegram", " -100123 ", 0).chat_key(), "-100123");
        assert_eq!(ChatTarget::new("telegram", "-100123", 42).chat_key(), "-100123:42");
        assert_eq!(ChatTarget::new("telegram", "-100123", -1).chat_key(), "-100123");
        assert_eq!(ChatTarget::new("discord", "99", 0).scoped_key(), "discord:99");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(500);
        assert_eq!(c.now_ms(), 1_500);
        c.set(10);
        assert_eq!(c.now_ms(), 10);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }

    #[test]
    fn core_error_names_group_not_found() {
        let e = CoreError { code: "group_not_found".into(), message: "group not found: g_x".into() };
        assert!(e.is_group_not_found());
        assert_eq!(e.to_string(), "group_not_found: group not found: g_x");
    }
}
