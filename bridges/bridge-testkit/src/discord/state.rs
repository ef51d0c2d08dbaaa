//! The fake's state and all of its REST semantics, synchronous and IO-free: the HTTP and
//! gateway tasks in `server.rs` only decode, call in here under the lock, and encode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::types::*;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Interactions must get their first response within this long.
pub(crate) const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
/// Followups (webhook with the interaction token) are accepted this long.
const FOLLOWUP_WINDOW: Duration = Duration::from_secs(15 * 60);
/// `enforce_nonce` looks back this far ("the past few minutes").
const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);

pub(crate) const INTENT_GUILDS: u64 = 1 << 0;
pub(crate) const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
pub(crate) const INTENT_DIRECT_MESSAGES: u64 = 1 << 12;
pub(crate) const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
/// Privileged intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | INTENT_MESSAGE_CONTENT;

/// A Discord JSON error (`{"message", "code"}`) with its HTTP status.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: u64,
    pub message: String,
    pub errors: Option<Value>,
}

impl ApiError {
    fn new(status: u16, code: u64, message: &str) -> ApiError {
        ApiError { status, code, message: message.to_string(), errors: None }
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, 0, "401: Unauthorized")
    }
    pub fn not_found() -> ApiError {
        ApiError::new(404, 0, "404: Not Found")
    }
    fn unknown_channel() -> ApiError {
        ApiError::new(404, 10003, "Unknown Channel")
    }
    fn unknown_message() -> ApiError {
        ApiError::new(404, 10008, "Unknown Message")
    }
    fn unknown_interaction() -> ApiError {
        ApiError::new(404, 10062, "Unknown interaction")
    }
    /// 50035 Invalid Form Body with a per-field error, as Discord nests it.
    fn invalid_form(field: &str, code: &str, message: &str) -> ApiError {
        let mut e = ApiError::new(400, 50035, "Invalid Form Body");
        e.errors = Some(json!({ field: {"_errors": [{"code": code, "message": message}]} }));
        e
    }
    pub fn body(&self) -> Value {
        let mut b = json!({"message": self.message, "code": self.code});
        if let Some(e) = &self.errors {
            b["errors"] = e.clone();
        }
        b
    }
}

pub(crate) struct Guild {
    pub id: Snowflake,
    pub name: String,
    pub owner_id: Snowflake,
}

pub(crate) struct Interaction {
    pub id: Snowflake,
    pub token: String,
    /// 3 component, 5 modal submit.
    pub kind: u64,
    pub channel_id: Snowflake,
    pub message_id: Option<Snowflake>,
    pub user_id: Snowflake,
    pub custom_id: String,
    pub created: Instant,
    pub responses: Vec<InteractionResponse>,
    /// Modal submit: the submitted `data` (`custom_id` + rows of text input values).
    pub submit: Option<Value>,
}

/// A gateway session (survives its connection so it can be resumed).
pub(crate) struct Session {
    pub intents: u64,
    /// Every dispatch of this session: `(seq, event name, payload)`.
    pub events: Vec<(u64, String, Value)>,
    pub valid: bool,
    /// The connection currently attached, if any.
    pub conn: Option<u64>,
}

/// A command for one gateway connection.
#[derive(Clone, Debug)]
pub(crate) enum GwCommand {
    /// Send op 7 and close.
    Reconnect,
    /// Close the TCP connection with no close frame.
    Drop,
    /// Send op 9 with `d = resumable`.
    InvalidSession { resumable: bool },
    /// Close with this code.
    Close(u16),
}

pub(crate) struct State {
    pub token: String,
    pub bot: DUser,
    pub application_id: Snowflake,
    /// May the bot use the MESSAGE_CONTENT intent (Developer Portal switch)?
    pub message_content_enabled: bool,
    pub heartbeat_interval_ms: u64,
    pub gateway_url: String,
    last_id: u64,
    token_counter: u64,
    pub users: BTreeMap<Snowflake, DUser>,
    pub guilds: BTreeMap<Snowflake, Guild>,
    pub channels: BTreeMap<Snowflake, DChannel>,
    pub messages: Vec<DMessage>,
    /// `(channel, author, nonce)` → (message id, created).
    nonces: HashMap<(Snowflake, Snowflake, String), (Snowflake, Instant)>,
    pub interactions: BTreeMap<Snowflake, Interaction>,
    pub requests: Vec<RequestRecord>,
    pub faults: Vec<(String, Fault, usize)>,
    pub sessions: HashMap<String, Session>,
    /// Commands for one connection each (broadcasts are expanded when issued).
    pub gw_commands: Vec<(Option<u64>, GwCommand)>,
    pub live_conns: BTreeSet<u64>,
    pub gateway_log: Vec<GatewayRecord>,
    pub next_conn: u64,
    pub version: u64,
}

fn now_iso() -> String {
    iso_of(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64)
}

