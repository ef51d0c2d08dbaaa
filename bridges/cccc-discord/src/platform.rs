//! [`DiscordPlatform`]: REST through [`crate::rest`], inbound events through a serenity gateway
//! client whose event handler converts and queues them (see the crate docs for the design).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cccc_bridge::render::{Outbound, Profile, to_discord_markdown};
use cccc_bridge::{BotIdentity, BoxFuture, ChatTarget, DeliverOpts, GroupHome, InboundMessage, Platform, PlatformRef, SendFailure, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serenity::all as sy;
use serenity::http::{LightMethod, Route};
use tokio::sync::mpsc;

use crate::rest::{ApiFailure, Rest};

/// Custom id of the disabled button left after an ack (the runner's "already acked" data).
pub const ACKED_DATA: &str = cccc_bridge::runner::ACKED_BUTTON_DATA;
/// Custom id prefix of the modal opened by a Reply button: `reply:<event_id>`.
const MODAL_PREFIX: &str = "reply:";
/// The modal's one text input.
const MODAL_FIELD: &str = "text";
/// Message flags: `SUPPRESS_NOTIFICATIONS` (silent) and `EPHEMERAL`.
const FLAG_SILENT: u64 = 1 << 12;
const FLAG_EPHEMERAL: u64 = 1 << 6;
/// Discord's content limit.
const MAX_CONTENT: usize = 2000;

/// Errors of the inherent (non-trait) API and of the gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscordError {
    /// 401 on REST or gateway close 4004.
    #[error("Discord rejected the bot token (reset it in the Developer Portal and update the environment variable)")]
    InvalidToken,
    /// Gateway close 4014.
    #[error("MESSAGE_CONTENT intent not enabled: turn on \"Message Content Intent\" under Bot → Privileged Gateway Intents in the Discord Developer Portal")]
    MessageContentIntentDisabled,
    #[error("gateway stopped: {0}")]
    Gateway(String),
    #[error("{0}")]
    Api(String),
}

impl DiscordError {
    /// The outbox/runner view: token and intent problems stop the worker.
    pub fn to_failure(&self) -> SendFailure {
        match self {
            DiscordError::InvalidToken | DiscordError::MessageContentIntentDisabled => SendFailure::CredentialRejected(self.to_string()),
            DiscordError::Gateway(_) => SendFailure::Transient(self.to_string()),
            DiscordError::Api(_) => SendFailure::Rejected(self.to_string()),
        }
    }
}

/// How to reach Discord.
#[derive(Clone)]
pub struct DiscordConfig {
    pub token: String,
    /// REST base-URL override (`http://127.0.0.1:PORT` for a fake); `None` = discord.com.
    pub api_base: Option<String>,
    /// Gateway URL override; `None` = what `GET /gateway` answers.
    pub gateway_url: Option<String>,
    /// How long [`Platform::next_updates`] waits for a first update.
    pub poll_wait: Duration,
}

impl DiscordConfig {
    pub fn new(token: impl Into<String>) -> DiscordConfig {
        DiscordConfig { token: token.into(), api_base: None, gateway_url: None, poll_wait: Duration::from_secs(10) }
    }
}

/// One planned Discord message (persisted in the outbox before sending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcPiece {
    /// Message content (≤ 2000 chars: the shared splitter measured it).
    pub content: String,
    /// Attach `[Ack]` (`ack:<id>`).
    #[serde(default)]
    pub ack_event: Option<String>,
    /// Attach `[Reply]` (`reply:<id>`).
    #[serde(default)]
    pub reply_event: Option<String>,
}

impl DcPiece {
    fn components(&self) -> Value {
        let mut buttons = Vec::new();
        if let Some(e) = &self.ack_event {
            buttons.push(json!({"type": 2, "style": 3, "label": "Ack", "custom_id": format!("ack:{e}")}));
        }
        if let Some(e) = &self.reply_event {
            buttons.push(json!({"type": 2, "style": 1, "label": "Reply", "custom_id": format!("{MODAL_PREFIX}{e}")}));
        }
        if buttons.is_empty() { json!([]) } else { json!([{"type": 1, "components": buttons}]) }
    }
}

