//! Which ledger events are mirrored to which chat (bridges.md §3.2, §3.3).
//!
//! The decision is split in two pure steps so each can be tested and logged on its own:
//!
//! 1. [`audience`] looks at the event alone and answers "everyone who subscribed"
//!    ([`Audience::UserFacing`]), "verbose chats only" ([`Audience::VerboseOnly`]) or "nobody, and
//!    here is why" ([`Skip`]).
//! 2. [`admits`] looks at one chat's [`ChatView`] and the audience.
//!
//! The rules, fail-closed wherever the reference versions disagree:
//!
//! * Only `chat.message` and `system.notify` are mirrored (acks update buttons instead, see
//!   [`acked_event`]; streams are a platform feature).
//! * **No echo.** A message written by `user` (`by == "user"`, whether from Web, CLI or IM) or
//!   one that came from IM at all (`data.source_platform` set, `data.client_id` starting with
//!   `im:`, `data.transport == "im"`, `by` starting with `im:`) is never sent back to IM.
//! * A `chat.message` is user-facing when `to` is empty (a broadcast) or contains `user`,
//!   `@user` or `@all`; it then reaches every authorized, subscribed, unpaused chat. Everything
//!   else (agent↔agent, `@peers`, `@foreman`) reaches verbose chats only.
//! * A `system.notify` leaves the group only when it is explicitly public
//!   (`im_visibility: "public"` in `data`, or in `data.context`, since 0.4.32's strict notify
//!   schema only lets free-form keys through `context`), has no `target_actor_id`/`actor_id`,
//!   no `to` other than user/@user/@all, and is not a nudge-style prod meant for actors
//!   ([`NUDGE_KINDS`], never, even if marked public). 0.4.32 never marks a notify public, so with
//!   that daemon no notify is mirrored, which is the safe reading of "internal notices never
//!   leak".
//! * Empty messages (no text, no attachments) are skipped.
//! * A chat needs **both** authorization and a subscription: a stale subscriber entry alone
//!   never receives traffic (checklist 11). Paused chats receive nothing.

use cccc_proto::Event;
use serde_json::Value;

/// One chat's delivery switches, as built by [`crate::binding`] from the state files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatView {
    pub authorized: bool,
    pub subscribed: bool,
    pub verbose: bool,
    pub paused: bool,
}

/// Who an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Addressed to the human (or everyone): every live chat.
    UserFacing,
    /// Agent↔agent traffic: verbose chats only.
    VerboseOnly,
}

/// Why an event is not mirrored at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not a mirrored kind.
    Kind,
    /// Written by the human: they already saw it.
    Echo,
    /// Came in from IM: mirroring it back would echo it.
    FromIm,
    /// Nothing to show.
    Empty,
    /// A nudge-style notice meant for actors.
    Nudge,
    /// A notice not explicitly marked public.
    NotPublic,
    /// A notice addressed to one actor.
    Targeted,
}

/// Why one chat does not get an event that has an audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatSkip {
    NotAuthorized,
    NotSubscribed,
    Paused,
    NotVerbose,
}

/// `system.notify` kinds that prod actors; never mirrored.
pub const NUDGE_KINDS: &[&str] = &["nudge", "help_nudge", "keepalive", "silence_check"];

fn s<'a>(data: &'a Value, key: &str) -> &'a str {
    data.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

fn to_list(data: &Value) -> Vec<&str> {
    data.get("to").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::trim).collect()).unwrap_or_default()
}

fn addresses_user(to: &[&str]) -> bool {
    to.iter().any(|t| matches!(*t, "user" | "@user" | "@all"))
}

/// Did this event come from an IM bridge?
pub fn came_from_im(ev: &Event) -> bool {
    let d = &ev.data;
    !s(d, "source_platform").is_empty() || s(d, "client_id").starts_with("im:") || s(d, "transport") == "im" || ev.by.starts_with("im:")
}

/// Who `ev` is for, or why nobody.
pub fn audience(ev: &Event) -> Result<Audience, Skip> {
    let d = &ev.data;
    match ev.kind.as_str() {
        "chat.message" => {
            if ev.by == "user" {
                return Err(Skip::Echo);
            }
            if came_from_im(ev) {
                return Err(Skip::FromIm);
            }
            let has_attachments = d.get("attachments").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            if s(d, "text").is_empty() && !has_attachments {
                return Err(Skip::Empty);
            }
            let to = to_list(d);
            Ok(if to.is_empty() || addresses_user(&to) { Audience::UserFacing } else { Audience::VerboseOnly })
        }
        "system.notify" => {
            if NUDGE_KINDS.contains(&s(d, "kind")) {
                return Err(Skip::Nudge);
            }
            let public = s(d, "im_visibility") == "public" || d.get("context").is_some_and(|c| s(c, "im_visibility") == "public");
            if !public {
                return Err(Skip::NotPublic);
            }
            let to = to_list(d);
            if !s(d, "target_actor_id").is_empty() || !s(d, "actor_id").is_empty() || (!to.is_empty() && !addresses_user(&to)) {
                return Err(Skip::Targeted);
            }
            if came_from_im(ev) {
                return Err(Skip::FromIm);
            }
            if s(d, "title").is_empty() && s(d, "message").is_empty() {
                return Err(Skip::Empty);
            }
            Ok(Audience::UserFacing)
        }
        _ => Err(Skip::Kind),
    }
}