/// `YYYY-MM-DDTHH:MM:SS.mmm000+00:00`, Discord's timestamp shape.
fn iso_of(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant), valid for the Unix era.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Discord's text-channel name rule: lowercase, whitespace runs → `-`, most punctuation dropped.
pub fn normalize_channel_name(name: &str, kind: u8) -> String {
    if kind != 0 && kind != 5 {
        return name.trim().to_string();
    }
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_whitespace() {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else if c.is_alphanumeric() || c == '-' || c == '_' {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn sid(v: Snowflake) -> Value {
    Value::String(v.to_string())
}

fn parse_id(v: &Value) -> Option<Snowflake> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl State {
    pub fn new(token: String, bot: DUser, application_id: Snowflake, gateway_url: String) -> State {
        let mut users = BTreeMap::new();
        users.insert(bot.id, bot.clone());
        State {
            token,
            bot,
            application_id,
            message_content_enabled: true,
            heartbeat_interval_ms: 1000,
            gateway_url,
            last_id: 0,
            token_counter: 0,
            users,
            guilds: BTreeMap::new(),
            channels: BTreeMap::new(),
            messages: Vec::new(),
            nonces: HashMap::new(),
            interactions: BTreeMap::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            sessions: HashMap::new(),
            gw_commands: Vec::new(),
            live_conns: BTreeSet::new(),
            gateway_log: Vec::new(),
            next_conn: 1,
            version: 0,
        }
    }

    /// A fresh snowflake: real timestamp bits, strictly increasing.
    pub fn next_id(&mut self) -> Snowflake {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let candidate = (ms.saturating_sub(DISCORD_EPOCH_MS)) << 22;
        self.last_id = candidate.max(self.last_id + 1);
        self.last_id
    }

    fn next_token(&mut self) -> String {
        self.token_counter += 1;
        format!("aW50ZXJhY3Rpb246{:016x}{:08x}", self.last_id, self.token_counter)
    }

    // ----- JSON shapes ---------------------------------------------------------------------

    pub fn user_json(&self, u: &DUser) -> Value {
        json!({
            "id": sid(u.id), "username": u.name, "discriminator": "0", "global_name": u.name,
            "avatar": null, "bot": u.bot, "system": false, "public_flags": 0, "flags": 0,
            "banner": null, "accent_color": null, "avatar_decoration_data": null,
        })
    }

    /// `GET /users/@me`: the full current user (twilight insists on `mfa_enabled` etc.).
    pub fn current_user_json(&self) -> Value {
        let mut u = self.user_json(&self.bot);
        u["mfa_enabled"] = json!(true);
        u["verified"] = json!(true);
        u["locale"] = json!("en-US");
        u["email"] = Value::Null;
        u["premium_type"] = json!(0);
        u
    }

    fn member_json(&self, u: &DUser) -> Value {
        json!({
            "user": self.user_json(u), "nick": null, "avatar": null, "roles": [],
            "joined_at": "2025-01-01T00:00:00.000000+00:00", "premium_since": null,
            "deaf": false, "mute": false, "flags": 0, "pending": false, "permissions": "2248473465835073",
            "communication_disabled_until": null,
        })
    }

    pub fn channel_json(&self, c: &DChannel) -> Value {
        let last = self.messages.iter().rev().find(|m| m.channel_id == c.id).map(|m| sid(m.id)).unwrap_or(Value::Null);
        let mut v = json!({
            "id": sid(c.id), "type": c.kind, "guild_id": sid(c.guild_id), "name": c.name,
            "position": c.position, "permission_overwrites": [], "parent_id": c.parent_id.map(sid),
            "nsfw": false, "flags": 0,
        });
        if c.kind == 0 || c.kind == 5 {
            v["topic"] = c.topic.clone().map(Value::String).unwrap_or(Value::Null);
            v["last_message_id"] = last;
            v["rate_limit_per_user"] = json!(0);
        }
        v
    }

    pub fn guild_json(&self, g: &Guild) -> Value {
        let channels: Vec<Value> =
            self.channels.values().filter(|c| c.guild_id == g.id).map(|c| self.channel_json(c)).collect();
        let members: Vec<Value> = self.users.values().map(|u| self.member_json(u)).collect();
        let base = json!({
            "id": sid(g.id), "name": g.name, "icon": null, "icon_hash": null, "splash": null,
            "discovery_splash": null, "owner_id": sid(g.owner_id), "afk_channel_id": null,
            "afk_timeout": 300, "widget_enabled": false, "widget_channel_id": null,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [{
                "id": sid(g.id), "name": "@everyone", "color": 0, "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "hoist": false, "icon": null, "unicode_emoji": null, "position": 0,
                "permissions": "2248473465835073", "managed": false, "mentionable": false, "flags": 0,
            }],
        });
        let more = json!({
            "emojis": [], "features": [], "mfa_level": 0, "application_id": null,
            "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
            "max_presences": null, "max_members": 500000, "vanity_url_code": null, "description": null,
            "banner": null, "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": null, "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
            "nsfw_level": 0, "stickers": [], "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null, "joined_at": "2025-01-01T00:00:00.000000+00:00",
            "large": false, "unavailable": false, "member_count": members.len(), "voice_states": [],
            "members": members, "channels": channels, "threads": [], "presences": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "embedded_activities": [], "lazy": true, "incidents_data": null,
        });
        let mut v = base;
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    }

    pub fn message_json(&self, m: &DMessage) -> Value {
        let author = self.users.get(&m.author_id).cloned().unwrap_or(DUser { id: m.author_id, name: "unknown".into(), bot: false });
        let guild_id = self.channels.get(&m.channel_id).map(|c| c.guild_id);
        let mentions: Vec<Value> = m.mentions.iter().filter_map(|id| self.users.get(id)).map(|u| self.user_json(u)).collect();
        let mut v = json!({
            "id": sid(m.id), "channel_id": sid(m.channel_id), "author": self.user_json(&author),
            "content": m.content, "timestamp": iso_of(((m.id >> 22) + DISCORD_EPOCH_MS).max(DISCORD_EPOCH_MS)),
            "edited_timestamp": if m.edits.is_empty() { Value::Null } else { json!(now_iso()) },
            "tts": false, "mention_everyone": m.mention_everyone, "mentions": mentions, "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": false, "type": if m.reply_to.is_some() { 19 } else { 0 },
            "flags": m.flags, "components": m.components,
        });
        if let Some(g) = guild_id {
            v["guild_id"] = sid(g);
            if !author.bot || author.id != self.bot.id {
                let mut member = self.member_json(&author);
                member.as_object_mut().unwrap().remove("user");
                v["member"] = member;
            }
        }
        if !m.nonce.is_null() {
            v["nonce"] = m.nonce.clone();
        }
        if author.bot && author.id == self.bot.id {
            v["application_id"] = sid(self.application_id);
        }
        if let Some(r) = m.reply_to {
            v["message_reference"] = json!({"type": 0, "message_id": sid(r), "channel_id": sid(m.channel_id), "guild_id": guild_id.map(sid)});
            v["referenced_message"] = self.find_message(r).map(|o| {
                let mut inner = self.message_json_shallow(o);
                inner.as_object_mut().unwrap().remove("referenced_message");
                inner
            }).unwrap_or(Value::Null);
        }
        if let Some(i) = m.interaction_id.and_then(|i| self.interactions.get(&i)) {
            let user = self.users.get(&i.user_id).cloned().unwrap_or(DUser { id: i.user_id, name: "unknown".into(), bot: false });
            v["interaction_metadata"] = json!({"id": sid(i.id), "type": i.kind, "user": self.user_json(&user), "authorizing_integration_owners": {}});
            v["webhook_id"] = sid(self.application_id);
        }
        v
    }

    fn message_json_shallow(&self, m: &DMessage) -> Value {
        let mut m = m.clone();
        m.reply_to = None;
        self.message_json(&m)
    }

    pub fn find_message(&self, id: Snowflake) -> Option<&DMessage> {
        self.messages.iter().find(|m| m.id == id)
    }

    fn find_message_mut(&mut self, id: Snowflake) -> Option<&mut DMessage> {
        self.messages.iter_mut().find(|m| m.id == id)
    }

    pub fn interaction_json(&self, i: &Interaction) -> Value {
        let user = self.users.get(&i.user_id).cloned().unwrap_or(DUser { id: i.user_id, name: "unknown".into(), bot: false });
        let ch = self.channels.get(&i.channel_id).cloned();
        let guild_id = ch.as_ref().map(|c| c.guild_id);
        let data = if i.kind == 3 {
            json!({"custom_id": i.custom_id, "component_type": 2})
        } else {
            i.submit.clone().unwrap_or(json!({}))
        };
        let mut v = json!({
            "id": sid(i.id), "application_id": sid(self.application_id), "type": i.kind, "data": data,
            "channel_id": sid(i.channel_id), "token": i.token, "version": 1, "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "app_permissions": "2248473465835073",
            "attachment_size_limit": 10_485_760, "authorizing_integration_owners": {"0": guild_id.map(sid).unwrap_or(json!("0"))},
            "context": 0,
        });
        if let Some(c) = &ch {
            v["channel"] = self.channel_json(c);
            v["guild_id"] = sid(c.guild_id);
            v["guild"] = json!({"id": sid(c.guild_id), "locale": "en-US", "features": []});
            let mut member = self.member_json(&user);
            member["permissions"] = json!("2248473465835073");
            v["member"] = member;
        } else {
            v["user"] = self.user_json(&user);
        }
        if let Some(m) = i.message_id.and_then(|m| self.find_message(m)) {
            v["message"] = self.message_json(m);
        }
        v
    }

    // ----- gateway ---------------------------------------------------------------------------

    /// Queue a dispatch on every live session that subscribed to `intent` (0 = always sent).
    pub fn dispatch(&mut self, name: &str, payload: Value, intent: u64) {
        let bot_id = self.bot.id;
        for s in self.sessions.values_mut().filter(|s| s.valid) {
            if intent != 0 && s.intents & intent == 0 {
                continue;
            }
            let mut d = payload.clone();
            if name == "MESSAGE_CREATE" || name == "MESSAGE_UPDATE" {
                apply_message_content_rule(&mut d, s.intents, bot_id);
            }
            let seq = s.events.last().map(|e| e.0).unwrap_or(0) + 1;
            s.events.push((seq, name.to_string(), d));
        }
    }

    pub fn dispatch_message(&mut self, name: &str, m: &DMessage) {
        let v = self.message_json(m);
        let dm = !self.channels.contains_key(&m.channel_id);
        self.dispatch(name, v, if dm { INTENT_DIRECT_MESSAGES } else { INTENT_GUILD_MESSAGES });
    }

    /// IDENTIFY: check the token and intents. `Err(close code)` when refused.
    pub fn identify(&mut self, conn: u64, token: &str, intents: u64) -> Result<String, u16> {
        if token.trim_start_matches("Bot ") != self.token {
            return Err(4004);
        }
        if intents & !((1u64 << 26) - 1) != 0 {
            return Err(4013);
        }
        if intents & PRIVILEGED & INTENT_MESSAGE_CONTENT != 0 && !self.message_content_enabled {
            return Err(4014);
        }
        let session_id = format!("{:032x}", self.next_id() as u128 * 7919);
        self.sessions.insert(session_id.clone(), Session { intents, events: Vec::new(), valid: true, conn: Some(conn) });
        self.gateway_log.push(GatewayRecord::Identify { conn, intents, session_id: session_id.clone() });
        let guilds: Vec<Value> = self.guilds.keys().map(|g| json!({"id": sid(*g), "unavailable": true})).collect();
        let ready = json!({
            "v": 10, "user": self.current_user_json(), "guilds": guilds, "session_id": session_id,
            "resume_gateway_url": self.gateway_url, "shard": [0, 1],
            "application": {"id": sid(self.application_id), "flags": 565248},
            "private_channels": [], "relationships": [], "presences": [], "geo_ordered_rtc_regions": ["rotterdam"],
            "user_settings": {}, "guild_join_requests": [], "session_type": "normal", "auth_session_id_hash": "x",
        });
        self.push_to(&session_id, "READY", ready);
        let guilds: Vec<Value> = self.guilds.values().map(|g| self.guild_json(g)).collect();
        for g in guilds {
            if intents & INTENT_GUILDS != 0 {
                self.push_to(&session_id, "GUILD_CREATE", g);
            }
        }
        Ok(session_id)
    }

    fn push_to(&mut self, session_id: &str, name: &str, d: Value) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            let seq = s.events.last().map(|e| e.0).unwrap_or(0) + 1;
            s.events.push((seq, name.to_string(), d));
        }
    }

    /// RESUME: `Ok(())` attaches `conn` to the session (the caller replays events after `seq`
    /// and then sends RESUMED); `Err` → op 9 `false`.
    pub fn resume(&mut self, conn: u64, token: &str, session_id: &str, seq: u64) -> Result<(), u16> {
        if token.trim_start_matches("Bot ") != self.token {
            return Err(4004);
        }
        let ok = match self.sessions.get_mut(session_id) {
            Some(s) if s.valid && seq <= s.events.last().map(|e| e.0).unwrap_or(0) => {
                s.conn = Some(conn);
                true
            }
            _ => false,
        };
        self.gateway_log.push(GatewayRecord::Resume { conn, session_id: session_id.to_string(), seq, accepted: ok });
        if ok {
            // RESUMED is itself a dispatch with a sequence number.
            self.push_to(session_id, "RESUMED", json!({"_trace": ["fake-discord"]}));
            Ok(())
        } else {
            Err(0)
        }
    }

    // ----- REST ------------------------------------------------------------------------------

    fn check_auth(&self, auth: Option<&str>) -> Result<(), ApiError> {
        match auth {
            Some(a) if a.strip_prefix("Bot ").is_some_and(|t| t == self.token) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }

    fn channel(&self, id: &str) -> Result<&DChannel, ApiError> {
        id.parse::<Snowflake>().ok().and_then(|id| self.channels.get(&id)).ok_or_else(ApiError::unknown_channel)
    }

    /// Handle one REST call. `path` is relative to `/api/v10`. Returns `(status, body)`; a
    /// status of 204 has no body.
    pub fn rest(&mut self, method: &str, path: &str, auth: Option<&str>, body: &Value) -> Result<(u16, Value), ApiError> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("GET", ["gateway"]) => Ok((200, json!({"url": self.gateway_url}))),
            ("GET", ["gateway", "bot"]) => {
                self.check_auth(auth)?;
                Ok((200, json!({"url": self.gateway_url, "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}})))
            }
            ("GET", ["users", "@me"]) => {
                self.check_auth(auth)?;
                Ok((200, self.current_user_json()))
            }
            ("GET", ["oauth2", "applications", "@me"]) => {
                self.check_auth(auth)?;
                Ok((200, json!({"id": sid(self.application_id), "name": self.bot.name, "icon": null, "description": "",
                    "bot_public": true, "bot_require_code_grant": false, "verify_key": "00", "flags": 565248,
                    "owner": self.user_json(&self.bot), "team": null, "summary": ""})))
            }
            ("GET", ["guilds", g, "channels"]) => {
                self.check_auth(auth)?;
                let g = self.guild_id(g)?;
                let list: Vec<Value> = self.channels.values().filter(|c| c.guild_id == g).map(|c| self.channel_json(c)).collect();
                Ok((200, Value::Array(list)))
            }
            ("POST", ["guilds", g, "channels"]) => {
                self.check_auth(auth)?;
                let g = self.guild_id(g)?;
                self.create_channel(g, body).map(|c| (201, c))
            }
            ("GET", ["channels", c]) => {
                self.check_auth(auth)?;
                let c = self.channel(c)?.clone();
                Ok((200, self.channel_json(&c)))
            }
            ("PATCH", ["channels", c]) => {
                self.check_auth(auth)?;
                let id = self.channel(c)?.id;
                self.edit_channel(id, body).map(|c| (200, c))
            }
            ("DELETE", ["channels", c]) => {
                self.check_auth(auth)?;
                let id = self.channel(c)?.id;
                let c = self.remove_channel(id).unwrap();
                Ok((200, c))
            }
            ("POST", ["channels", c, "messages"]) => {
                self.check_auth(auth)?;
                let id = self.channel(c)?.id;
                let author = self.bot.clone();
                self.create_message(id, &author, body, None).map(|m| (200, m))
            }
            ("GET", ["channels", c, "messages", m]) => {
                self.check_auth(auth)?;
                let cid = self.channel(c)?.id;
                let m = self.message_in(cid, m)?;
                Ok((200, self.message_json(m)))
            }
            ("PATCH", ["channels", c, "messages", m]) => {
                self.check_auth(auth)?;
                let cid = self.channel(c)?.id;
                let mid = self.message_in(cid, m)?.id;
                self.edit_message(mid, body, true).map(|v| (200, v))
            }
            ("PUT", ["channels", c, "messages", m, "reactions", _, "@me"]) => {
                self.check_auth(auth)?;
                let cid = self.channel(c)?.id;
                self.message_in(cid, m)?;
                Ok((204, Value::Null))
            }
            ("POST", ["interactions", id, token, "callback"]) => self.interaction_callback(id, token, body).map(|_| (204, Value::Null)),
            ("POST", ["webhooks", app, token]) => {
                let i = self.interaction_for_webhook(app, token)?;
                let author = self.bot.clone();
                let channel = self.interactions[&i].channel_id;
                self.create_message(channel, &author, body, Some(i)).map(|m| (200, m))
            }
            ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
                let i = self.interaction_for_webhook(app, token)?;
                let original = self.messages.iter().find(|m| m.interaction_id == Some(i)).map(|m| m.id);
                match original {
                    Some(mid) => self.edit_message(mid, body, false).map(|v| (200, v)),
                    None => {
                        // Deferred component update: @original is the message the button is on.
                        let mid = self.interactions[&i].message_id.ok_or_else(ApiError::unknown_message)?;
                        self.edit_message(mid, body, false).map(|v| (200, v))
                    }
                }
            }
            _ => Err(ApiError::not_found()),
        }
    }

    fn guild_id(&self, g: &str) -> Result<Snowflake, ApiError> {
        g.parse::<Snowflake>().ok().filter(|g| self.guilds.contains_key(g)).ok_or_else(|| ApiError::new(404, 10004, "Unknown Guild"))
    }

    fn message_in(&self, channel: Snowflake, m: &str) -> Result<&DMessage, ApiError> {
        m.parse::<Snowflake>()
            .ok()
            .and_then(|m| self.find_message(m))
            .filter(|m| m.channel_id == channel && !m.ephemeral())
            .ok_or_else(ApiError::unknown_message)
    }

    pub fn create_channel(&mut self, guild: Snowflake, body: &Value) -> Result<Value, ApiError> {
        let kind = body.get("type").and_then(Value::as_u64).unwrap_or(0) as u8;
        let raw = body.get("name").and_then(Value::as_str).unwrap_or("");
        let name = normalize_channel_name(raw, kind);
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."));
        }
        let parent_id = body.get("parent_id").and_then(parse_id);
        if let Some(p) = parent_id
            && !self.channels.get(&p).is_some_and(|c| c.kind == 4 && c.guild_id == guild)
        {
            return Err(ApiError::invalid_form("parent_id", "CHANNEL_PARENT_INVALID", "Category does not exist."));
        }
        if kind == 4 && parent_id.is_some() {
            return Err(ApiError::invalid_form("parent_id", "CHANNEL_PARENT_INVALID_TYPE", "Categories cannot have subcategories."));
        }
        let position = self.channels.values().filter(|c| c.guild_id == guild).count() as i64;
        let c = DChannel {
            id: self.next_id(),
            guild_id: guild,
            name,
            kind,
            parent_id,
            topic: body.get("topic").and_then(Value::as_str).map(str::to_string),
            position,
        };
        self.channels.insert(c.id, c.clone());
        let v = self.channel_json(&c);
        self.dispatch("CHANNEL_CREATE", v.clone(), INTENT_GUILDS);
        Ok(v)
    }

    fn edit_channel(&mut self, id: Snowflake, body: &Value) -> Result<Value, ApiError> {
        let mut c = self.channels[&id].clone();
        if let Some(raw) = body.get("name").and_then(Value::as_str) {
            let name = normalize_channel_name(raw, c.kind);
            if name.is_empty() || name.chars().count() > 100 {
                return Err(ApiError::invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."));
            }
            c.name = name;
        }
        if let Some(t) = body.get("topic") {
            c.topic = t.as_str().map(str::to_string);
        }
        if let Some(p) = body.get("parent_id") {
            c.parent_id = parse_id(p);
        }
        self.channels.insert(id, c.clone());
        let v = self.channel_json(&c);
        self.dispatch("CHANNEL_UPDATE", v.clone(), INTENT_GUILDS);
        Ok(v)
    }

    pub fn remove_channel(&mut self, id: Snowflake) -> Option<Value> {
        let c = self.channels.remove(&id)?;
        let v = self.channel_json(&c);
        self.dispatch("CHANNEL_DELETE", v.clone(), INTENT_GUILDS);
        Some(v)
    }

    /// Validate and store a message from `author`; `interaction` marks a response/followup.
    pub fn create_message(&mut self, channel: Snowflake, author: &DUser, body: &Value, interaction: Option<Snowflake>) -> Result<Value, ApiError> {
        let content = body.get("content").and_then(Value::as_str).unwrap_or("").to_string();
        if content.chars().count() > 2000 {
            return Err(ApiError::invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."));
        }
        let components = body.get("components").cloned().filter(|c| !c.is_null()).unwrap_or(json!([]));
        validate_components(&components)?;
        let has_embeds = body.get("embeds").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
        if content.is_empty() && components.as_array().is_none_or(|c| c.is_empty()) && !has_embeds {
            return Err(ApiError::new(400, 50006, "Cannot send an empty message"));
        }
        let nonce = body.get("nonce").cloned().unwrap_or(Value::Null);
        let nonce_key = match &nonce {
            Value::String(s) => {
                if s.chars().count() > 25 {
                    return Err(ApiError::invalid_form("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."));
                }
                Some(s.clone())
            }
            Value::Number(n) => Some(n.to_string()),
            Value::Null => None,
            _ => return Err(ApiError::invalid_form("nonce", "NONCE_TYPE_INVALID", "Nonce must be a string or integer.")),
        };
        let enforce = body.get("enforce_nonce").and_then(Value::as_bool).unwrap_or(false);
        if enforce && let Some(k) = &nonce_key {
            let key = (channel, author.id, k.clone());
            if let Some((mid, at)) = self.nonces.get(&key)
                && at.elapsed() < NONCE_WINDOW
                && let Some(m) = self.find_message(*mid)
            {
                // Discord answers with the message created earlier; nothing new is posted.
                return Ok(self.message_json(m));
            }
        }
        let reply_to = match body.get("message_reference") {
            Some(r) if !r.is_null() => {
                let id = r.get("message_id").and_then(parse_id);
                let fail = r.get("fail_if_not_exists").and_then(Value::as_bool).unwrap_or(true);
                match id.and_then(|id| self.find_message(id)).filter(|m| m.channel_id == channel) {
                    Some(m) => Some(m.id),
                    None if fail => {
                        return Err(ApiError::invalid_form("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"));
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let allowed = body.get("allowed_mentions").cloned().unwrap_or(Value::Null);
        let (mention_everyone, mentions) = self.pings(&content, &allowed, reply_to);
        let flags = body.get("flags").and_then(Value::as_u64).unwrap_or(0) & 64;
        let m = DMessage {
            id: self.next_id(),
            channel_id: channel,
            author_id: author.id,
            author_is_bot: author.bot,
            content,
            components,
            allowed_mentions: allowed,
            nonce,
            enforce_nonce: enforce,
            reply_to,
            mention_everyone,
            mentions,
            flags,
            interaction_id: interaction,
            edits: Vec::new(),
            created: Instant::now(),
        };
        if let Some(k) = nonce_key {
            self.nonces.insert((channel, author.id, k), (m.id, Instant::now()));
        }
        let v = self.message_json(&m);
        self.messages.push(m.clone());
        if !m.ephemeral() {
            self.dispatch_message("MESSAGE_CREATE", &m);
        }
        Ok(v)
    }

    /// Who a message pings, as Discord decides it from `allowed_mentions`: with no
    /// `allowed_mentions` everything parsed from the content pings; with one, only the `parse`
    /// kinds and the listed `users`; `replied_user` pings the author of the replied message.
    fn pings(&self, content: &str, allowed: &Value, reply_to: Option<Snowflake>) -> (bool, Vec<Snowflake>) {
        let parse: Option<Vec<&str>> =
            if allowed.is_null() { None } else { Some(allowed.get("parse").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()) };
        let everyone_ok = parse.as_ref().is_none_or(|p| p.contains(&"everyone"));
        let users_ok = parse.as_ref().is_none_or(|p| p.contains(&"users"));
        let listed: Vec<Snowflake> = allowed.get("users").and_then(Value::as_array).into_iter().flatten().filter_map(parse_id).collect();
        let mention_everyone = everyone_ok && (content.contains("@everyone") || content.contains("@here"));
        let mut mentions = Vec::new();
        for (i, _) in content.match_indices("<@") {
            let rest = content[i + 2..].trim_start_matches('!');
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(id) = digits.parse::<Snowflake>()
                && rest[digits.len()..].starts_with('>')
                && (users_ok || listed.contains(&id))
                && self.users.contains_key(&id)
                && !mentions.contains(&id)
            {
                mentions.push(id);
            }
        }
        let replied_ok = if allowed.is_null() { true } else { allowed.get("replied_user").and_then(Value::as_bool).unwrap_or(false) };
        if replied_ok && let Some(author) = reply_to.and_then(|r| self.find_message(r)).map(|m| m.author_id)
            && !mentions.contains(&author)
        {
            mentions.push(author);
        }
        (mention_everyone, mentions)
    }

    fn edit_message(&mut self, id: Snowflake, body: &Value, check_author: bool) -> Result<Value, ApiError> {
        let bot = self.bot.id;
        let m = self.find_message(id).ok_or_else(ApiError::unknown_message)?;
        if check_author && m.author_id != bot {
            return Err(ApiError::new(403, 50005, "Cannot edit a message authored by another user"));
        }
        if let Some(c) = body.get("content").and_then(Value::as_str)
            && c.chars().count() > 2000
        {
            return Err(ApiError::invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."));
        }
        if let Some(c) = body.get("components").filter(|c| !c.is_null()) {
            validate_components(c)?;
        }
        let m = self.find_message_mut(id).unwrap();
        m.edits.push((m.content.clone(), m.components.clone()));
        if let Some(c) = body.get("content").and_then(Value::as_str) {
            m.content = c.to_string();
        }
        if let Some(c) = body.get("components") {
            m.components = if c.is_null() { json!([]) } else { c.clone() };
        }
        if let Some(a) = body.get("allowed_mentions") {
            m.allowed_mentions = a.clone();
        }
        let m = m.clone();
        if !m.ephemeral() {
            self.dispatch_message("MESSAGE_UPDATE", &m);
        }
        Ok(self.message_json(&m))
    }

    fn interaction_callback(&mut self, id: &str, token: &str, body: &Value) -> Result<(), ApiError> {
        let iid = id.parse::<Snowflake>().map_err(|_| ApiError::unknown_interaction())?;
        let i = self.interactions.get(&iid).filter(|i| i.token == token).ok_or_else(ApiError::unknown_interaction)?;
        let latency = i.created.elapsed();
        if !i.responses.is_empty() {
            return Err(ApiError::new(400, 40060, "Interaction has already been acknowledged."));
        }
        if latency > INTERACTION_DEADLINE {
            return Err(ApiError::unknown_interaction());
        }
        let kind = body.get("type").and_then(Value::as_u64).unwrap_or(0);
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        let (i_kind, channel, message_id) = (i.kind, i.channel_id, i.message_id);
        match kind {
            4 => {
                let author = self.bot.clone();
                self.create_message(channel, &author, &data, Some(iid))?;
            }
            5 | 6 => {}
            7 => {
                if i_kind != 3 && message_id.is_none() {
                    return Err(ApiError::invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid"));
                }
                let mid = message_id.ok_or_else(ApiError::unknown_message)?;
                self.edit_message(mid, &data, false)?;
            }
            9 => {
                if i_kind == 5 {
                    return Err(ApiError::invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Modals cannot answer a modal submit"));
                }
                validate_modal(&data)?;
            }
            _ => return Err(ApiError::invalid_form("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction response type is invalid")),
        }
        self.interactions.get_mut(&iid).unwrap().responses.push(InteractionResponse { kind, data, latency });
        Ok(())
    }

    fn interaction_for_webhook(&self, app: &str, token: &str) -> Result<Snowflake, ApiError> {
        let unknown = || ApiError::new(404, 10015, "Unknown Webhook");
        if app.parse::<Snowflake>().ok() != Some(self.application_id) {
            return Err(unknown());
        }
        let i = self.interactions.values().find(|i| i.token == token).ok_or_else(unknown)?;
        if i.responses.is_empty() || i.created.elapsed() > FOLLOWUP_WINDOW {
            return Err(unknown());
        }
        Ok(i.id)
    }

    /// A human's interaction (button press or modal submit); returns its id.
    pub fn new_interaction(&mut self, kind: u64, channel_id: Snowflake, message_id: Option<Snowflake>, user_id: Snowflake, custom_id: &str, submit: Option<Value>) -> Snowflake {
        let id = self.next_id();
        let token = self.next_token();
        let i = Interaction { id, token, kind, channel_id, message_id, user_id, custom_id: custom_id.to_string(), created: Instant::now(), responses: Vec::new(), submit };
        let v = self.interaction_json(&i);
        self.interactions.insert(id, i);
        self.dispatch("INTERACTION_CREATE", v, 0);
        id
    }

    /// Answer a matching injected fault, if any (consuming one use).
    pub fn take_fault(&mut self, route: &str) -> Option<Fault> {
        let pos = self.faults.iter().position(|(r, _, n)| *n > 0 && r == route)?;
        let f = self.faults[pos].1.clone();
        self.faults[pos].2 -= 1;
        if self.faults[pos].2 == 0 {
            self.faults.remove(pos);
        }
        Some(f)
    }
}

/// Without MESSAGE_CONTENT a bot sees guild messages with empty content, unless the message
/// mentions it or is its own (DMs are always readable).
fn apply_message_content_rule(d: &mut Value, intents: u64, bot_id: Snowflake) {
    if intents & INTENT_MESSAGE_CONTENT != 0 || d.get("guild_id").is_none() {
        return;
    }
    let own = d.pointer("/author/id").and_then(parse_id) == Some(bot_id);
    let mentioned = d.get("mentions").and_then(Value::as_array).into_iter().flatten().any(|u| u.get("id").and_then(parse_id) == Some(bot_id));
    if !own && !mentioned {
        d["content"] = json!("");
        d["embeds"] = json!([]);
        d["attachments"] = json!([]);
        d["components"] = json!([]);
    }
}

/// Discord's component rules for what a bridge sends: ≤5 action rows (type 1), ≤5 buttons per
/// row, buttons need a label or emoji, `custom_id` 1..=100 chars and unique (link buttons need
/// a `url` and no `custom_id`), label ≤80 chars.
fn validate_components(c: &Value) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::invalid_form("components", "COMPONENT_INVALID", m);
    let rows = c.as_array().ok_or_else(|| bad("components must be an array"))?;
    if rows.len() > 5 {
        return Err(bad("Must be 5 or fewer in length."));
    }
    let mut ids = Vec::new();
    for row in rows {
        if row.get("type").and_then(Value::as_u64) != Some(1) {
            return Err(bad("top-level components must be action rows"));
        }
        let items = row.get("components").and_then(Value::as_array).ok_or_else(|| bad("action row without components"))?;
        if items.is_empty() || items.len() > 5 {
            return Err(bad("action rows hold 1 to 5 buttons"));
        }
        for b in items {
            if b.get("type").and_then(Value::as_u64) != Some(2) {
                return Err(bad("only buttons are supported in messages by this fake"));
            }
            let style = b.get("style").and_then(Value::as_u64).unwrap_or(0);
            if !(1..=6).contains(&style) {
                return Err(bad("invalid button style"));
            }
            let label = b.get("label").and_then(Value::as_str).unwrap_or("");
            if label.chars().count() > 80 || (label.is_empty() && b.get("emoji").is_none()) {
                return Err(bad("button label must be 1 to 80 characters (or an emoji)"));
            }
            if style == 5 {
                if b.get("url").and_then(Value::as_str).is_none() || b.get("custom_id").is_some_and(|c| !c.is_null()) {
                    return Err(bad("link buttons need a url and no custom_id"));
                }
                continue;
            }
            let id = b.get("custom_id").and_then(Value::as_str).unwrap_or("");
            if id.is_empty() || id.chars().count() > 100 {
                return Err(bad("custom_id must be 1 to 100 characters"));
            }
            if ids.contains(&id) {
                return Err(ApiError::invalid_form("components", "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"));
            }
            ids.push(id);
        }
    }
    Ok(())
}

/// Modal rules: `custom_id` 1..=100, `title` 1..=45, 1..=5 action rows of one text input each
/// (type 4, style 1 short / 2 paragraph, label 1..=45, `custom_id` 1..=100).
fn validate_modal(d: &Value) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::invalid_form("data", "MODAL_INVALID", m);
    let id = d.get("custom_id").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() || id.chars().count() > 100 {
        return Err(bad("custom_id must be 1 to 100 characters"));
    }
    let title = d.get("title").and_then(Value::as_str).unwrap_or("");
    if title.is_empty() || title.chars().count() > 45 {
        return Err(bad("title must be 1 to 45 characters"));
    }
    let rows = d.get("components").and_then(Value::as_array).ok_or_else(|| bad("components missing"))?;
    if rows.is_empty() || rows.len() > 5 {
        return Err(bad("a modal holds 1 to 5 rows"));
    }
    for row in rows {
        let items = row.get("components").and_then(Value::as_array).ok_or_else(|| bad("row without components"))?;
        if row.get("type").and_then(Value::as_u64) != Some(1) || items.len() != 1 {
            return Err(bad("each row holds exactly one text input"));
        }
        let t = &items[0];
        let label = t.get("label").and_then(Value::as_str).unwrap_or("");
        if t.get("type").and_then(Value::as_u64) != Some(4)
            || !matches!(t.get("style").and_then(Value::as_u64), Some(1 | 2))
            || label.is_empty()
            || label.chars().count() > 45
            || t.get("custom_id").and_then(Value::as_str).is_none_or(|c| c.is_empty() || c.chars().count() > 100)
        {
            return Err(bad("invalid text input"));
        }
    }
    Ok(())
}

/// The text inputs of a type-9 response.
pub(crate) fn modal_fields(data: &Value) -> Vec<ModalField> {
    let mut out = Vec::new();
    for row in data.get("components").and_then(Value::as_array).into_iter().flatten() {
        for t in row.get("components").and_then(Value::as_array).into_iter().flatten() {
            out.push(ModalField {
                custom_id: t.get("custom_id").and_then(Value::as_str).unwrap_or("").to_string(),
                label: t.get("label").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
    }
    out
}

/// `METHOD /path` with ids and tokens replaced (see [`routes`]).
pub(crate) fn route_key(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut out: Vec<String> = Vec::with_capacity(segs.len());
    for (i, s) in segs.iter().enumerate() {
        let after_id_of = |name: &str| i >= 2 && segs[i - 2] == name;
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            out.push("{id}".into());
        } else if after_id_of("interactions") || after_id_of("webhooks") {
            out.push("{token}".into());
        } else if i >= 1 && segs[i - 1] == "reactions" {
            out.push("{emoji}".into());
        } else {
            out.push((*s).to_string());
        }
    }
    format!("{method} /{}", out.join("/"))
}
