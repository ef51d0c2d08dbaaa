//! The command line: every command, flag and its help text.
//!
//! Flags follow the reference CLI (CCCC 0.4.32) so scripts and runbooks written for it keep
//! working; `ack`, `obligations` and `--json` on every command are our additions.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Drive CCCC working groups from the command line: groups, actors, messages, inbox.
///
/// Without a subcommand, runs the daemon in the foreground (logs on stderr; set the level with
/// CCCC_LOG, e.g. CCCC_LOG=debug). CCCC_HOME selects the home directory (default ~/.cccc).
#[derive(Parser, Debug)]
#[command(name = "cccc", version)]
pub struct Cli {
    /// Print the daemon's JSON response envelope (2-space indent) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start, stop or check the background daemon.
    Daemon {
        #[command(subcommand)]
        action: DaemonCmd,
    },
    /// Check the environment: version, CCCC_HOME, daemon, agent runtimes on PATH.
    ///
    /// Never starts the daemon.
    Doctor,
    /// Summary at a glance: daemon, groups, actors and open obligations.
    ///
    /// Never starts the daemon; without it, groups and actors are read from disk.
    Status,
    /// Print the version and the CCCC version this build is compatible with.
    Version,
    /// List working groups (`*` marks the active one).
    Groups,
    /// Create, inspect and control working groups.
    Group {
        #[command(subcommand)]
        action: GroupCmd,
    },
    /// Attach a project directory to a group and make that group active.
    ///
    /// Without --group, reuses the group already bound to the directory or creates one.
    Attach(AttachArgs),
    /// Make GROUP_ID the active group (writes active.json; no daemon needed).
    Use {
        /// Group to make active.
        group_id: String,
    },
    /// Show the active group (reads active.json; no daemon needed).
    Active,
    /// Add, list and control the actors (agents) of a group.
    Actor {
        #[command(subcommand)]
        action: ActorCmd,
    },
    /// Send a message to actors and/or the user.
    Send(SendArgs),
    /// Reply to a message (the reply goes to its sender unless --to is given).
    Reply(ReplyArgs),
    /// List the unread messages and notifications of an actor (or of `user`).
    Inbox(InboxArgs),
    /// Mark a message read for an actor (moves its read cursor up to that message).
    ///
    /// With --by equal to --actor-id on an attention message, this also acknowledges it.
    Read(ReadArgs),
    /// Acknowledge an attention message as the actor it was sent to.
    Ack(AckArgs),
    /// List open obligations: replies and acknowledgements still owed.
    Obligations(ObligationsArgs),
    /// Print the last ledger lines (raw JSONL) of a group, optionally following new ones.
    ///
    /// Reads the ledger file directly; no daemon needed.
    Tail(TailArgs),
    /// MCP server on stdin/stdout for agent runtimes (identity from CCCC_GROUP_ID, CCCC_ACTOR_ID).
    Mcp,
    /// Chat bridges (Telegram, Discord): configure, start/stop, bind chats, see delivery state.
    Im {
        #[command(subcommand)]
        action: ImAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImAction {
    /// Configure the group's bridge. The token is read from the environment variable you name
    /// (set it where the daemon runs); it is never written to disk.
    Set {
        /// telegram or discord.
        platform: String,
        /// Name of the environment variable holding the bot token (e.g. TELEGRAM_BOT_TOKEN).
        #[arg(long = "token-env", alias = "bot-token-env", value_name = "VAR")]
        token_env: String,
        /// Bot API base URL (a self-hosted Telegram Bot API server, or a test fake).
        #[arg(long = "api-url", value_name = "URL")]
        api_url: Option<String>,
        /// Discord: the guild (server) id whose channels mirror the groups.
        #[arg(long = "guild", value_name = "ID")]
        guild: Option<String>,
        /// Discord: the category for the group channels.
        #[arg(long, value_name = "NAME")]
        category: Option<String>,
        /// Only messages from these platform user ids are accepted (repeatable).
        #[arg(long = "allow-user", value_name = "USER_ID")]
        allow_user: Vec<i64>,
        /// Mirror to this platform as well, keeping the bridge already configured (e.g. a group
        /// on Telegram and Discord at once; an ack on one shows on the other).
        #[arg(long)]
        also: bool,
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// Remove every bridge configuration of the group (`im` and its mirrors) and its chat bindings.
    Unset {
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// Print the bridge configuration (secrets redacted).
    Config {
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Enable the bridge; the daemon starts it (and restarts it if it crashes).
    Start {
        /// Which bridge of the group (when it is mirrored to several platforms).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// Disable the bridge; the daemon stops it once no enabled group uses its bot.
    Stop {
        /// Which bridge of the group (when it is mirrored to several platforms).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// Bridge state: credential, process, and per chat the last delivered event, backlog and errors.
    Status {
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Print the bridge log.
    Logs {
        /// Number of lines.
        #[arg(short = 'n', long = "lines", default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Authorize the chat that sent `/subscribe` and got this key (valid 10 minutes).
    Bind {
        #[arg(long, value_name = "KEY")]
        key: String,
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// List the chats bound to the group.
    Authorized {
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Unbind a chat (or one forum topic of it) from the group.
    Revoke {
        #[arg(long = "chat-id", value_name = "CHAT_ID")]
        chat_id: String,
        /// Forum topic id (0 = the chat itself).
        #[arg(long = "thread-id", default_value_t = 0)]
        thread_id: i64,
        #[command(flatten)]
        group: GroupOpt,
        #[command(flatten)]
        by: ByUser,
    },
    /// List pairing keys waiting for `cccc im bind`.
    Pending,
    /// Drop a pairing key.
    Reject {
        #[arg(long, value_name = "KEY")]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DaemonCmd {
    /// Start the daemon in the background (no-op if it already runs).
    Start,
    /// Ask the daemon to shut down and wait for it to exit.
    Stop,
    /// Report whether the daemon runs (exit 1 if not).
    Status,
    /// Run the daemon in the foreground (what `start` spawns).
    #[command(hide = true)]
    Run,
}

/// `--group`, defaulting to the active group.
#[derive(Args, Debug, Clone, Default)]
pub struct GroupOpt {
    /// Group id (default: the active group, see `cccc active`).
    #[arg(long, value_name = "GROUP_ID")]
    pub group: Option<String>,
}

/// `--by` for administrative commands.
#[derive(Args, Debug, Clone)]
pub struct ByUser {
    /// Principal performing the action (`user`, or an actor id).
    #[arg(long, default_value = "user")]
    pub by: String,
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group and make it active.
    Create {
        /// Group title.
        #[arg(long, default_value = "working-group")]
        title: String,
        /// Group topic (one line describing the work).
        #[arg(long, default_value = "")]
        topic: String,
        /// Principal creating the group.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Show a group's document (read from group.yaml on disk).
    Show {
        /// Group to show (default: --group, else the active group).
        group_id: Option<String>,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Change a group's title and/or topic.
    Update {
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New topic.
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Detach a project scope from a group.
    DetachScope {
        /// Scope key to detach (`s_…`, see `cccc group show`).
        scope_key: String,
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Delete a group, its ledger and state (stops its actors first).
    Delete {
        /// Must repeat the id of the group being deleted.
        #[arg(long, value_name = "GROUP_ID")]
        confirm: String,
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Make an already attached directory the active scope of a group.
    Use {
        /// Group id.
        group_id: String,
        /// Project directory (must already be attached to the group).
        #[arg(default_value = ".")]
        path: String,
        /// Principal performing the action.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Start every actor of the group (needs an attached project scope).
    Start {
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Stop every actor of the group and mark it stopped.
    Stop {
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Set the group state (`stopped` stops the group like `group stop`).
    SetState {
        /// New state.
        state: GroupState,
        #[command(flatten)]
        by: ByUser,
        #[command(flatten)]
        group: GroupOpt,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Active,
    Idle,
    Paused,
    Stopped,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Project directory (created if missing).
    #[arg(default_value = ".")]
    pub path: String,
    /// Attach to this group instead of the one bound to the directory.
    #[arg(long, value_name = "GROUP_ID")]
    pub group: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ActorCmd {
    /// List the actors of a group with their role, runtime and state.
    List {
        #[command(flatten)]
        group: GroupOpt,
    },
    /// Add an actor and start it (the first actor of a group is its foreman).
    Add(ActorAddArgs),
    /// Change an actor's settings.
    Update(ActorUpdateArgs),
    /// Start an actor (enables it).
    Start(ActorTarget),
    /// Stop an actor (disables it).
    Stop(ActorTarget),
    /// Restart an actor's runtime (first step of incident recovery).
    Restart(ActorTarget),
    /// Remove an actor from the group (stops it first).
    Remove(ActorTarget),
    /// Watch a PTY actor's terminal (read-only; --control also types what you enter). Ctrl-C detaches.
    Attach {
        /// Actor id.
        actor_id: String,
        /// Also send your input lines to the terminal.
        #[arg(long)]
        control: bool,
        #[command(flatten)]
        group: GroupOpt,
    },
}

#[derive(Args, Debug)]
pub struct ActorTarget {
    /// Actor id.
    pub actor_id: String,
    #[command(flatten)]
    pub by: ByUser,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The agent runs in a pseudo-terminal; messages are typed into it.
    Pty,
    /// No process: the actor reads its inbox itself (scripts, bots, MCP-only agents).
    Headless,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Press Enter after a delivered message.
    Enter,
    /// Send a newline after a delivered message.
    Newline,
    /// Do not submit; the text is only typed.
    None,
}

#[derive(Args, Debug)]
pub struct ActorAddArgs {
    /// Actor id (letters, digits, `-`, `_`; up to 32 characters).
    pub actor_id: String,
    /// Display title.
    #[arg(long)]
    pub title: Option<String>,
    /// Agent runtime: claude codex copilot cursor opencode kimi amp auggie droid … or custom (bring your own --command).
    #[arg(long, default_value = "codex")]
    pub runtime: String,
    /// How the actor runs.
    #[arg(long, value_enum, default_value = "pty")]
    pub runner: Runner,
    /// Command line to run, as shell words (default: the runtime's own command).
    #[arg(long)]
    pub command: Option<String>,
    /// Environment variable for the actor, K=V (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Default project scope: an attached directory or a scope key (`s_…`).
    #[arg(long, value_name = "PATH")]
    pub scope: Option<String>,
    /// What to press after a message is typed into the terminal.
    #[arg(long, value_enum)]
    pub submit: Option<Submit>,
    #[command(flatten)]
    pub by: ByUser,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct ActorUpdateArgs {
    /// Actor id.
    pub actor_id: String,
    /// New display title.
    #[arg(long)]
    pub title: Option<String>,
    /// New runtime.
    #[arg(long)]
    pub runtime: Option<String>,
    /// New runner.
    #[arg(long, value_enum)]
    pub runner: Option<Runner>,
    /// New command line, as shell words.
    #[arg(long)]
    pub command: Option<String>,
    /// Environment variable K=V (repeatable; replaces the whole environment).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// New default project scope: an attached directory or a scope key.
    #[arg(long, value_name = "PATH")]
    pub scope: Option<String>,
    /// What to press after a message is typed into the terminal.
    #[arg(long, value_enum)]
    pub submit: Option<Submit>,
    /// Where the working state comes from (e.g. `terminal`).
    #[arg(long)]
    pub runtime_state_source: Option<String>,
    /// Enable (1) or disable (0) the actor; toggles its runtime if the group runs.
    #[arg(long, value_name = "0|1", value_parser = clap::builder::BoolishValueParser::new())]
    pub enabled: Option<bool>,
    #[command(flatten)]
    pub by: ByUser,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Normal,
    /// Recipients must acknowledge it (`cccc ack`, reading it themselves, or replying).
    Attention,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Attention => "attention",
        }
    }
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Message text.
    pub text: String,
    /// Recipient: actor id, title, `user`, `@all`, `@peers`, `@foreman` (repeatable, or comma-separated).
    #[arg(long, value_name = "TO")]
    pub to: Vec<String>,
    /// `attention` asks every recipient to acknowledge.
    #[arg(long, value_enum, default_value = "normal")]
    pub priority: Priority,
    /// Every recipient owes a reply.
    #[arg(long)]
    pub reply_required: bool,
    /// Project directory the message is about (must be attached; default: the active scope).
    #[arg(long)]
    pub path: Option<String>,
    /// Sender (default: $CCCC_ACTOR_ID, else `user`).
    #[arg(long)]
    pub by: Option<String>,
    /// Idempotency key: resending with the same key returns the first message.
    #[arg(long)]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct ReplyArgs {
    /// Event id of the message to reply to (a unique prefix is enough).
    pub event_id: String,
    /// Reply text.
    pub text: String,
    /// Recipients instead of the original sender (repeatable, or comma-separated).
    #[arg(long, value_name = "TO")]
    pub to: Vec<String>,
    /// `attention` asks every recipient to acknowledge.
    #[arg(long, value_enum, default_value = "normal")]
    pub priority: Priority,
    /// Every recipient owes a reply to this reply.
    #[arg(long)]
    pub reply_required: bool,
    /// Sender (default: $CCCC_ACTOR_ID, else `user`).
    #[arg(long)]
    pub by: Option<String>,
    /// Idempotency key: resending with the same key returns the first reply.
    #[arg(long)]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindFilter {
    /// Messages and notifications.
    All,
    /// Chat messages only.
    Chat,
    /// System notifications only.
    Notify,
}

impl KindFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            KindFilter::All => "all",
            KindFilter::Chat => "chat",
            KindFilter::Notify => "notify",
        }
    }
}

/// `--actor-id`, defaulting to `$CCCC_ACTOR_ID` (set inside actor runtimes).
#[derive(Args, Debug, Clone)]
pub struct ActorIdOpt {
    /// Whose inbox: an actor id or `user` (default: $CCCC_ACTOR_ID).
    #[arg(long = "actor-id", value_name = "ACTOR_ID")]
    pub actor_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct InboxArgs {
    #[command(flatten)]
    pub actor: ActorIdOpt,
    /// Principal reading the inbox (a peer may only read its own).
    #[arg(long, default_value = "user")]
    pub by: String,
    /// At most this many messages, oldest first (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// Which kinds of entries to list.
    #[arg(long, value_enum, default_value = "all")]
    pub kind_filter: KindFilter,
    /// Then mark everything listed as read.
    #[arg(long)]
    pub mark_read: bool,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Event id of the message (a unique prefix is enough).
    pub event_id: String,
    #[command(flatten)]
    pub actor: ActorIdOpt,
    /// Principal marking it read; equal to --actor-id this also acknowledges attention messages.
    #[arg(long, default_value = "user")]
    pub by: String,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct AckArgs {
    /// Event id of the attention message (a unique prefix is enough).
    pub event_id: String,
    #[command(flatten)]
    pub actor: ActorIdOpt,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct ObligationsArgs {
    /// Only what this actor (or `user`) owes.
    #[arg(long = "actor-id", value_name = "ACTOR_ID")]
    pub actor_id: Option<String>,
    /// Include fulfilled obligations too.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub group: GroupOpt,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Number of lines to print.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are appended (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub group: GroupOpt,
}

/// `K=V` → (K, V).
fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_pairs_need_a_key() {
        assert_eq!(parse_env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env_pair("A=").unwrap(), ("A".into(), "".into()));
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("novalue").is_err());
    }

    #[test]
    fn reference_flags_parse() {
        let cli = Cli::try_parse_from(["cccc", "send", "hi", "--to", "a,b", "--to", "c", "--priority", "attention", "--reply-required"]).unwrap();
        let Some(Command::Send(a)) = cli.command else { panic!("not send") };
        assert_eq!(a.to, vec!["a,b", "c"]);
        assert_eq!(a.priority, Priority::Attention);
        assert!(a.reply_required);
        let cli = Cli::try_parse_from(["cccc", "tail", "-n", "100", "-f", "--json"]).unwrap();
        assert!(cli.json);
        let Some(Command::Tail(t)) = cli.command else { panic!("not tail") };
        assert_eq!((t.lines, t.follow), (100, true));
        let cli = Cli::try_parse_from(["cccc", "actor", "update", "a", "--enabled", "0"]).unwrap();
        let Some(Command::Actor { action: ActorCmd::Update(u) }) = cli.command else { panic!("not update") };
        assert_eq!(u.enabled, Some(false));
    }
}