/// Does `chat` take an event for `audience`?
pub fn admits(audience: Audience, chat: &ChatView) -> Result<(), ChatSkip> {
    if !chat.authorized {
        return Err(ChatSkip::NotAuthorized);
    }
    if !chat.subscribed {
        return Err(ChatSkip::NotSubscribed);
    }
    if chat.paused {
        return Err(ChatSkip::Paused);
    }
    if audience == Audience::VerboseOnly && !chat.verbose {
        return Err(ChatSkip::NotVerbose);
    }
    Ok(())
}

/// Should `ev` be delivered to `chat`?
pub fn should_deliver(ev: &Event, chat: &ChatView) -> bool {
    audience(ev).is_ok_and(|a| admits(a, chat).is_ok())
}

/// The chats (by key) that get `ev`, in the given order.
pub fn targets<'a, K>(ev: &Event, chats: impl IntoIterator<Item = (&'a K, &'a ChatView)>) -> Vec<&'a K> {
    match audience(ev) {
        Ok(a) => chats.into_iter().filter(|(_, c)| admits(a, c).is_ok()).map(|(k, _)| k).collect(),
        Err(_) => Vec::new(),
    }
}

/// For a `chat.ack` by the human, the acked event id: its Ack buttons should change everywhere.
pub fn acked_event(ev: &Event) -> Option<&str> {
    (ev.kind == "chat.ack" && s(&ev.data, "actor_id") == "user").then(|| s(&ev.data, "event_id")).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, by: &str, data: Value) -> Event {
        Event { v: 1, id: "e1".into(), ts: String::new(), kind: kind.into(), group_id: "g".into(), scope_key: String::new(), by: by.into(), data }
    }

    #[test]
    fn audience_table() {
        use Audience::*;
        let cases: Vec<(&str, Event, Result<Audience, Skip>)> = vec![
            ("agent to user", ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"]})), Ok(UserFacing)),
            ("agent to @user", ev("chat.message", "foreman", json!({"text": "hi", "to": ["@user"]})), Ok(UserFacing)),
            ("broadcast (empty to)", ev("chat.message", "foreman", json!({"text": "hi", "to": []})), Ok(UserFacing)),
            ("broadcast @all", ev("chat.message", "peer-a", json!({"text": "hi", "to": ["@all"]})), Ok(UserFacing)),
            ("user among others", ev("chat.message", "peer-a", json!({"text": "hi", "to": ["peer-b", "user"]})), Ok(UserFacing)),
            ("agent to agent", ev("chat.message", "foreman", json!({"text": "hi", "to": ["peer-a"]})), Ok(VerboseOnly)),
            ("@peers", ev("chat.message", "foreman", json!({"text": "hi", "to": ["@peers"]})), Ok(VerboseOnly)),
            ("@foreman", ev("chat.message", "peer-a", json!({"text": "hi", "to": ["@foreman"]})), Ok(VerboseOnly)),
            ("attachments only", ev("chat.message", "foreman", json!({"text": "", "to": ["user"], "attachments": [{"path": "state/blobs/x"}]})), Ok(UserFacing)),
            ("by user (web/cli)", ev("chat.message", "user", json!({"text": "hi", "to": ["@foreman"]})), Err(Skip::Echo)),
            ("by user to user", ev("chat.message", "user", json!({"text": "hi", "to": ["user"]})), Err(Skip::Echo)),
            ("source_platform set", ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"], "source_platform": "telegram"})), Err(Skip::FromIm)),
            ("im client_id", ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"], "client_id": "im:telegram:1:2"})), Err(Skip::FromIm)),
            ("transport im", ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"], "transport": "im"})), Err(Skip::FromIm)),
            ("by im:*", ev("chat.message", "im:telegram", json!({"text": "hi", "to": ["user"]})), Err(Skip::FromIm)),
            ("non-im client_id is fine", ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"], "client_id": "cli-1"})), Ok(UserFacing)),
            ("empty text", ev("chat.message", "foreman", json!({"text": "  ", "to": ["user"]})), Err(Skip::Empty)),
            ("ack", ev("chat.ack", "user", json!({"actor_id": "user", "event_id": "x"})), Err(Skip::Kind)),
            ("read", ev("chat.read", "peer-a", json!({})), Err(Skip::Kind)),
            ("actor.start", ev("actor.start", "user", json!({})), Err(Skip::Kind)),
            ("stream", ev("chat.stream", "foreman", json!({"text": "x"})), Err(Skip::Kind)),
            ("notify without visibility", ev("system.notify", "system", json!({"kind": "info", "title": "t", "message": "m"})), Err(Skip::NotPublic)),
            ("notify internal", ev("system.notify", "system", json!({"kind": "info", "title": "t", "im_visibility": "internal"})), Err(Skip::NotPublic)),
            ("notify public broadcast", ev("system.notify", "system", json!({"kind": "info", "title": "t", "message": "m", "im_visibility": "public", "target_actor_id": null})), Ok(UserFacing)),
            ("notify public via context", ev("system.notify", "system", json!({"kind": "status_change", "title": "t", "context": {"im_visibility": "public"}})), Ok(UserFacing)),
            ("notify public to user", ev("system.notify", "system", json!({"kind": "info", "title": "t", "im_visibility": "public", "to": ["user"]})), Ok(UserFacing)),
            ("notify public targeted", ev("system.notify", "system", json!({"kind": "info", "title": "t", "im_visibility": "public", "target_actor_id": "peer-a"})), Err(Skip::Targeted)),
            ("notify public actor_id", ev("system.notify", "system", json!({"kind": "info", "title": "t", "im_visibility": "public", "actor_id": "peer-a"})), Err(Skip::Targeted)),
            ("notify public to actor", ev("system.notify", "system", json!({"kind": "info", "title": "t", "im_visibility": "public", "to": ["peer-a"]})), Err(Skip::Targeted)),
            ("notify public empty", ev("system.notify", "system", json!({"kind": "info", "title": "", "message": " ", "im_visibility": "public"})), Err(Skip::Empty)),
            ("nudge even if public", ev("system.notify", "system", json!({"kind": "nudge", "title": "t", "im_visibility": "public"})), Err(Skip::Nudge)),
            ("help_nudge", ev("system.notify", "system", json!({"kind": "help_nudge", "title": "t"})), Err(Skip::Nudge)),
            ("keepalive", ev("system.notify", "system", json!({"kind": "keepalive", "title": "t"})), Err(Skip::Nudge)),
        ];
        for (name, e, want) in cases {
            assert_eq!(audience(&e), want, "{name}");
        }
    }

    #[test]
    fn admits_table() {
        use Audience::*;
        let live = ChatView { authorized: true, subscribed: true, verbose: false, paused: false };
        let verbose = ChatView { verbose: true, ..live };
        let cases: Vec<(&str, Audience, ChatView, Result<(), ChatSkip>)> = vec![
            ("live chat, user-facing", UserFacing, live, Ok(())),
            ("live chat, agent traffic", VerboseOnly, live, Err(ChatSkip::NotVerbose)),
            ("verbose chat, agent traffic", VerboseOnly, verbose, Ok(())),
            ("verbose chat, user-facing", UserFacing, verbose, Ok(())),
            ("subscribed but not authorized", UserFacing, ChatView { authorized: false, ..verbose }, Err(ChatSkip::NotAuthorized)),
            ("authorized but unsubscribed", UserFacing, ChatView { subscribed: false, ..verbose }, Err(ChatSkip::NotSubscribed)),
            ("paused", UserFacing, ChatView { paused: true, ..verbose }, Err(ChatSkip::Paused)),
            ("paused verbose, agent traffic", VerboseOnly, ChatView { paused: true, ..verbose }, Err(ChatSkip::Paused)),
            ("nothing", UserFacing, ChatView::default(), Err(ChatSkip::NotAuthorized)),
        ];
        for (name, a, chat, want) in cases {
            assert_eq!(admits(a, &chat), want, "{name}");
        }
    }

    #[test]
    fn targets_picks_the_right_chats() {
        let chats = [
            ("dm", ChatView { authorized: true, subscribed: true, verbose: false, paused: false }),
            ("ops", ChatView { authorized: true, subscribed: true, verbose: true, paused: false }),
            ("paused", ChatView { authorized: true, subscribed: true, verbose: true, paused: true }),
            ("stale", ChatView { authorized: false, subscribed: true, verbose: true, paused: false }),
        ];
        let it = || chats.iter().map(|(k, v)| (k, v));
        let to_user = ev("chat.message", "foreman", json!({"text": "hi", "to": ["user"]}));
        assert_eq!(targets(&to_user, it()), vec![&"dm", &"ops"]);
        let to_peer = ev("chat.message", "foreman", json!({"text": "hi", "to": ["peer-a"]}));
        assert_eq!(targets(&to_peer, it()), vec![&"ops"]);
        let echo = ev("chat.message", "user", json!({"text": "hi", "to": ["user"]}));
        assert!(targets(&echo, it()).is_empty());
        assert!(should_deliver(&to_peer, &chats[1].1));
        assert!(!should_deliver(&to_peer, &chats[0].1));
    }

    #[test]
    fn only_user_acks_update_buttons() {
        assert_eq!(acked_event(&ev("chat.ack", "user", json!({"actor_id": "user", "event_id": "abc"}))), Some("abc"));
        assert_eq!(acked_event(&ev("chat.ack", "peer-a", json!({"actor_id": "peer-a", "event_id": "abc"}))), None);
        assert_eq!(acked_event(&ev("chat.read", "user", json!({"actor_id": "user", "event_id": "abc"}))), None);
        assert_eq!(acked_event(&ev("chat.ack", "user", json!({"actor_id": "user"}))), None);
    }
}