/// How long [`Platform::next_updates`] waits for events still in flight in serenity's handler
/// tasks before it orders a batch.
const SETTLE: Duration = Duration::from_millis(25);

/// Creation order of an update: the snowflake of the message or interaction (stable sort keeps
/// the arrival order of the rest).
fn order_key(u: &Update) -> u64 {
    let id = match u {
        Update::Message(m) => m.message_id.as_str(),
        Update::Button { callback_id, .. } | Update::FormReply { callback_id, .. } => callback_id.split(':').next().unwrap_or(""),
        _ => "",
    };
    id.parse().unwrap_or(u64::MAX)
}

/// Discord's text-channel name normalisation (lowercase, whitespace runs → `-`, punctuation
/// other than `-`/`_` dropped), used to find a channel by the name we would create it with.
pub fn normalize_channel_name(name: &str) -> String {
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

/// What the gateway handler hands to `next_updates`.
enum Inbound {
    Update(Update),
    Fatal(DiscordError),
}

/// State shared by the platform and the gateway event handler.
struct Inner {
    rest: Rest,
    /// `(bot user id, user name)`, from `verify` or READY.
    me: Mutex<Option<(u64, String)>>,
    application_id: Mutex<Option<u64>>,
    /// Interactions acknowledged by the handler (their answer goes out as a followup).
    deferred: Mutex<HashSet<u64>>,
    /// Channel id → name, from GUILD_CREATE / CHANNEL_CREATE (for `chat_title`).
    channel_names: Mutex<HashMap<u64, String>>,
    fatal: Mutex<Option<DiscordError>>,
    tx: mpsc::UnboundedSender<Inbound>,
}

/// The Discord platform of one bot credential.
pub struct DiscordPlatform {
    inner: Arc<Inner>,
    cfg: DiscordConfig,
    client: reqwest::Client,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Inbound>>,
    /// Stops the shards (set once the gateway client was built).
    gateway: Mutex<Option<Arc<serenity::gateway::ShardManager>>>,
}

impl DiscordPlatform {
    /// A platform for `cfg`. No network until [`Platform::verify`] / [`DiscordPlatform::connect`].
    pub fn new(cfg: DiscordConfig) -> DiscordPlatform {
        let client = reqwest::Client::builder().no_proxy_for_local(cfg.api_base.as_deref()).build().unwrap_or_default();
        let auth = if cfg.token.starts_with("Bot ") { cfg.token.clone() } else { format!("Bot {}", cfg.token) };
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            rest: Rest::new(client.clone(), auth, cfg.api_base.clone()),
            me: Mutex::new(None),
            application_id: Mutex::new(None),
            deferred: Mutex::new(HashSet::new()),
            channel_names: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
            tx,
        });
        DiscordPlatform { inner, cfg, client, rx: tokio::sync::Mutex::new(rx), gateway: Mutex::new(None) }
    }

    /// Tokens that address the bot in message text (`<@id>`, `<@!id>`), once known.
    pub fn mention_tokens(&self) -> Vec<String> {
        self.inner.me.lock().unwrap().as_ref().map(|(id, _)| vec![format!("<@{id}>"), format!("<@!{id}>")]).unwrap_or_default()
    }

    /// The fatal gateway error, if the gateway stopped for good (4004, 4014).
    pub fn gateway_error(&self) -> Option<DiscordError> {
        self.inner.fatal.lock().unwrap().clone()
    }

    /// Start the gateway client (idempotent). Called by the first `next_updates` too.
    pub async fn connect(&self) -> Result<(), DiscordError> {
        if self.gateway.lock().unwrap().is_some() {
            return Ok(());
        }
        let mut b = sy::HttpBuilder::new(&self.cfg.token).client(self.client.clone()).ratelimiter_disabled(true);
        if let Some(base) = &self.cfg.api_base {
            b = b.proxy(base.clone());
        }
        let intents = sy::GatewayIntents::GUILDS | sy::GatewayIntents::GUILD_MESSAGES | sy::GatewayIntents::DIRECT_MESSAGES | sy::GatewayIntents::MESSAGE_CONTENT;
        let mut client = sy::ClientBuilder::new_with_http(b.build(), intents)
            .event_handler(Handler(self.inner.clone()))
            .await
            .map_err(|e| DiscordError::Gateway(e.to_string()))?;
        if let Some(url) = &self.cfg.gateway_url {
            // Never let a failed `GET /gateway` make a test dial the real gateway.
            *client.ws_url.lock().await = url.clone();
        }
        *self.gateway.lock().unwrap() = Some(client.shard_manager.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let err = match client.start().await {
                Ok(()) => return,
                Err(sy::Error::Gateway(sy::GatewayError::InvalidAuthentication)) => DiscordError::InvalidToken,
                Err(sy::Error::Gateway(sy::GatewayError::DisallowedGatewayIntents)) => DiscordError::MessageContentIntentDisabled,
                Err(e) => DiscordError::Gateway(e.to_string()),
            };
            tracing::error!(error = %err, "Discord gateway stopped");
            *inner.fatal.lock().unwrap() = Some(err.clone());
            let _ = inner.tx.send(Inbound::Fatal(err));
        });
        Ok(())
    }

    /// Stop the gateway shards.
    pub async fn shutdown(&self) {
        let m = self.gateway.lock().unwrap().take();
        if let Some(m) = m {
            m.shutdown_all().await;
        }
    }

    /// Find or create the text channel `name` in `guild_id` (under the category `category`,
    /// itself found or created, when given). Returns the channel id.
    pub async fn ensure_group_channel(&self, guild_id: &str, category: Option<&str>, name: &str) -> Result<String, SendFailure> {
        let guild = parse_id(guild_id)?;
        let route = || Route::GuildChannels { guild_id: sy::GuildId::new(guild) };
        let list: Vec<Value> = self.inner.rest.call_as(LightMethod::Get, route(), None).await.map_err(|e| e.classify())?;
        let id_of = |c: &Value| c.get("id").and_then(Value::as_str).unwrap_or("").to_string();
        let parent = match category.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(cat) => Some(match list.iter().find(|c| c["type"] == 4 && c["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(cat))) {
                Some(c) => id_of(c),
                None => {
                    let c = self.inner.rest.call(LightMethod::Post, route(), Some(&json!({"name": cat, "type": 4}))).await.map_err(|e| e.classify())?;
                    id_of(&c)
                }
            }),
        };
        let want = normalize_channel_name(name);
        let existing = list.iter().find(|c| {
            c["type"] == 0
                && c["name"].as_str() == Some(want.as_str())
                && parent.as_ref().is_none_or(|p| c.get("parent_id").and_then(Value::as_str) == Some(p.as_str()))
        });
        if let Some(c) = existing {
            return Ok(id_of(c));
        }
        let body = json!({"name": name, "type": 0, "parent_id": parent});
        let c = self.inner.rest.call(LightMethod::Post, route(), Some(&body)).await.map_err(|e| e.classify())?;
        Ok(id_of(&c))
    }

    /// Rename a channel; returns the name Discord stored (normalised).
    pub async fn rename_channel(&self, channel_id: &str, name: &str) -> Result<String, SendFailure> {
        let id = parse_id(channel_id)?;
        let c = self
            .inner
            .rest
            .call(LightMethod::Patch, Route::Channel { channel_id: sy::ChannelId::new(id) }, Some(&json!({"name": name})))
            .await
            .map_err(|e| e.classify())?;
        Ok(c.get("name").and_then(Value::as_str).unwrap_or("").to_string())
    }

    async fn post_message(&self, channel: u64, body: &Value) -> Result<String, SendFailure> {
        let m: sy::Message = self
            .inner
            .rest
            .call_as(LightMethod::Post, Route::ChannelMessages { channel_id: sy::ChannelId::new(channel) }, Some(body))
            .await
            .map_err(|e| e.classify())?;
        Ok(m.id.get().to_string())
    }
}

