//! `cccc mcp`: the stdio MCP server that agent runtimes (Claude Code, Codex, …) launch so an
//! actor can talk to its working group.
//!
//! # Shape
//!
//! * Identity comes from the environment the daemon gives PTY actors ([`Identity::from_env`]):
//!   `CCCC_GROUP_ID` and `CCCC_ACTOR_ID` (the home is resolved by the caller, normally from
//!   `CCCC_HOME`). A missing variable does not stop the server: every tool that needs it answers
//!   with a tool error naming it, so the agent (and its human) can see what is wrong.
//! * Every tool is one or a few IPC v1 calls to the daemon with `by = <actor id>`; the daemon
//!   enforces permissions. A daemon error reaches the agent as an MCP tool error
//!   (`isError: true`) whose text starts with the daemon's `code: message`; an unreachable
//!   daemon is a `daemon_unavailable` tool error. Nothing a tool call meets crashes the server.
//! * The IPC client is blocking, so calls run on tokio's blocking pool.
//!
//! Tool names are the reference's (`cccc_message_reply`, `cccc_inbox_list`, …): the delivery
//! text the daemon injects into agent terminals names them.

mod render;

use cccc_core::home::Home;
use cccc_proto::ErrorBody;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RoleServer;
use rmcp::transport::IntoTransport;
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming the group the actor belongs to.
pub const ENV_GROUP_ID: &str = "CCCC_GROUP_ID";
/// Environment variable naming the actor this server speaks for.
pub const ENV_ACTOR_ID: &str = "CCCC_ACTOR_ID";
/// Environment variable naming the CCCC home (resolved by the caller into a [`Home`]).
pub const ENV_HOME: &str = "CCCC_HOME";

/// Who this server speaks for, and which daemon it talks to.
#[derive(Clone, Debug)]
pub struct Identity {
    pub home: Home,
    /// `CCCC_GROUP_ID`; `None` when unset or blank.
    pub group_id: Option<String>,
    /// `CCCC_ACTOR_ID`; `None` when unset or blank.
    pub actor_id: Option<String>,
    /// Whether `CCCC_HOME` was set (only used to make "daemon unavailable" errors helpful).
    pub home_from_env: bool,
}

impl Identity {
    /// An explicit identity (tests, embedding).
    pub fn new(home: Home, group_id: impl Into<String>, actor_id: impl Into<String>) -> Identity {
        Identity { home, group_id: non_blank(Some(group_id.into())), actor_id: non_blank(Some(actor_id.into())), home_from_env: true }
    }

    /// Identity from `CCCC_GROUP_ID` / `CCCC_ACTOR_ID`; `home` is the already resolved home.
    pub fn from_env(home: Home) -> Identity {
        let var = |k: &str| non_blank(std::env::var(k).ok());
        Identity { home, group_id: var(ENV_GROUP_ID), actor_id: var(ENV_ACTOR_ID), home_from_env: var(ENV_HOME).is_some() }
    }

    /// `(group_id, actor_id)`, or a `missing_identity` error naming every missing variable.
    fn require(&self) -> Result<(&str, &str), ErrorBody> {
        let mut missing = Vec::new();
        if self.group_id.is_none() {
            missing.push(ENV_GROUP_ID);
        }
        if self.actor_id.is_none() {
            missing.push(ENV_ACTOR_ID);
        }
        match (&self.group_id, &self.actor_id) {
            (Some(g), Some(a)) => Ok((g, a)),
            _ => Err(ErrorBody::new(
                "missing_identity",
                format!(
                    "environment variable {} not set: this MCP server does not know which CCCC group/actor it speaks for. \
                     The CCCC daemon sets CCCC_HOME, CCCC_GROUP_ID and CCCC_ACTOR_ID when it starts an actor; \
                     run the agent through `cccc` (actor start) or export them before launching `cccc mcp`.",
                    missing.join(" and ")
                ),
            )
            .with_details(json!({"missing": missing}))),
        }
    }
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

// ---- tool parameters ----------------------------------------------------------------------------

// Schemas are kept flat for the widest client compatibility: optional fields are plain typed
// properties with a default (absent from `required`, never nullable), enums are inline string
// enums.

/// Message priority: "normal" or "attention" (IMPORTANT: recipients must acknowledge it).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Priority {
    #[default]
    Normal,
    Attention,
}

impl Priority {
    fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Attention => "attention",
        }
    }
}

/// Which inbox entries to list: "all", "chat" (messages) or "notify" (system notifications).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum KindFilter {
    #[default]
    All,
    Chat,
    Notify,
}

