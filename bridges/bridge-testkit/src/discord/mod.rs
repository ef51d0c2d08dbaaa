//! A faithful fake of Discord (REST API v10 + the Gateway) on `127.0.0.1`, for end-to-end tests
//! of a real bot (serenity, twilight or raw HTTP) without any network.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use bridge_testkit::discord::{FakeDiscord, Fault, routes};
//!
//! let dc = FakeDiscord::start();                  // own thread + tokio runtime
//! let guild = dc.guild("Team");                   // a guild with a #general text channel
//! let general = dc.channels(guild)[0].id;
//! let alice = dc.user("alice");                   // a human member
//!
//! // serenity: HttpBuilder::new(dc.token()).proxy(dc.api_base()).ratelimiter_disabled(true)
//! //           and `*client.ws_url.lock().await = dc.gateway_url()`.
//!
//! let msg = dc.user_says(general, &alice, "hello");         // MESSAGE_CREATE on the gateway
//! let bot_msgs = dc.wait_for_bot_messages(general, 1, Duration::from_secs(5));
//! let press = dc.press_button(general, bot_msgs[0].id, &alice, "ack:abc"); // INTERACTION_CREATE
//! let answer = dc.wait_for_interaction_response(press, Duration::from_secs(5));
//! assert!(answer.latency < Duration::from_secs(3));
//! dc.fail_next(routes::CREATE_MESSAGE, Fault::TooManyRequests { retry_after: 2.5, global: false }, 1);
//! dc.force_reconnect();                           // op 7: the client must RESUME
//! # let _ = msg;
//! ```
//!
//! # What is faithful (because bridges get it wrong)
//!
//! * **Auth**: every bot route needs `Authorization: Bot <token>`, else 401
//!   `{"message": "401: Unauthorized", "code": 0}`; the gateway closes with **4004** on a bad
//!   token in IDENTIFY or RESUME. Interaction callbacks and webhook followups are authorised by
//!   the token in the URL, like on Discord.
//! * **Errors** are Discord's JSON (`{"message","code"}` plus nested `errors` for 50035 Invalid
//!   Form Body): 10003 Unknown Channel, 10008 Unknown Message, 10062 Unknown interaction, 40060
//!   already acknowledged, 50005 cannot edit another user's message, 50006 empty message,
//!   content > 2000 chars, nonce > 25 chars, bad components (rows, ≤5 buttons, custom_id
//!   1..=100 and unique, labels), bad modals, unknown `message_reference`.
//! * **`nonce` + `enforce_nonce`**: a repeated nonce from the same author in the same channel
//!   within 5 minutes returns the original message and creates nothing.
//! * **`allowed_mentions`** decides who is pinged, computed like Discord:
//!   [`DMessage::mention_everyone`] / [`DMessage::mentions`] say who *would* have been pinged.
//! * **Interactions**: the first callback must arrive within **3 s** (else 404 10062) and only
//!   once (else 400 40060); types 4, 5, 6, 7 and 9 (modal) are implemented with their rules (no
//!   modal in answer to a modal submit); callbacks answer **204** with no body (serenity insists).
//!   Followups (`POST /webhooks/{app}/{token}`, `PATCH …/messages/@original`) work for 15 min
//!   after the first callback.
//! * **Rate-limit headers** on every answer (`X-RateLimit-Limit/Remaining/Reset/Reset-After/
//!   Bucket`); an injected 429 has Discord's body (`message`, `retry_after` in seconds with a
//!   fraction, `global`, `code`) and `Retry-After`, `X-RateLimit-Scope`, `X-RateLimit-Global`.
//! * **Gateway** (text frames; zlib is never used): HELLO with a 1 s heartbeat, HEARTBEAT → ACK,
//!   IDENTIFY → READY (`session_id`, `resume_gateway_url`) then GUILD_CREATE per guild; intents
//!   are honoured (GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES; without MESSAGE_CONTENT guild
//!   messages arrive with empty content unless they mention the bot), and asking for
//!   MESSAGE_CONTENT while [`FakeDiscord::set_message_content_intent`] is off closes with
//!   **4014**. Every session keeps its dispatches with sequence numbers, so a RESUME replays
//!   exactly what was missed while disconnected (then RESUMED); a RESUME of an unknown or
//!   invalidated session gets op 9 `false`. Test controls: [`FakeDiscord::force_reconnect`]
//!   (op 7), [`FakeDiscord::drop_connection`] (TCP dropped, no close frame),
//!   [`FakeDiscord::invalidate_session`] (op 9), [`FakeDiscord::close_gateway`] (any code).
//! * The bot's own messages come back as MESSAGE_CREATE (bridges must ignore them).
//!
//! # Simplified
//!
//! One bot per server; every user is a member of every guild with all permissions; no roles,
//! threads, DMs, reactions beyond `PUT …/@me`, embeds or attachments (multipart bodies get
//! 400); no real bucket accounting (only injected 429s); the channel-rename limit (2 per 10
//! min) is not enforced; heartbeats are not required by the server.