/// `reqwest::ClientBuilder` helper: a local fake is never reached through an environment proxy.
trait NoProxyLocal {
    fn no_proxy_for_local(self, base: Option<&str>) -> Self;
}

impl NoProxyLocal for reqwest::ClientBuilder {
    fn no_proxy_for_local(self, base: Option<&str>) -> Self {
        match base {
            Some(b) if b.contains("://127.") || b.contains("://localhost") || b.contains("://[::1]") => self.no_proxy(),
            _ => self,
        }
    }
}

fn parse_id(s: &str) -> Result<u64, SendFailure> {
    s.trim().parse::<u64>().ok().filter(|v| *v != 0).ok_or_else(|| SendFailure::Rejected(format!("not a Discord id: {s}")))
}

fn target_of(channel: u64) -> ChatTarget {
    ChatTarget::new("discord", channel.to_string(), 0)
}

fn clamp_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max - 1).chain(['…']).collect() }
}

/// `<interaction id>:<token>`.
fn split_callback(callback_id: &str) -> Result<(u64, &str), SendFailure> {
    let (id, token) = callback_id.split_once(':').ok_or_else(|| SendFailure::Rejected(format!("bad callback id {callback_id:?}")))?;
    Ok((parse_id(id)?, token))
}

impl Inner {
    fn me(&self) -> Option<(u64, String)> {
        self.me.lock().unwrap().clone()
    }

