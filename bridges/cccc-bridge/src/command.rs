//! Inbound parsing: what a platform message asks the bridge to do.
//!
//! [`parse`] turns the text of one inbound message, plus a little context ([`Context`]: is it
//! a DM, who is this bot, who are the actors), into a [`Command`]. It never talks to anything;
//! the runner acts on the result. Decisions:
//!
//! * **Addressing.** In a DM everything is addressed to the bot. In a group, text is forwarded
//!   only when it mentions the bot (`@thisbot`, or a platform token such as Discord's `<@id>`),
//!   when it replies to one of the bot's messages, or when it is `/cmd@thisbot`. Leading bot
//!   mentions are stripped; a mention further in stays in the text. Ambient group chatter is
//!   [`Command::Ignore`]d without a reply (checklist 10, 18).
//! * **Commands.** `/subscribe` (`/sub`), `/unsubscribe` (`/unsub`), `/send`, `/status` (`/s`),
//!   `/pause`, `/resume`, `/verbose` (`/v`) `[on|off]`, `/help` (`/h`), `/start`. Names are
//!   case-insensitive. A recognised command is accepted in a group even without a mention (as
//!   RsHEAD does), but `/cmd@otherbot` is always ignored. `/start` (what Telegram clients send
//!   when a user opens a bot) gets its own variant so the runner answers with pairing help; it
//!   never starts or stops agents (checklist 21). An unknown `/foo` that is addressed to us is
//!   [`Command::Unknown`] (answer with help, never forward as chat: checklist 20). A slash that
//!   does not form a command token (`/path/to/file is broken`) is plain text.
//! * **Recipients** (Py432's rule, §4.3): leading tokens that start with `@` (or are `user`) are
//!   consumed as recipients while *every* comma-separated part resolves: the selectors `@all`,
//!   `@peers`, `@foreman`, `user`/`@user`, or a known actor (id, case-insensitively, or a unique
//!   title). The first token that does not resolve ends the list and stays in the text, so
//!   `/send @UnknownName hi` sends `@UnknownName hi` to the default recipient (checklist 17).
//!   Output tokens are canonical, as the daemon stores them: `@all`, `@peers`, `@foreman`,
//!   `user`, and actor ids without `@`. Without explicit recipients the group default applies:
//!   `["@foreman"]` for `default_send_to: foreman`, `[]` (broadcast) otherwise.
//! * **Text is kept as written**: only the consumed tokens and the whitespace around them are
//!   removed; newlines and inner spacing survive.
//! * **Idempotency.** [`client_id`] is `im:<platform>:<chat_key>:<message_id>`; the daemon
//!   dedupes `send`/`reply` on it, so a replayed update writes at most one event (checklist 22).

use crate::ChatTarget;

/// Usage line for a `/send` without text.
pub const SEND_USAGE: &str = "Usage: /send [@actor[,@actor2]] <message>";
/// Usage line for a bad `/verbose` argument.
pub const VERBOSE_USAGE: &str = "Usage: /verbose [on|off]";

/// The command list, for `/help`, `/start` and unknown commands.
pub const HELP: &str = "\
/send [@actor|@all|@peers|@foreman] <text> — message the agents (plain text goes to the default recipient)
/subscribe — pair this chat with the group (you get a key to approve)
/unsubscribe — stop mirroring and revoke this chat
/status — group and chat status
/pause, /resume — stop or resume mirroring to this chat
/verbose [on|off] — also mirror agent-to-agent messages
/help — this list";

/// The actors a message may be addressed to.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    actors: Vec<(String, String)>,
}

impl Roster {
    /// From `(actor_id, title)` pairs.
    pub fn new<I, A, B>(actors: I) -> Roster
    where
        I: IntoIterator<Item = (A, B)>,
        A: Into<String>,
        B: Into<String>,
    {
        Roster { actors: actors.into_iter().map(|(a, b)| (a.into(), b.into())).collect() }
    }