mod server;
mod state;
mod types;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

pub use state::normalize_channel_name;
pub use types::*;

use state::{GwCommand, State, modal_fields};

/// The token a fresh fake accepts.
pub const DEFAULT_TOKEN: &str = "fake-discord-bot-token-for-tests";
/// The bot's user id (and, as on Discord for new apps, its application id).
pub const DEFAULT_BOT_ID: Snowflake = 1_000_000_000_000_000_001;

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Wakes gateway connections (new dispatches or commands).
    wake: broadcast::Sender<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }
    /// A change other connections may care about: wakes `wait_for` callers and the gateway.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = self.record(f);
        let _ = self.wake.send(());
        r
    }
    /// A change only the caller's connection acts on (it re-reads the state right after).
    pub(crate) fn record<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = {
            let mut s = self.lock();
            let r = f(&mut s);
            s.version += 1;
            r
        };
        self.changed.notify_all();
        r
    }
}

/// Options for [`FakeDiscord::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    pub token: String,
    pub bot_id: Snowflake,
    pub bot_name: String,
    /// Is the MESSAGE_CONTENT privileged intent enabled for the app (Developer Portal)?
    pub message_content_intent: bool,
    pub heartbeat_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: DEFAULT_TOKEN.to_string(),
            bot_id: DEFAULT_BOT_ID,
            bot_name: "cccc-test-bot".to_string(),
            message_content_intent: true,
            heartbeat_interval_ms: 1000,
        }
    }
}