    /// First response to an interaction.
    async fn respond(&self, id: u64, token: &str, body: Value) -> Result<(), ApiFailure> {
        self.rest.call(LightMethod::Post, Route::InteractionResponse { interaction_id: sy::InteractionId::new(id), token }, Some(&body)).await.map(|_| ())
    }

    /// Acknowledge within the deadline; the answer follows later as a followup.
    async fn defer(&self, id: u64, token: &str) {
        match self.respond(id, token, json!({"type": 6})).await {
            Ok(()) => {
                self.deferred.lock().unwrap().insert(id);
            }
            Err(e) => tracing::warn!(status = e.status, code = e.code, "could not acknowledge an interaction: {}", e.message),
        }
    }

    fn convert_message(&self, m: &sy::Message) -> InboundMessage {
        let me = self.me();
        let mut text = m.content.clone();
        if let Some((id, name)) = &me {
            // The shared parser knows `@name`; Discord writes `<@id>` (or `<@!id>` for a nick).
            for tok in [format!("<@{id}>"), format!("<@!{id}>")] {
                text = text.replace(&tok, &format!("@{name}"));
            }
        }
        let referenced = m.referenced_message.as_deref();
        let reply_to = m.message_reference.as_ref().and_then(|r| r.message_id).map(|id| id.get().to_string());
        InboundMessage {
            target: target_of(m.channel_id.get()),
            message_id: m.id.get().to_string(),
            text,
            direct: m.guild_id.is_none(),
            from_bot: m.author.bot,
            edited: false,
            author_id: m.author.id.get().to_string(),
            author_name: m.author.global_name.clone().unwrap_or_else(|| m.author.name.clone()),
            chat_title: self.channel_names.lock().unwrap().get(&m.channel_id.get()).cloned().unwrap_or_default(),
            reply_to_message: reply_to,
            reply_to_bot: referenced.is_some_and(|r| me.as_ref().is_some_and(|(id, _)| r.author.id.get() == *id)),
            attachments: Vec::new(),
            files: Vec::new(),
        }
    }
}

struct Handler(Arc<Inner>);

fn user_name(u: &sy::User) -> String {
    u.global_name.clone().unwrap_or_else(|| u.name.clone())
}

#[serenity::async_trait]
impl sy::EventHandler for Handler {
    async fn ready(&self, _: sy::Context, r: sy::Ready) {
        *self.0.me.lock().unwrap() = Some((r.user.id.get(), r.user.name.clone()));
        *self.0.application_id.lock().unwrap() = Some(r.application.id.get());
    }