    /// The canonical token for one recipient word (`@peer-a`, `Peer-A`, `@all`, `user`, …).
    pub fn resolve(&self, token: &str) -> Option<String> {
        let t = token.trim();
        let lower = t.to_lowercase();
        match lower.as_str() {
            "@all" | "@peers" | "@foreman" => return Some(lower),
            "user" | "@user" => return Some("user".into()),
            _ => {}
        }
        let name = t.strip_prefix('@').unwrap_or(t);
        if name.is_empty() {
            return None;
        }
        if let Some((id, _)) = self.actors.iter().find(|(id, _)| id == name) {
            return Some(id.clone());
        }
        if let Some((id, _)) = self.actors.iter().find(|(id, _)| id.eq_ignore_ascii_case(name)) {
            return Some(id.clone());
        }
        let mut by_title = self.actors.iter().filter(|(_, title)| !title.is_empty() && title.to_lowercase() == name.to_lowercase());
        match (by_title.next(), by_title.next()) {
            (Some((id, _)), None) => Some(id.clone()),
            _ => None,
        }
    }
}

/// The group's `messaging.default_send_to`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultRoute {
    /// Plain text goes to `@foreman` (the reference default).
    #[default]
    Foreman,
    /// Plain text goes to everyone (`to: []`).
    Broadcast,
}

impl DefaultRoute {
    pub fn recipients(self) -> Vec<String> {
        match self {
            DefaultRoute::Foreman => vec!["@foreman".into()],
            DefaultRoute::Broadcast => Vec::new(),
        }
    }
}

/// What the parser needs to know about the message and the bot.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// The bot's user name without `@` (Telegram `username`); used for `@name` and `/cmd@name`.
    pub bot_username: &'a str,
    /// Other tokens that address the bot (Discord `<@id>`, `<@!id>`).
    pub mention_tokens: &'a [String],
    /// A private chat: everything is addressed to the bot.
    pub direct: bool,
    /// The message replies to one of the bot's messages.
    pub reply_to_bot: bool,
    /// The message carries files, so an empty text is still a message.
    pub has_attachments: bool,
    pub roster: &'a Roster,
    pub default_route: DefaultRoute,
}

static NO_ACTORS: Roster = Roster { actors: Vec::new() };

impl Default for Context<'_> {
    /// A group message, nothing known: fill in what applies.
    fn default() -> Self {
        Context {
            bot_username: "",
            mention_tokens: &[],
            direct: false,
            reply_to_bot: false,
            has_attachments: false,
            roster: &NO_ACTORS,
            default_route: DefaultRoute::Foreman,
        }
    }
}

/// Why a message is ignored without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Nothing to send.
    Empty,
    /// Group chatter not addressed to the bot.
    NotAddressed,
    /// `/cmd@otherbot`.
    OtherBot,
}

/// The parsed intent of one inbound message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Forward to the daemon (`send`, or `reply` when the message replies to a mapped one).
    Send {
        to: Vec<String>,
        text: String,
        /// Recipients were given explicitly (rather than the group default).
        explicit: bool,
    },
    Subscribe,
    Unsubscribe,
    Status,
    Pause,
    Resume,
    /// `None` toggles.
    Verbose(Option<bool>),
    Help,
    /// Telegram's "Start" button: answer with help / pairing guidance, nothing else.
    Start,
    /// Malformed arguments: reply with this usage line.
    Usage(&'static str),
    /// An unknown command addressed to us (lower-cased name without `/`).
    Unknown(String),
    Ignore(Ignored),
}

/// The inbound idempotency key: `im:<platform>:<chat_key>:<message_id>`.
pub fn client_id(target: &ChatTarget, message_id: &str) -> String {
    format!("im:{}:{}:{}", target.platform, target.chat_key(), message_id.trim())
}

