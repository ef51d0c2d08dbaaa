//! Message semantics as pure functions over the group document and the ledger index:
//! recipient canonicalisation (spec §2.5), visibility (§2.6), obligations (§3.4, §3.5).

use crate::group::GroupDoc;
use crate::index::{Entry, Index, Kind};
use crate::{OpResult, err};
use serde_json::{Value, json};

pub const SELECTORS: &[&str] = &["@all", "@peers", "@foreman"];

/// Canonicalise a `to` value (a list or a single string) against the group's actors.
///
/// `@all @peers @foreman` stay; `user`/`@user` become `user`; other `@x` lose the `@`; an exact
/// actor id stays; otherwise a unique case-insensitive title match gives that actor's id.
/// Duplicates are dropped, first occurrence wins.
pub fn canonicalize_to(doc: &GroupDoc, raw: Option<&Value>) -> OpResult<Vec<String>> {
    let items: Vec<String> = match raw {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            let mut v = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => v.push(s.clone()),
                    Value::Null => {}
                    other => return Err(err("invalid_recipient", format!("recipient must be a string, got {other}"))),
                }
            }
            v
        }
        Some(other) => return Err(err("invalid_recipient", format!("`to` must be a list of strings, got {other}"))),
    };
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let t = item.trim();
        if t.is_empty() || t == "@" {
            continue;
        }
        let canon = if SELECTORS.contains(&t) {
            t.to_string()
        } else if t == "user" || t == "@user" {
            "user".to_string()
        } else {
            let bare = t.strip_prefix('@').unwrap_or(t);
            let visible = || doc.actor_views().filter(|a| !a.internal);
            if visible().any(|a| a.id == bare) {
                bare.to_string()
            } else {
                let lower = bare.to_lowercase();
                let hits: Vec<&str> = visible().filter(|a| !a.title.is_empty() && a.title.to_lowercase() == lower).map(|a| a.id).collect();
                match hits.as_slice() {
                    [one] => one.to_string(),
                    [] => return Err(err("invalid_recipient", format!("unknown recipient: {bare}"))),
                    _ => return Err(err("invalid_recipient", format!("ambiguous recipient title: {bare}"))),
                }
            }
        };
        if !out.contains(&canon) {
            out.push(canon);
        }
    }
    Ok(out)
}

/// Would a chat message with canonical `to`, sent by `by`, reach actor `actor`?
pub fn to_reaches(doc: &GroupDoc, to: &[&str], by: &str, actor: &str) -> bool {
    if by == actor {
        return false;
    }
    if doc.actor(actor).is_some_and(|a| a.internal) {
        return to.contains(&actor);
    }
    if to.is_empty() || to.contains(&"@all") || to.contains(&actor) {
        return true;
    }
    // `user` is not a member: `@peers`/`@foreman` never reach it (safe fix of quirk §8.4).
    if actor == "user" {
        return false;
    }
    let role = doc.role_of(actor);
    (to.contains(&"@peers") && role == "peer") || (to.contains(&"@foreman") && role == "foreman")
}

/// Is the indexed message `e` addressed to `who` (an actor id or `user`)?
pub fn is_for(doc: &GroupDoc, ix: &Index, e: &Entry, who: &str) -> bool {
    let Some(m) = e.msg.as_ref() else { return false };
    match e.kind {
        Kind::SystemNotify => match m.target {
            None => !doc.actor(who).is_some_and(|a| a.internal),
            Some(t) => ix.sym_name(t) == who,
        },
        Kind::ChatMessage => {
            let to: Vec<&str> = m.to.iter().map(|s| ix.sym_name(*s)).collect();
            to_reaches(doc, &to, ix.sym_name(e.by), who)
        }
        _ => false,
    }
}

/// Does `to` name `user` explicitly?
pub fn names_user(ix: &Index, e: &Entry) -> bool {
    e.msg.as_ref().is_some_and(|m| m.to.iter().any(|s| matches!(ix.sym_name(*s), "user" | "@user")))
}

/// Who owes something on chat message `e`: current actors it addresses (not the sender, not
/// added after it) plus `user` when named explicitly and not the sender.
pub fn obligation_recipients(doc: &GroupDoc, ix: &Index, e: &Entry) -> Vec<String> {
    let Some(m) = e.msg.as_ref() else { return Vec::new() };
    if e.kind != Kind::ChatMessage || m.dst_group {
        return Vec::new();
    }
    let by = ix.sym_name(e.by);
    let mut out: Vec<String> = doc
        .actor_views()
        .filter(|a| !a.internal && a.id != by)
        .filter(|a| cccc_proto::ts::parse(a.created_at).is_none_or(|c| c <= e.ts))
        .filter(|a| is_for(doc, ix, e, a.id))
        .map(|a| a.id.to_string())
        .collect();
    if by != "user" && names_user(ix, e) {
        out.push("user".into());
    }
    out
}

/// Obligation status of message at `pos` for recipient `who`, given their cursor ts.
pub fn obligation(ix: &Index, pos: u32, who: &str, cursor_ts: Option<i64>) -> Value {
    let e = &ix.entries[pos as usize];
    let m = e.msg.as_ref().expect("obligation on a message");
    let read = cursor_ts.is_some_and(|c| c >= e.ts);
    let replied = ix.is_replied_by(who, pos);
    let acked = replied || ix.is_acked_by(who, pos) || (m.attention && read);
    json!({
        "read": read,
        "acked": acked,
        "replied": replied,
        "reply_required": m.reply_required,
        "attention": m.attention,
        "open": (m.reply_required && !replied) || (m.attention && !acked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> GroupDoc {
        let mut g = GroupDoc::new_group("g_000000000000", "t", "");
        g.actors_mut().push(json!({"id": "lead", "title": "Lead"}));
        g.actors_mut().push(json!({"id": "peer-a", "title": "Peer A"}));
        g.actors_mut().push(json!({"id": "peer-b", "title": "peer a"}));
        g
    }

    #[test]
    fn canonicalisation_matches_reference_examples() {
        let d = doc();
        let c = |v: Value| canonicalize_to(&d, Some(&v));
        assert_eq!(c(json!(["@", "@all", "@all"])).unwrap(), vec!["@all"]);
        assert_eq!(c(json!(["Lead", "@peer-a"])).unwrap(), vec!["lead", "peer-a"]);
        assert_eq!(c(json!(["@user", "user", " lead "])).unwrap(), vec!["user", "lead"]);
        assert_eq!(c(json!("LEAD")).unwrap(), vec!["lead"]);
        assert_eq!(c(json!(["@everyone"])).unwrap_err().message, "unknown recipient: everyone");
        assert_eq!(c(json!(["Peer A"])).unwrap_err().message, "ambiguous recipient title: Peer A");
        assert_eq!(c(json!(["nobody"])).unwrap_err().code, "invalid_recipient");
    }

    #[test]
    fn visibility_rules() {
        let d = doc();
        assert!(to_reaches(&d, &["@foreman"], "user", "lead"));
        assert!(!to_reaches(&d, &["@foreman"], "user", "peer-a"));
        assert!(to_reaches(&d, &["@peers"], "lead", "peer-a"));
        assert!(!to_reaches(&d, &["@peers"], "lead", "user"), "user is not a peer");
        assert!(to_reaches(&d, &[], "lead", "user"), "broadcast reaches everyone");
        assert!(!to_reaches(&d, &["@all"], "lead", "lead"), "never your own message");
    }
}