    async fn guild_create(&self, _: sy::Context, g: sy::Guild, _: Option<bool>) {
        let mut names = self.0.channel_names.lock().unwrap();
        for (id, c) in &g.channels {
            names.insert(id.get(), format!("{} #{}", g.name, c.name));
        }
    }

    async fn channel_delete(&self, _: sy::Context, c: sy::GuildChannel, _: Option<Vec<sy::Message>>) {
        let _ = self.0.tx.send(Inbound::Update(Update::Gone { target: target_of(c.id.get()) }));
    }

    async fn message(&self, _: sy::Context, m: sy::Message) {
        let _ = self.0.tx.send(Inbound::Update(Update::Message(self.0.convert_message(&m))));
    }

    async fn interaction_create(&self, _: sy::Context, i: sy::Interaction) {
        match i {
            sy::Interaction::Component(c) => {
                *self.0.application_id.lock().unwrap() = Some(c.application_id.get());
                let at = PlatformRef { target: target_of(c.channel_id.get()), message_id: c.message.id.get().to_string() };
                if let Some(event_id) = c.data.custom_id.strip_prefix(MODAL_PREFIX) {
                    // A modal must be the first response: open it here, within the deadline.
                    let modal = json!({"type": 9, "data": {
                        "custom_id": format!("{MODAL_PREFIX}{event_id}"), "title": "Reply",
                        "components": [{"type": 1, "components": [{
                            "type": 4, "custom_id": MODAL_FIELD, "label": "Your reply", "style": 2,
                            "min_length": 1, "max_length": 4000, "required": true}]}]}});
                    if let Err(e) = self.0.respond(c.id.get(), &c.token, modal).await {
                        tracing::warn!(status = e.status, code = e.code, "could not open the reply modal: {}", e.message);
                    }
                    return;
                }
                self.0.defer(c.id.get(), &c.token).await;
                let _ = self.0.tx.send(Inbound::Update(Update::Button {
                    at,
                    data: c.data.custom_id.clone(),
                    user_id: c.user.id.get().to_string(),
                    user_name: user_name(&c.user),
                    callback_id: format!("{}:{}", c.id.get(), c.token),
                }));
            }
            sy::Interaction::Modal(m) => {
                *self.0.application_id.lock().unwrap() = Some(m.application_id.get());
                self.0.defer(m.id.get(), &m.token).await;
                let Some(event_id) = m.data.custom_id.strip_prefix(MODAL_PREFIX) else { return };
                let text: String = m
                    .data
                    .components
                    .iter()
                    .flat_map(|row| row.components.iter())
                    .find_map(|c| match c {
                        sy::ActionRowComponent::InputText(t) if t.custom_id == MODAL_FIELD => t.value.clone(),
                        _ => None,
                    })
                    .unwrap_or_default();
                let message_id = m.message.as_ref().map(|msg| msg.id.get().to_string()).unwrap_or_default();
                let _ = self.0.tx.send(Inbound::Update(Update::FormReply {
                    at: PlatformRef { target: target_of(m.channel_id.get()), message_id },
                    event_id: event_id.to_string(),
                    text,
                    user_id: m.user.id.get().to_string(),
                    user_name: user_name(&m.user),
                    callback_id: format!("{}:{}", m.id.get(), m.token),
                }));
            }
            _ => {}
        }
    }
}

impl Platform for DiscordPlatform {
    type Piece = DcPiece;