/// The first whitespace-delimited token of `s` (which must not start with whitespace) and the
/// rest after it, leading whitespace removed.
fn first_token(s: &str) -> (&str, &str) {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

fn is_bot_mention(token: &str, ctx: &Context) -> bool {
    let t = token.trim_end_matches([',', ':', ';', '.', '!', '?']);
    if let Some(name) = t.strip_prefix('@')
        && !ctx.bot_username.is_empty()
        && name.eq_ignore_ascii_case(ctx.bot_username.trim_start_matches('@'))
    {
        return true;
    }
    ctx.mention_tokens.iter().any(|m| !m.is_empty() && (m == token || m == t))
}

/// `/name` or `/name@bot` as (name, bot), if `token` is a command token.
fn command_token(token: &str) -> Option<(&str, Option<&str>)> {
    let body = token.strip_prefix('/')?;
    let (name, bot) = match body.split_once('@') {
        Some((n, b)) => (n, Some(b)),
        None => (body, None),
    };
    let word = |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word(name) && bot.is_none_or(word)).then_some((name, bot))
}

/// Split leading recipient tokens off `payload`: (canonical recipients, remaining text).
pub fn parse_recipients<'t>(payload: &'t str, roster: &Roster) -> (Vec<String>, &'t str) {
    let mut to: Vec<String> = Vec::new();
    let mut rest = payload.trim_start();
    loop {
        let (tok, after) = first_token(rest);
        if tok.is_empty() || !(tok.starts_with('@') || tok.eq_ignore_ascii_case("user")) {
            break;
        }
        let parts: Vec<&str> = tok.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let resolved: Option<Vec<String>> = parts.iter().map(|p| roster.resolve(p)).collect();
        match resolved {
            Some(r) if !r.is_empty() => {
                for t in r {
                    if !to.contains(&t) {
                        to.push(t);
                    }
                }
                rest = after;
            }
            _ => break,
        }
    }
    (to, rest)
}

/// Parse one inbound message.
pub fn parse(text: &str, ctx: &Context) -> Command {
    let mut t = text.trim();
    let mut addressed = ctx.direct || ctx.reply_to_bot;
    // Leading mentions of this bot.
    loop {
        let (tok, after) = first_token(t);
        if tok.is_empty() || !is_bot_mention(tok, ctx) {
            break;
        }
        addressed = true;
        t = after;
    }
    addressed |= t.split_whitespace().any(|tok| is_bot_mention(tok, ctx));

    let (tok, args) = first_token(t);
    if let Some((name, bot)) = command_token(tok) {
        if let Some(bot) = bot {
            if !bot.eq_ignore_ascii_case(ctx.bot_username.trim_start_matches('@')) {
                return Command::Ignore(Ignored::OtherBot);
            }
            addressed = true;
        }
        let name = name.to_ascii_lowercase();
        return match name.as_str() {
            "send" => send(args, ctx, true),
            "subscribe" | "sub" => Command::Subscribe,
            "unsubscribe" | "unsub" => Command::Unsubscribe,
            "status" | "s" => Command::Status,
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "verbose" | "v" => match first_token(args).0.to_ascii_lowercase().as_str() {
                "" => Command::Verbose(None),
                "on" | "true" | "1" | "yes" => Command::Verbose(Some(true)),
                "off" | "false" | "0" | "no" => Command::Verbose(Some(false)),
                _ => Command::Usage(VERBOSE_USAGE),
            },
            "help" | "h" => Command::Help,
            "start" => Command::Start,
            _ if addressed => Command::Unknown(name),
            _ => Command::Ignore(Ignored::NotAddressed),
        };
    }
    if !addressed {
        return Command::Ignore(Ignored::NotAddressed);
    }
    send(t, ctx, false)
}