impl KindFilter {
    fn as_str(self) -> &'static str {
        match self {
            KindFilter::All => "all",
            KindFilter::Chat => "chat",
            KindFilter::Notify => "notify",
        }
    }
}

/// `to` as a list; a single string (agents often send one recipient bare) and null are
/// accepted too.
fn de_recipients<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// `null` for an optional scalar means "absent".
fn de_or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn default_limit() -> u32 {
    20
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendParams {
    /// The message body (plain text; markdown is fine). Be concise and concrete.
    pub text: String,
    /// Recipients: actor ids (e.g. "peer-a"), "user" (the human), or the selectors "@all",
    /// "@peers", "@foreman". Omit (or []) to use the group default (normally the foreman).
    #[serde(default, deserialize_with = "de_recipients")]
    #[schemars(with = "Vec<String>")]
    pub to: Vec<String>,
    /// "normal" (default) or "attention" (IMPORTANT: each recipient must acknowledge it).
    #[serde(default, deserialize_with = "de_or_default")]
    pub priority: Priority,
    /// true when every recipient must answer with cccc_message_reply.
    #[serde(default, deserialize_with = "de_or_default")]
    pub reply_required: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplyParams {
    /// The event_id of the message you are answering (from cccc_inbox_list or the delivery
    /// header "event_id=..."). A unique prefix works.
    #[serde(alias = "reply_to")]
    pub event_id: String,
    /// The reply body (plain text; markdown is fine).
    pub text: String,
    /// Recipients; omit to answer the original sender (usual case). Same tokens as
    /// cccc_message_send: actor ids, "user", "@all", "@peers", "@foreman".
    #[serde(default, deserialize_with = "de_recipients")]
    #[schemars(with = "Vec<String>")]
    pub to: Vec<String>,
    /// "normal" (default) or "attention".
    #[serde(default, deserialize_with = "de_or_default")]
    pub priority: Priority,
    /// true when the recipients must in turn reply to this reply.
    #[serde(default, deserialize_with = "de_or_default")]
    pub reply_required: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InboxListParams {
    /// At most this many unread entries, oldest first (1-200).
    #[serde(default = "default_limit", deserialize_with = "de_limit")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: u32,
    /// "all" (default), "chat" (messages only) or "notify" (system notifications only).
    #[serde(default, deserialize_with = "de_or_default")]
    pub kind_filter: KindFilter,
}

fn de_limit<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.unwrap_or_else(default_limit))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MarkReadParams {
    /// Mark everything up to and including this event as read (cumulative). Omit to mark your
    /// whole inbox read. Marking an IMPORTANT (attention) message read yourself also
    /// acknowledges it.
    #[serde(default, deserialize_with = "de_or_default")]
    pub event_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AckParams {
    /// The event_id of the IMPORTANT (priority attention) message to acknowledge.
    pub event_id: String,
}

// ---- the server ---------------------------------------------------------------------------------

/// The MCP server handler: one per connection.
#[derive(Clone)]
pub struct CcccMcp {
    identity: Arc<Identity>,
    ipc_timeout: Duration,
    tool_router: ToolRouter<CcccMcp>,
}

/// A failed tool call: rendered as an MCP tool error.
type ToolResult = Result<CallToolResult, ErrorData>;

impl CcccMcp {
    pub fn new(identity: Identity) -> CcccMcp {
        CcccMcp { identity: Arc::new(identity), ipc_timeout: Duration::from_secs(60), tool_router: Self::tool_router() }
    }

    /// One IPC call on the blocking pool.
    async fn call(&self, op: &'static str, args: Value) -> Result<Value, ErrorBody> {
        let client = cccc_ipc::Client::for_home(self.identity.home.root()).with_timeout(self.ipc_timeout);
        let res = tokio::task::spawn_blocking(move || client.call(op, args).map_err(|e| e.to_body(op)))
            .await
            .unwrap_or_else(|e| Err(ErrorBody::new("internal_error", format!("IPC task failed: {e}"))));
        res.map_err(|mut body| {
            if body.code == "daemon_unavailable" {
                body.message = format!(
                    "{} — the CCCC daemon for home {} is not reachable{}. Is it running? (`cccc daemon start`)",
                    body.message,
                    self.identity.home.root().display(),
                    if self.identity.home_from_env { "" } else { " (CCCC_HOME is not set; using the default home)" },
                );
            }
            body
        })
    }

    fn fail(body: ErrorBody) -> ToolResult {
        Ok(tool_error(&body))
    }
}

/// An MCP tool error carrying the daemon's code and message (and details when present).
pub fn tool_error(body: &ErrorBody) -> CallToolResult {
    let mut text = format!("{}: {}", body.code, body.message);
    if body.details.as_object().is_some_and(|m| !m.is_empty()) {
        text.push_str(&format!("\ndetails: {}", body.details));
    }
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn ok_text(text: String) -> ToolResult {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
}

/// Put `to`/`priority`/`reply_required` into `args` (an empty `to` is left to the daemon's
/// defaults: the group's default_send_to for `send`, the original sender for `reply`).
fn message_options(args: &mut Map<String, Value>, to: Vec<String>, priority: Priority, reply_required: bool) {
    let to: Vec<String> = to.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if !to.is_empty() {
        args.insert("to".into(), json!(to));
    }
    args.insert("priority".into(), json!(priority.as_str()));
    args.insert("reply_required".into(), json!(reply_required));
}

macro_rules! try_tool {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(body) => return CcccMcp::fail(body),
        }
    };
}

#[tool_router]
impl CcccMcp {
    #[tool(
        name = "cccc_message_send",
        description = "Send a NEW message to your CCCC working group (your terminal output is not delivered to anyone; only messages are). \
                       To answer a message use cccc_message_reply instead. `to` takes actor ids, \"user\" (the human), \"@foreman\", \"@peers\" or \"@all\"; \
                       omitted = the group default (the foreman). Use priority \"attention\" only when recipients must acknowledge, and \
                       reply_required only when you need an answer. Avoid routine @all.",
        annotations(title = "Send message", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn cccc_message_send(&self, Parameters(p): Parameters<SendParams>) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let mut args = Map::new();
        args.insert("group_id".into(), json!(gid));
        args.insert("by".into(), json!(me));
        args.insert("text".into(), json!(p.text));
        message_options(&mut args, p.to, p.priority, p.reply_required);
        let r = try_tool!(self.call("send", Value::Object(args)).await);
        ok_text(render::sent("Message sent", &r))
    }

    #[tool(
        name = "cccc_message_reply",
        description = "Reply to a message by its event_id. Recipients default to the original sender. This is the ONLY way to close a \
                       REPLY REQUIRED ask, and replying also acknowledges an IMPORTANT (attention) message. The reply is threaded \
                       (reply_to = event_id) so the sender sees what you answered.",
        annotations(title = "Reply to message", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn cccc_message_reply(&self, Parameters(p): Parameters<ReplyParams>) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let mut args = Map::new();
        args.insert("group_id".into(), json!(gid));
        args.insert("by".into(), json!(me));
        args.insert("reply_to".into(), json!(p.event_id.trim()));
        args.insert("text".into(), json!(p.text));
        message_options(&mut args, p.to, p.priority, p.reply_required);
        let r = try_tool!(self.call("reply", Value::Object(args)).await);
        ok_text(render::sent("Reply sent", &r))
    }

    #[tool(
        name = "cccc_inbox_list",
        description = "List YOUR unread messages and system notifications, oldest first, with event_id, time, sender → recipients, \
                       IMPORTANT / REPLY REQUIRED markers and text. Listing does not mark anything read: after handling them call \
                       cccc_inbox_mark_read(event_id=<last handled id>).",
        annotations(title = "List my inbox", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_inbox_list(&self, Parameters(p): Parameters<InboxListParams>) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let limit = p.limit.clamp(1, 200);
        let filter = p.kind_filter;
        let args = json!({"group_id": gid, "actor_id": me, "by": me, "limit": limit, "kind_filter": filter.as_str()});
        let r = try_tool!(self.call("inbox_list", args).await);
        let text = render::inbox(me, &r, limit as usize, filter.as_str());
        let raw = serde_json::to_string(&r).unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(text), ContentBlock::text(format!("raw inbox_list result:\n{raw}"))]))
    }

    #[tool(
        name = "cccc_inbox_mark_read",
        description = "Mark your inbox read up to and including event_id (cumulative: everything before it is read too). Without \
                       event_id, mark everything currently unread as read. Marking an IMPORTANT (attention) message read yourself \
                       also acknowledges it. It does NOT close a REPLY REQUIRED ask: use cccc_message_reply for that.",
        annotations(title = "Mark inbox read", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_inbox_mark_read(&self, Parameters(p): Parameters<MarkReadParams>) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        match non_blank(Some(p.event_id)) {
            Some(id) => {
                let r = try_tool!(self.call("inbox_mark_read", json!({"group_id": gid, "actor_id": me, "by": me, "event_id": id})).await);
                ok_text(render::marked(&id, &r))
            }
            None => {
                let r = try_tool!(self.call("inbox_mark_all_read", json!({"group_id": gid, "actor_id": me, "by": me, "kind_filter": "all"})).await);
                ok_text(render::marked_all(&r))
            }
        }
    }

    #[tool(
        name = "cccc_ack",
        description = "Acknowledge an IMPORTANT (priority attention) message addressed to you without replying. Idempotent: acking \
                       twice reports it was already acknowledged. (Replying with cccc_message_reply or marking it read with \
                       cccc_inbox_mark_read also acknowledges.)",
        annotations(title = "Acknowledge message", read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_ack(&self, Parameters(p): Parameters<AckParams>) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let id = p.event_id.trim().to_string();
        let r = try_tool!(self.call("chat_ack", json!({"group_id": gid, "actor_id": me, "by": me, "event_id": id})).await);
        ok_text(render::acked(&id, &r))
    }

    #[tool(
        name = "cccc_group_status",
        description = "Show your working group: title, state, project directory, every actor with role (foreman/peer), runtime and \
                       running state, unread counts, the obligations YOU owe (asks to reply to / messages to acknowledge) and the \
                       ones others still owe on your messages.",
        annotations(title = "Group status", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_group_status(&self) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let snap = try_tool!(self.snapshot(gid).await);
        ok_text(render::status(me, &snap))
    }

    #[tool(
        name = "cccc_bootstrap",
        description = "Call this FIRST in a session: who you are (group, your actor id and role, the foreman), how many unread \
                       messages you have, what you owe (REPLY REQUIRED asks, IMPORTANT messages to acknowledge), and how to work \
                       with the CCCC tools.",
        annotations(title = "Bootstrap", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_bootstrap(&self) -> ToolResult {
        let (gid, me) = try_tool!(self.identity.require());
        let snap = try_tool!(self.snapshot(gid).await);
        ok_text(render::bootstrap(me, &snap))
    }

    #[tool(
        name = "cccc_help",
        description = "How to use the CCCC tools: messaging, replies, acknowledgements, inbox and etiquette.",
        annotations(title = "Help", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn cccc_help(&self) -> ToolResult {
        let mut text = render::HELP.to_string();
        match self.identity.require() {
            Ok((g, a)) => text.push_str(&format!("\n\nYou are `{a}` in group `{g}`.")),
            Err(e) => text.push_str(&format!("\n\nWARNING: {}", e.message)),
        }
        ok_text(text)
    }
}

/// What `cccc_group_status` and `cccc_bootstrap` show.
pub(crate) struct Snapshot {
    pub group_id: String,
    pub group: Value,
    pub actors: Vec<Value>,
    /// `Ok(all open obligations of the group)` or why they could not be read.
    pub obligations: Result<Vec<Value>, ErrorBody>,
}

impl CcccMcp {
    async fn snapshot(&self, gid: &str) -> Result<Snapshot, ErrorBody> {
        let (group, actors, obligations) = tokio::join!(
            self.call("group_show", json!({"group_id": gid})),
            self.call("actor_list", json!({"group_id": gid, "include_unread": true})),
            self.call("obligations", json!({"group_id": gid})),
        );
        let group = group?.get("group").cloned().unwrap_or(Value::Null);
        let actors = actors?.get("actors").and_then(Value::as_array).cloned().unwrap_or_default();
        let obligations = obligations.map(|r| r.get("obligations").and_then(Value::as_array).cloned().unwrap_or_default());
        Ok(Snapshot { group_id: gid.to_string(), group, actors, obligations })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CcccMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("cccc", env!("CARGO_PKG_VERSION")))
            .with_instructions(render::INSTRUCTIONS)
    }
}

/// Serve MCP for `identity` on `transport` until the peer disconnects.
pub async fn serve<T, E, A>(identity: Identity, transport: T) -> anyhow::Result<()>
where
    T: IntoTransport<RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let running = match CcccMcp::new(identity).serve(transport).await {
        Ok(r) => r,
        // The client went away before initializing: nothing to serve, not an error.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    running.waiting().await?;
    Ok(())
}

/// `cccc mcp`: serve MCP on stdin/stdout until EOF, with identity from the environment.
/// Builds its own tokio runtime; nothing but JSON-RPC is written to stdout.
pub fn run_stdio(home: Home) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("cccc-mcp").build()?;
    let res = rt.block_on(serve(Identity::from_env(home), rmcp::transport::stdio()));
    // A pending stdin read cannot be cancelled; do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(200));
    res
}