    fn name(&self) -> &'static str {
        "discord"
    }

    fn profile(&self) -> Profile {
        Profile::DISCORD
    }

    fn verify(&self) -> BoxFuture<'_, Result<BotIdentity, SendFailure>> {
        Box::pin(async move {
            let me: sy::CurrentUser = self.inner.rest.call_as(LightMethod::Get, Route::UserMe, None).await.map_err(|e| e.classify())?;
            *self.inner.me.lock().unwrap() = Some((me.id.get(), me.name.clone()));
            Ok(BotIdentity { id: me.id.get().to_string(), username: me.name.clone() })
        })
    }

    fn render(&self, parts: &[Outbound]) -> Vec<DcPiece> {
        parts
            .iter()
            .map(|p| {
                let last = p.part.is_none_or(|k| k.index == k.total);
                DcPiece {
                    content: to_discord_markdown(p),
                    ack_event: p.ackable.then(|| p.event_id.clone()),
                    reply_event: (p.reply_required && last).then(|| p.event_id.clone()),
                }
            })
            .collect()
    }

    fn deliver<'a>(&'a self, target: &'a ChatTarget, piece: &'a DcPiece, opts: &'a DeliverOpts) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            let channel = parse_id(&target.chat_id)?;
            let mut body = json!({
                "content": piece.content,
                "components": piece.components(),
                // Agent text never pings anyone, whatever it contains.
                "allowed_mentions": {"parse": []},
            });
            if !opts.nonce.is_empty() {
                body["nonce"] = json!(opts.nonce);
                body["enforce_nonce"] = json!(true);
            }
            if let Some(r) = opts.reply_to_message.as_deref().and_then(|r| r.parse::<u64>().ok()) {
                // A deleted original must not make the message undeliverable.
                body["message_reference"] = json!({"message_id": r.to_string(), "fail_if_not_exists": false});
            }
            if opts.silent {
                body["flags"] = json!(FLAG_SILENT);
            }
            self.post_message(channel, &body).await
        })
    }

    fn notice<'a>(&'a self, target: &'a ChatTarget, text: &'a str, reply_to_message: Option<&'a str>) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            let channel = parse_id(&target.chat_id)?;
            let mut body = json!({"content": clamp_chars(text, MAX_CONTENT), "allowed_mentions": {"parse": []}});
            if let Some(r) = reply_to_message.and_then(|r| r.parse::<u64>().ok()) {
                body["message_reference"] = json!({"message_id": r.to_string(), "fail_if_not_exists": false});
            }
            self.post_message(channel, &body).await
        })
    }

    fn mark_acked<'a>(&'a self, at: &'a PlatformRef, by_name: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async move {
            let channel = sy::ChannelId::new(parse_id(&at.target.chat_id)?);
            let message = sy::MessageId::new(parse_id(&at.message_id)?);
            let route = || Route::ChannelMessage { channel_id: channel, message_id: message };
            let m = match self.inner.rest.call(LightMethod::Get, route(), None).await {
                Ok(m) => m,
                // The message is gone: nothing left to flip.
                Err(e) if e.status == 404 => return Ok(()),
                Err(e) => return Err(e.classify()),
            };
            let label = clamp_chars(&format!("✓ Acked by {}", if by_name.trim().is_empty() { "user" } else { by_name.trim() }), 80);
            let mut rows = m.get("components").cloned().unwrap_or(json!([]));
            let mut changed = false;
            for row in rows.as_array_mut().into_iter().flatten() {
                for b in row.get_mut("components").and_then(Value::as_array_mut).into_iter().flatten() {
                    if b.get("custom_id").and_then(Value::as_str).is_some_and(|c| c.starts_with("ack:")) {
                        *b = json!({"type": 2, "style": 2, "label": label, "custom_id": ACKED_DATA, "disabled": true});
                        changed = true;
                    }
                }
            }
            if !changed {
                return Ok(());
            }
            match self.inner.rest.call(LightMethod::Patch, route(), Some(&json!({"components": rows}))).await {
                Ok(_) => Ok(()),
                Err(e) if e.status == 404 => Ok(()),
                Err(e) => Err(e.classify()),
            }
        })
    }

    fn answer_button<'a>(&'a self, callback_id: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), SendFailure>> {
        Box::pin(async move {
            let (id, token) = split_callback(callback_id)?;
            let deferred = self.inner.deferred.lock().unwrap().contains(&id);
            if !deferred {
                // The handler could not acknowledge it: answer now (if still within 3 s).
                let body = if text.is_empty() {
                    json!({"type": 6})
                } else {
                    json!({"type": 4, "data": {"content": clamp_chars(text, MAX_CONTENT), "flags": FLAG_EPHEMERAL, "allowed_mentions": {"parse": []}}})
                };
                return self.inner.respond(id, token, body).await.map_err(|e| e.classify());
            }
            if text.is_empty() {
                return Ok(());
            }
            let app = self.inner.application_id.lock().unwrap().ok_or_else(|| SendFailure::Transient("application id unknown".into()))?;
            let body = json!({"content": clamp_chars(text, MAX_CONTENT), "flags": FLAG_EPHEMERAL, "allowed_mentions": {"parse": []}});
            self.inner
                .rest
                .call(LightMethod::Post, Route::WebhookFollowupMessages { application_id: sy::ApplicationId::new(app), token }, Some(&body))
                .await
                .map(|_| ())
                .map_err(|e| e.classify())
        })
    }

    /// The group's channel in `im.guild_id` (under `im.category`): the known one renamed to
    /// the group's title when it changed, else found by name or created. A known channel that
    /// is gone (404) is replaced. No `guild_id`: this group pairs channels by key only.
    fn group_channel<'a>(&'a self, group: &'a GroupHome) -> BoxFuture<'a, Result<Option<ChatTarget>, SendFailure>> {
        Box::pin(async move {
            let guild = match group.im.get("guild_id") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Ok(None),
            };
            let category = group.im.get("category").and_then(Value::as_str);
            if let Some(known) = &group.known {
                // Look before renaming: Discord allows only two renames per channel in ten
                // minutes, so an unchanged name is never written.
                let route = Route::Channel { channel_id: sy::ChannelId::new(parse_id(&known.chat_id)?) };
                match self.inner.rest.call(LightMethod::Get, route, None).await {
                    Ok(c) => {
                        if c.get("name").and_then(Value::as_str) != Some(normalize_channel_name(&group.title).as_str()) {
                            self.rename_channel(&known.chat_id, &group.title).await?;
                        }
                        return Ok(Some(known.clone()));
                    }
                    // Deleted meanwhile: find or make a new one below.
                    Err(e) if matches!(e.status, 403 | 404) => {}
                    Err(e) => return Err(e.classify()),
                }
            }
            let id = self.ensure_group_channel(&guild, category, &group.title).await?;
            Ok(Some(target_of(parse_id(&id)?)))
        })
    }

    fn next_updates(&self) -> BoxFuture<'_, Result<Vec<Update>, SendFailure>> {
        Box::pin(async move {
            if let Some(e) = self.gateway_error() {
                return Err(e.to_failure());
            }
            self.connect().await.map_err(|e| e.to_failure())?;
            let mut rx = self.rx.lock().await;
            let mut out = Vec::new();
            let first = match tokio::time::timeout(self.cfg.poll_wait, rx.recv()).await {
                Ok(Some(x)) => x,
                Ok(None) | Err(_) => return Ok(out),
            };
            // serenity runs each event handler call in its own task, so two events that arrive
            // back to back can reach this queue in either order. Wait a moment for stragglers,
            // then restore Discord's order by snowflake (ids grow with creation time): two
            // messages typed quickly must reach the ledger in the order they were sent.
            let mut next = Some(first);
            loop {
                while let Some(x) = next.take() {
                    match x {
                        Inbound::Update(u) => out.push(u),
                        Inbound::Fatal(e) if out.is_empty() => return Err(e.to_failure()),
                        // Hand over what arrived before the failure; the next call reports it.
                        Inbound::Fatal(_) => {
                            out.sort_by_key(order_key);
                            return Ok(out);
                        }
                    }
                    next = rx.try_recv().ok();
                }
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(x)) => next = Some(x),
                    Ok(None) | Err(_) => break,
                }
            }
            out.sort_by_key(order_key);
            Ok(out)
        })
    }
}
