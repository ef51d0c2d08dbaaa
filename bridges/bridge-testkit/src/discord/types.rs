//! Public value types of the fake Discord: what tests create, observe and inject.

use serde_json::Value;
use std::time::Instant;

/// A Discord snowflake, as a number (the wire carries it as a string).
pub type Snowflake = u64;

/// A user known to the fake (a human, or another bot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DUser {
    pub id: Snowflake,
    /// `username` (also used as `global_name`).
    pub name: String,
    pub bot: bool,
}

/// A guild channel as the fake stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DChannel {
    pub id: Snowflake,
    pub guild_id: Snowflake,
    /// Stored as Discord normalises it (text channels: lowercase, spaces → `-`).
    pub name: String,
    /// 0 text, 2 voice, 4 category, 5 announcement, 11 public thread…
    pub kind: u8,
    pub parent_id: Option<Snowflake>,
    pub topic: Option<String>,
    pub position: i64,
}

/// A message in a channel (from anyone: the bot, a human, an interaction response).
#[derive(Clone, Debug, PartialEq)]
pub struct DMessage {
    pub id: Snowflake,
    pub channel_id: Snowflake,
    pub author_id: Snowflake,
    pub author_is_bot: bool,
    pub content: String,
    /// The raw `components` array as last set (action rows of buttons).
    pub components: Value,
    /// The `allowed_mentions` object the sender gave (`Value::Null` when omitted).
    pub allowed_mentions: Value,
    /// The nonce as sent (string or number), `Value::Null` if none.
    pub nonce: Value,
    pub enforce_nonce: bool,
    /// The replied-to message (`message_reference.message_id`).
    pub reply_to: Option<Snowflake>,
    /// Did the message ping `@everyone`/`@here` (after `allowed_mentions` was applied)?
    pub mention_everyone: bool,
    /// Users actually pinged (after `allowed_mentions`).
    pub mentions: Vec<Snowflake>,
    /// Flags (64 = ephemeral).
    pub flags: u64,
    /// Set for interaction responses and followups: the interaction it answers.
    pub interaction_id: Option<Snowflake>,
    /// Every earlier version of `(content, components)`, oldest first.
    pub edits: Vec<(String, Value)>,
    pub created: Instant,
}

impl DMessage {
    /// All buttons of all action rows: `(custom_id, label, disabled, style)`.
    pub fn buttons(&self) -> Vec<Button> {
        let mut out = Vec::new();
        for row in self.components.as_array().into_iter().flatten() {
            for c in row.get("components").and_then(Value::as_array).into_iter().flatten() {
                if c.get("type").and_then(Value::as_u64) == Some(2) {
                    out.push(Button {
                        custom_id: c.get("custom_id").and_then(Value::as_str).unwrap_or("").to_string(),
                        label: c.get("label").and_then(Value::as_str).unwrap_or("").to_string(),
                        disabled: c.get("disabled").and_then(Value::as_bool).unwrap_or(false),
                        style: c.get("style").and_then(Value::as_u64).unwrap_or(0),
                    });
                }
            }
        }
        out
    }

    /// Ephemeral (visible only to the interaction's user)?
    pub fn ephemeral(&self) -> bool {
        self.flags & 64 != 0
    }
}

/// One button of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub custom_id: String,
    pub label: String,
    pub disabled: bool,
    pub style: u64,
}

/// One answer to `POST /interactions/{id}/{token}/callback`.
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionResponse {
    /// 4 message, 5 deferred message, 6 deferred update, 7 update message, 9 modal…
    pub kind: u64,
    pub data: Value,
    /// Time between the interaction's creation and this response.
    pub latency: std::time::Duration,
}

/// Text inputs of a modal the bot opened: `(custom_id, label)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModalField {
    pub custom_id: String,
    pub label: String,
}

/// A request the fake received (REST only).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub at: Instant,
    pub method: String,
    /// The path after `/api/v10` (or the raw path when there is no version prefix).
    pub path: String,
    /// The route key with ids replaced, e.g. `POST /channels/{id}/messages`.
    pub route: String,
    /// Was `Authorization: Bot <valid token>` present?
    pub authorized: bool,
    pub body: Value,
    /// Answer status (0 while the request is being handled).
    pub status: u16,
}

/// Something the gateway saw or did, for assertions about the session protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayRecord {
    Connected { conn: u64 },
    Identify { conn: u64, intents: u64, session_id: String },
    Resume { conn: u64, session_id: String, seq: u64, accepted: bool },
    Heartbeat { conn: u64 },
    /// The server closed with this code (`None`: dropped without a close frame).
    ClosedByServer { conn: u64, code: Option<u16> },
    Disconnected { conn: u64 },
}

/// A REST fault to inject with [`super::FakeDiscord::fail_next`]. The faulted request is not
/// performed (nothing is created), exactly like a request Discord refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with Discord's body (`message`, `retry_after` in seconds, `global`) and headers
    /// (`Retry-After`, `X-RateLimit-*`, `X-RateLimit-Scope`, `X-RateLimit-Global`).
    TooManyRequests { retry_after: f64, global: bool },
    /// A 5xx (e.g. 500, 502, 503) with a short body.
    ServerError(u16),
    /// 401 `{"message": "401: Unauthorized", "code": 0}` whatever the token.
    Unauthorized,
    /// 403 with a JSON error code (50001 Missing Access, 50013 Missing Permissions…).
    Forbidden { code: u64, message: String },
    /// Any status with any JSON body.
    Custom { status: u16, body: Value },
}

/// Route keys for [`super::FakeDiscord::fail_next`] and [`super::FakeDiscord::requests`]
/// (any other `METHOD /path/{id}` key works too: numeric segments become `{id}`, interaction
/// and webhook tokens `{token}`).
pub mod routes {
    pub const GET_GATEWAY: &str = "GET /gateway";
    pub const GET_GATEWAY_BOT: &str = "GET /gateway/bot";
    pub const GET_ME: &str = "GET /users/@me";
    pub const CREATE_MESSAGE: &str = "POST /channels/{id}/messages";
    pub const EDIT_MESSAGE: &str = "PATCH /channels/{id}/messages/{id}";
    pub const GET_CHANNEL: &str = "GET /channels/{id}";
    pub const EDIT_CHANNEL: &str = "PATCH /channels/{id}";
    pub const GUILD_CHANNELS: &str = "GET /guilds/{id}/channels";
    pub const CREATE_GUILD_CHANNEL: &str = "POST /guilds/{id}/channels";
    pub const INTERACTION_CALLBACK: &str = "POST /interactions/{id}/{token}/callback";
    pub const CREATE_FOLLOWUP: &str = "POST /webhooks/{id}/{token}";
}