fn send(payload: &str, ctx: &Context, slash: bool) -> Command {
    let (to, rest) = parse_recipients(payload, ctx.roster);
    let text = rest.trim();
    if text.is_empty() && !ctx.has_attachments {
        return if slash { Command::Usage(SEND_USAGE) } else { Command::Ignore(Ignored::Empty) };
    }
    let explicit = !to.is_empty();
    Command::Send { to: if explicit { to } else { ctx.default_route.recipients() }, text: text.to_string(), explicit }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::new([("lead", "Lead"), ("peer-a", "Reviewer"), ("peer-b", ""), ("Peer-C", "Twin"), ("peer-d", "Twin")])
    }

    fn send_to(to: &[&str], text: &str, explicit: bool) -> Command {
        Command::Send { to: to.iter().map(|s| s.to_string()).collect(), text: text.into(), explicit }
    }

    #[test]
    fn direct_message_table() {
        let roster = roster();
        let ctx = Context { bot_username: "thisbot", direct: true, roster: &roster, ..Default::default() };
        let cases: Vec<(&str, Command)> = vec![
            ("hello", send_to(&["@foreman"], "hello", false)),
            ("  hello\n  world  ", send_to(&["@foreman"], "hello\n  world", false)),
            ("/send @all,@peer-a do X", send_to(&["@all", "peer-a"], "do X", true)),
            ("/send @all, @peer-a do X", send_to(&["@all", "peer-a"], "do X", true)),
            ("/send @peer-a @peer-b  two\nlines", send_to(&["peer-a", "peer-b"], "two\nlines", true)),
            ("/send @UnknownName hi", send_to(&["@foreman"], "@UnknownName hi", false)),
            ("/send @peer-a,@ghost hi", send_to(&["@foreman"], "@peer-a,@ghost hi", false)),
            ("/send @peer-a @ghost hi", send_to(&["peer-a"], "@ghost hi", true)),
            ("/send @Reviewer ok", send_to(&["peer-a"], "ok", true)),
            ("/send @PEER-A ok", send_to(&["peer-a"], "ok", true)),
            ("/send @Twin ok", send_to(&["@foreman"], "@Twin ok", false)),
            ("/send @user,@FOREMAN,@Peers x", send_to(&["user", "@foreman", "@peers"], "x", true)),
            ("/send @peer-a,@peer-a x", send_to(&["peer-a"], "x", true)),
            ("/send", Command::Usage(SEND_USAGE)),
            ("/send @peer-a", Command::Usage(SEND_USAGE)),
            ("/SEND hi", send_to(&["@foreman"], "hi", false)),
            ("@peer-a please review", send_to(&["peer-a"], "please review", true)),
            ("@ hi", send_to(&["@foreman"], "@ hi", false)),
            ("/status", Command::Status),
            ("/s", Command::Status),
            ("/pause", Command::Pause),
            ("/resume", Command::Resume),
            ("/verbose", Command::Verbose(None)),
            ("/v on", Command::Verbose(Some(true))),
            ("/verbose OFF", Command::Verbose(Some(false))),
            ("/verbose maybe", Command::Usage(VERBOSE_USAGE)),
            ("/help", Command::Help),
            ("/h", Command::Help),
            ("/subscribe", Command::Subscribe),
            ("/sub", Command::Subscribe),
            ("/unsubscribe", Command::Unsubscribe),
            ("/unsub", Command::Unsubscribe),
            ("/start", Command::Start),
            ("/foo bar", Command::Unknown("foo".into())),
            ("/launch", Command::Unknown("launch".into())),
            ("/status@thisbot", Command::Status),
            ("/status@ThisBot", Command::Status),
            ("/status@otherbot", Command::Ignore(Ignored::OtherBot)),
            ("/path/to/file is broken", send_to(&["@foreman"], "/path/to/file is broken", false)),
            ("/", send_to(&["@foreman"], "/", false)),
            ("", Command::Ignore(Ignored::Empty)),
            ("   ", Command::Ignore(Ignored::Empty)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &ctx), want, "{text:?}");
        }
    }

    #[test]
    fn group_message_table() {
        let roster = roster();
        let ctx = Context { bot_username: "thisbot", roster: &roster, ..Default::default() };
        let cases: Vec<(&str, Command)> = vec![
            ("hello", Command::Ignore(Ignored::NotAddressed)),
            ("@thisbot hello", send_to(&["@foreman"], "hello", false)),
            ("@ThisBot, hello", send_to(&["@foreman"], "hello", false)),
            ("@thisbot @thisbot hello", send_to(&["@foreman"], "hello", false)),
            ("hello @thisbot", send_to(&["@foreman"], "hello @thisbot", false)),
            ("@thisbot @peer-a check", send_to(&["peer-a"], "check", true)),
            ("@otherbot hello", Command::Ignore(Ignored::NotAddressed)),
            ("@thisbot", Command::Ignore(Ignored::Empty)),
            ("/status", Command::Status),
            ("/status@otherbot", Command::Ignore(Ignored::OtherBot)),
            ("@thisbot /status@otherbot", Command::Ignore(Ignored::OtherBot)),
            ("@thisbot /status", Command::Status),
            ("/foo", Command::Ignore(Ignored::NotAddressed)),
            ("/foo@thisbot", Command::Unknown("foo".into())),
            ("@thisbot /foo", Command::Unknown("foo".into())),
            ("/send@thisbot @all go", send_to(&["@all"], "go", true)),
            ("/send@otherbot @all go", Command::Ignore(Ignored::OtherBot)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &ctx), want, "{text:?}");
        }
    }

    #[test]
    fn reply_to_bot_discord_mentions_attachments_and_broadcast_default() {
        let roster = roster();
        let tokens = vec!["<@123>".to_string(), "<@!123>".to_string()];
        let ctx = Context { bot_username: "cccc", mention_tokens: &tokens, roster: &roster, ..Default::default() };
        assert_eq!(parse("<@123> hello", &ctx), send_to(&["@foreman"], "hello", false));
        assert_eq!(parse("<@!123> hello", &ctx), send_to(&["@foreman"], "hello", false));
        assert_eq!(parse("<@999> hello", &ctx), Command::Ignore(Ignored::NotAddressed));

        let ctx = Context { reply_to_bot: true, ..ctx };
        assert_eq!(parse("yes, ship it", &ctx), send_to(&["@foreman"], "yes, ship it", false));

        let ctx = Context { direct: true, has_attachments: true, default_route: DefaultRoute::Broadcast, ..ctx };
        assert_eq!(parse("", &ctx), send_to(&[], "", false));
        assert_eq!(parse("/send @peer-a", &ctx), send_to(&["peer-a"], "", true));
    }

    #[test]
    fn roster_resolution() {
        let r = roster();
        assert_eq!(r.resolve("@lead").as_deref(), Some("lead"));
        assert_eq!(r.resolve("lead").as_deref(), Some("lead"));
        assert_eq!(r.resolve("@LEAD").as_deref(), Some("lead"));
        assert_eq!(r.resolve("@Peer-C").as_deref(), Some("Peer-C"));
        assert_eq!(r.resolve("@peer-c").as_deref(), Some("Peer-C"));
        assert_eq!(r.resolve("@twin"), None, "ambiguous title");
        assert_eq!(r.resolve("@everyone"), None);
        assert_eq!(r.resolve("@"), None);
        assert_eq!(r.resolve("USER").as_deref(), Some("user"));
        assert_eq!(r.resolve("@All").as_deref(), Some("@all"));
    }

    #[test]
    fn client_id_is_the_documented_key() {
        assert_eq!(client_id(&ChatTarget::new("telegram", "12345", 0), "678"), "im:telegram:12345:678");
        assert_eq!(client_id(&ChatTarget::new("telegram", "-100123", 42), "9"), "im:telegram:-100123:42:9");
        assert_eq!(client_id(&ChatTarget::new("discord", "998877", 0), "1122"), "im:discord:998877:1122");
    }
}