/// A running fake Discord (REST on one port, Gateway on another). Dropping it stops both.
///
/// All methods are synchronous and usable from plain `#[test]` functions; observation methods
/// return snapshots and the `wait_*` helpers block the calling thread.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    rest_addr: SocketAddr,
    gateway_addr: SocketAddr,
    control: mpsc::UnboundedSender<server::Control>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDiscord {
    /// Start on `127.0.0.1:<free ports>` with [`DEFAULT_TOKEN`].
    pub fn start() -> FakeDiscord {
        FakeDiscord::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> FakeDiscord {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let (rest, gw) = (bind(), bind());
        let (rest_addr, gateway_addr) = (rest.local_addr().unwrap(), gw.local_addr().unwrap());
        rest.set_nonblocking(true).unwrap();
        gw.set_nonblocking(true).unwrap();
        let bot = DUser { id: opts.bot_id, name: opts.bot_name.clone(), bot: true };
        let mut st = State::new(opts.token.clone(), bot, opts.bot_id, format!("ws://{gateway_addr}"));
        st.message_content_enabled = opts.message_content_intent;
        st.heartbeat_interval_ms = opts.heartbeat_interval_ms;
        let (wake, _) = broadcast::channel(64);
        let shared = Arc::new(Shared { state: Mutex::new(st), changed: Condvar::new(), wake });
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let shared2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-discord".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
                rt.block_on(async move {
                    let rest = tokio::net::TcpListener::from_std(rest).expect("rest listener");
                    let gw = tokio::net::TcpListener::from_std(gw).expect("gateway listener");
                    server::serve(shared2, rest, gw, ctl_rx).await;
                });
                rt.shutdown_background();
            })
            .expect("spawn fake-discord thread");
        FakeDiscord { shared, rest_addr, gateway_addr, control: ctl_tx, thread: Some(thread) }
    }

    // ----- identity --------------------------------------------------------------------------

    /// The base to give serenity's `HttpBuilder::proxy` (`http://127.0.0.1:PORT`): requests go
    /// to `{api_base}/api/v10/...`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.rest_addr)
    }
    /// The Gateway URL (`ws://127.0.0.1:PORT`), also returned by `GET /gateway(/bot)`.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.gateway_addr)
    }
    /// The token the fake accepts (without the `Bot ` prefix).
    pub fn token(&self) -> String {
        self.shared.with(|s| s.token.clone())
    }
    /// Accept only this token from now on (e.g. simulate a reset token).
    pub fn set_token(&self, token: &str) {
        self.shared.mutate(|s| s.token = token.to_string());
    }
    pub fn bot_id(&self) -> Snowflake {
        self.shared.with(|s| s.bot.id)
    }
    pub fn bot_name(&self) -> String {
        self.shared.with(|s| s.bot.name.clone())
    }
    pub fn application_id(&self) -> Snowflake {
        self.shared.with(|s| s.application_id)
    }
    /// Turn the MESSAGE_CONTENT privileged intent on or off (affects the next IDENTIFY).
    pub fn set_message_content_intent(&self, enabled: bool) {
        self.shared.mutate(|s| s.message_content_enabled = enabled);
    }

    // ----- world -----------------------------------------------------------------------------

    /// A guild the bot is in, with one text channel `general`; GUILD_CREATE is dispatched.
    pub fn guild(&self, name: &str) -> Snowflake {
        self.shared.mutate(|s| {
            let id = s.next_id();
            s.guilds.insert(id, state::Guild { id, name: name.to_string(), owner_id: s.bot.id });
            let _ = s.create_channel(id, &json!({"name": "general", "type": 0}));
            let g = s.guild_json(&s.guilds[&id]);
            s.dispatch("GUILD_CREATE", g, state::INTENT_GUILDS);
            id
        })
    }

    /// A channel created by a human admin (`kind` 0 text, 4 category); returns its id.
    pub fn create_channel(&self, guild: Snowflake, name: &str, kind: u8, parent: Option<Snowflake>) -> Snowflake {
        self.shared.mutate(|s| {
            let v = s.create_channel(guild, &json!({"name": name, "type": kind, "parent_id": parent.map(|p| p.to_string())})).expect("create channel");
            v["id"].as_str().unwrap().parse().unwrap()
        })
    }

    /// A human user (member of every guild).
    pub fn user(&self, name: &str) -> DUser {
        self.shared.mutate(|s| {
            let u = DUser { id: s.next_id(), name: name.to_string(), bot: false };
            s.users.insert(u.id, u.clone());
            u
        })
    }

    /// Another bot (its messages must be ignored by bridges).
    pub fn other_bot(&self, name: &str) -> DUser {
        self.shared.mutate(|s| {
            let u = DUser { id: s.next_id(), name: name.to_string(), bot: true };
            s.users.insert(u.id, u.clone());
            u
        })
    }

    /// A human admin deletes a channel (CHANNEL_DELETE; later sends get 404 10003).
    pub fn delete_channel(&self, channel: Snowflake) {
        self.shared.mutate(|s| s.remove_channel(channel)).expect("unknown channel");
    }

    // ----- acting as humans ------------------------------------------------------------------

    fn post_as(&self, channel: Snowflake, user: &DUser, body: Value) -> Snowflake {
        self.shared.mutate(|s| {
            let v = s.create_message(channel, user, &body, None).unwrap_or_else(|e| panic!("user message refused: {:?}", e.body()));
            v["id"].as_str().unwrap().parse().unwrap()
        })
    }

    /// `user` posts `text` in `channel`; returns the message id.
    pub fn user_says(&self, channel: Snowflake, user: &DUser, text: &str) -> Snowflake {
        self.post_as(channel, user, json!({"content": text}))
    }

    /// `user` replies (Discord "reply", with `message_reference`) to `to`.
    pub fn user_replies(&self, channel: Snowflake, user: &DUser, text: &str, to: Snowflake) -> Snowflake {
        self.post_as(channel, user, json!({"content": text, "message_reference": {"message_id": to.to_string()}}))
    }

    /// `user` edits their message (MESSAGE_UPDATE).
    pub fn user_edits(&self, message: Snowflake, text: &str) {
        self.shared.mutate(|s| {
            let m = s.messages.iter_mut().find(|m| m.id == message).expect("unknown message");
            m.edits.push((m.content.clone(), m.components.clone()));
            m.content = text.to_string();
            let m = m.clone();
            s.dispatch_message("MESSAGE_UPDATE", &m);
        });
    }

    /// `user` presses the button `custom_id` of `message`; returns the interaction id. Panics
    /// if there is no such enabled button (a human cannot press what is not there).
    pub fn press_button(&self, channel: Snowflake, message: Snowflake, user: &DUser, custom_id: &str) -> Snowflake {
        self.shared.mutate(|s| {
            let m = s.find_message(message).filter(|m| m.channel_id == channel).unwrap_or_else(|| panic!("no message {message} in channel {channel}"));
            let b = m.buttons().into_iter().find(|b| b.custom_id == custom_id);
            match b {
                Some(b) if !b.disabled => {}
                Some(_) => panic!("button {custom_id:?} is disabled"),
                None => panic!("message {message} has no button {custom_id:?}; buttons: {:?}", m.buttons()),
            }
            s.new_interaction(3, channel, Some(message), user.id, custom_id, None)
        })
    }

    /// The text inputs of the modal the bot opened in answer to interaction `opened_by`.
    pub fn modal(&self, opened_by: Snowflake) -> Option<(String, String, Vec<ModalField>)> {
        self.shared.with(|s| {
            let r = s.interactions.get(&opened_by)?.responses.iter().find(|r| r.kind == 9)?.clone();
            let id = r.data.get("custom_id").and_then(Value::as_str).unwrap_or("").to_string();
            let title = r.data.get("title").and_then(Value::as_str).unwrap_or("").to_string();
            Some((id, title, modal_fields(&r.data)))
        })
    }

    /// `user` fills in and submits the modal opened in answer to `opened_by`: `values` are
    /// `(text input custom_id, value)`. Returns the MODAL_SUBMIT interaction id. Panics if no
    /// modal was opened or a field is unknown.
    pub fn submit_modal(&self, opened_by: Snowflake, user: &DUser, values: &[(&str, &str)]) -> Snowflake {
        let (custom_id, _, fields) = self.modal(opened_by).unwrap_or_else(|| panic!("interaction {opened_by} did not open a modal"));
        for (k, _) in values {
            assert!(fields.iter().any(|f| f.custom_id == *k), "modal has no field {k:?}; fields: {fields:?}");
        }
        let rows: Vec<Value> = fields
            .iter()
            .map(|f| {
                let v = values.iter().find(|(k, _)| *k == f.custom_id).map(|(_, v)| *v).unwrap_or("");
                json!({"type": 1, "components": [{"type": 4, "custom_id": f.custom_id, "value": v}]})
            })
            .collect();
        self.shared.mutate(|s| {
            let i = &s.interactions[&opened_by];
            let (channel, message) = (i.channel_id, i.message_id);
            s.new_interaction(5, channel, message, user.id, &custom_id, Some(json!({"custom_id": custom_id, "components": rows})))
        })
    }

    // ----- observing -------------------------------------------------------------------------

    /// Every message in `channel` (humans' and the bot's, ephemeral ones included), oldest first.
    pub fn messages(&self, channel: Snowflake) -> Vec<DMessage> {
        self.shared.with(|s| s.messages.iter().filter(|m| m.channel_id == channel).cloned().collect())
    }
    /// The bot's messages in `channel` (interaction responses and followups included).
    pub fn bot_messages(&self, channel: Snowflake) -> Vec<DMessage> {
        let bot = self.bot_id();
        self.messages(channel).into_iter().filter(|m| m.author_id == bot).collect()
    }
    pub fn message(&self, id: Snowflake) -> Option<DMessage> {
        self.shared.with(|s| s.find_message(id).cloned())
    }
    /// The guild's channels in creation order.
    pub fn channels(&self, guild: Snowflake) -> Vec<DChannel> {
        self.shared.with(|s| s.channels.values().filter(|c| c.guild_id == guild).cloned().collect())
    }
    /// Responses to interaction `id`, in order.
    pub fn interaction_responses(&self, id: Snowflake) -> Vec<InteractionResponse> {
        self.shared.with(|s| s.interactions.get(&id).map(|i| i.responses.clone()).unwrap_or_default())
    }
    /// Every REST request so far.
    pub fn all_requests(&self) -> Vec<RequestRecord> {
        self.shared.with(|s| s.requests.clone())
    }
    /// Requests whose route key (see [`routes`]) equals `route`.
    pub fn requests(&self, route: &str) -> Vec<RequestRecord> {
        self.shared.with(|s| s.requests.iter().filter(|r| r.route == route).cloned().collect())
    }
    pub fn gateway_log(&self) -> Vec<GatewayRecord> {
        self.shared.with(|s| s.gateway_log.clone())
    }
    /// Number of IDENTIFYs accepted so far.
    pub fn identify_count(&self) -> usize {
        self.gateway_log().iter().filter(|r| matches!(r, GatewayRecord::Identify { .. })).count()
    }
    /// Accepted RESUMEs so far.
    pub fn resume_count(&self) -> usize {
        self.gateway_log().iter().filter(|r| matches!(r, GatewayRecord::Resume { accepted: true, .. })).count()
    }
    /// Connections currently open.
    pub fn live_connections(&self) -> usize {
        self.shared.with(|s| s.live_conns.len())
    }

    /// Wait until `pred` holds (re-evaluated after every change); false on timeout.
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&FakeDiscord) -> bool) -> bool {
        crate::wait::until(&self.shared.state, &self.shared.changed, |s| s.version, timeout, || pred(self))
    }

    /// Wait for at least `n` bot messages in `channel` (panics with what exists on timeout).
    pub fn wait_for_bot_messages(&self, channel: Snowflake, n: usize, timeout: Duration) -> Vec<DMessage> {
        if !self.wait_for(timeout, |d| d.bot_messages(channel).len() >= n) {
            panic!("timed out waiting for {n} bot messages in {channel}; have {:#?}\nrequests: {:#?}", self.bot_messages(channel), self.all_requests());
        }
        self.bot_messages(channel)
    }

    /// Wait for the first response to interaction `id`.
    pub fn wait_for_interaction_response(&self, id: Snowflake, timeout: Duration) -> InteractionResponse {
        if !self.wait_for(timeout, |d| !d.interaction_responses(id).is_empty()) {
            panic!("timed out waiting for a response to interaction {id}; requests: {:#?}", self.all_requests());
        }
        self.interaction_responses(id)[0].clone()
    }

    /// Wait until `n` IDENTIFYs were accepted.
    pub fn wait_for_identify(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |d| d.identify_count() >= n)
    }

    /// Wait until `n` RESUMEs were accepted.
    pub fn wait_for_resume(&self, n: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |d| d.resume_count() >= n)
    }

    // ----- faults ----------------------------------------------------------------------------

    /// The next `times` requests on `route` (see [`routes`]) get `fault` and are not performed.
    pub fn fail_next(&self, route: &str, fault: Fault, times: usize) {
        self.shared.mutate(|s| s.faults.push((route.to_string(), fault, times)));
    }

    fn command_all(&self, c: GwCommand) {
        self.shared.mutate(|s| {
            let conns: Vec<u64> = s.live_conns.iter().copied().collect();
            for conn in conns {
                s.gw_commands.push((Some(conn), c.clone()));
            }
        });
    }
    /// Send op 7 RECONNECT on every open connection (the client must reconnect and RESUME).
    pub fn force_reconnect(&self) {
        self.command_all(GwCommand::Reconnect);
    }
    /// Drop every gateway TCP connection without a close frame (network loss).
    pub fn drop_connection(&self) {
        self.command_all(GwCommand::Drop);
    }
    /// Send op 9 INVALID_SESSION; `resumable: false` also forgets the session.
    pub fn invalidate_session(&self, resumable: bool) {
        self.command_all(GwCommand::InvalidSession { resumable });
    }
    /// Close every gateway connection with `code` (4004 auth failed, 4014 disallowed intents…).
    pub fn close_gateway(&self, code: u16) {
        self.command_all(GwCommand::Close(code));
    }
    /// Dispatch an arbitrary event to every live session (e.g. `GUILD_DELETE`).
    pub fn dispatch_raw(&self, event: &str, d: Value) {
        self.shared.mutate(|s| s.dispatch(event, d, 0));
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        let _ = self.control.send(server::Control::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
