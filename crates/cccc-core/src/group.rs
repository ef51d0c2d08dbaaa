//! The group document (`groups/<id>/group.yaml`).
//!
//! Kept as an ordered JSON object so every field the reference wrote, including the many we do
//! not model, is preserved on rewrite. Accessors give typed views of the parts the semantics use.

use crate::yaml;
use serde_json::{Map, Value, json};
use std::path::Path;

/// Group states (spec §5.1). An unknown stored value is treated as `active`, as the reference does.
pub const STATES: &[&str] = &["active", "idle", "paused", "stopped"];

#[derive(Clone, Debug, PartialEq)]
pub struct GroupDoc {
    pub doc: Map<String, Value>,
}

/// A typed view of one actor entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ActorView<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub enabled: bool,
    pub runner: &'a str,
    pub runtime: &'a str,
    pub internal: bool,
    pub created_at: &'a str,
}

impl GroupDoc {
    /// Load and validate a group.yaml. Errors say what is wrong and where.
    pub fn load(path: &Path) -> Result<GroupDoc, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = yaml::parse(&text).map_err(|e| format!("{} is not valid YAML: {e}", path.display()))?;
        let Value::Object(doc) = value else {
            return Err(format!("{} is not a YAML mapping", path.display()));
        };
        if let Some(actors) = doc.get("actors")
            && !(actors.is_array() || actors.is_null())
        {
            return Err(format!("{}: `actors` must be a list", path.display()));
        }
        Ok(GroupDoc { doc })
    }

    /// Write the document atomically, refreshing `updated_at`.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        self.doc.insert("updated_at".into(), Value::from(cccc_proto::ts::now()));
        crate::home::atomic_write(path, yaml::emit(&Value::Object(self.doc.clone())).as_bytes())
    }

    /// A new group document with the reference's defaults for a freshly created group.
    pub fn new_group(group_id: &str, title: &str, topic: &str) -> GroupDoc {
        let now = cccc_proto::ts::now();
        let v = json!({
            "v": 1,
            "group_id": group_id,
            "title": title,
            "topic": topic,
            "created_at": now,
            "updated_at": now,
            "running": false,
            "state": "active",
            "active_scope_key": "",
            "scopes": [],
            "actors": [],
            "automation": default_automation(),
        });
        GroupDoc { doc: v.as_object().cloned().unwrap_or_default() }
    }

    fn str_field(&self, key: &str) -> &str {
        self.doc.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub fn group_id(&self) -> &str {
        self.str_field("group_id")
    }
    pub fn title(&self) -> &str {
        self.str_field("title")
    }
    pub fn topic(&self) -> &str {
        self.str_field("topic")
    }
    pub fn state(&self) -> &str {
        let s = self.str_field("state");
        if STATES.contains(&s) { s } else { "active" }
    }
    pub fn set_state(&mut self, s: &str) {
        self.doc.insert("state".into(), Value::from(s));
    }
    pub fn running_flag(&self) -> bool {
        self.doc.get("running").and_then(Value::as_bool).unwrap_or(false)
    }
    pub fn set_running_flag(&mut self, b: bool) {
        self.doc.insert("running".into(), Value::from(b));
    }
    pub fn active_scope_key(&self) -> &str {
        self.str_field("active_scope_key")
    }

    pub fn scopes(&self) -> &[Value] {
        self.doc.get("scopes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn scopes_mut(&mut self) -> &mut Vec<Value> {
        if !self.doc.get("scopes").is_some_and(Value::is_array) {
            self.doc.insert("scopes".into(), json!([]));
        }
        self.doc.get_mut("scopes").and_then(Value::as_array_mut).expect("scopes is a list")
    }

    pub fn actors(&self) -> &[Value] {
        self.doc.get("actors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn actors_mut(&mut self) -> &mut Vec<Value> {
        if !self.doc.get("actors").is_some_and(Value::is_array) {
            self.doc.insert("actors".into(), json!([]));
        }
        self.doc.get_mut("actors").and_then(Value::as_array_mut).expect("actors is a list")
    }

    pub fn actor_views(&self) -> impl Iterator<Item = ActorView<'_>> {
        self.actors().iter().filter_map(|a| {
            let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("");
            let id = s("id");
            if id.is_empty() {
                return None;
            }
            Some(ActorView {
                id,
                title: s("title"),
                enabled: a.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                runner: if s("runner").is_empty() { "pty" } else { s("runner") },
                runtime: s("runtime"),
                internal: a.get("internal_kind").is_some_and(|v| !v.is_null() && v.as_str() != Some("")),
                created_at: s("created_at"),
            })
        })
    }

    pub fn actor(&self, id: &str) -> Option<ActorView<'_>> {
        self.actor_views().find(|a| a.id == id)
    }
    pub fn actor_value(&self, id: &str) -> Option<&Value> {
        self.actors().iter().find(|a| a.get("id").and_then(Value::as_str) == Some(id))
    }
    pub fn actor_value_mut(&mut self, id: &str) -> Option<&mut Map<String, Value>> {
        self.actors_mut()
            .iter_mut()
            .find(|a| a.get("id").and_then(Value::as_str) == Some(id))
            .and_then(Value::as_object_mut)
    }
    pub fn has_actor(&self, id: &str) -> bool {
        self.actor(id).is_some()
    }

    /// The foreman: the first visible (non-internal) actor in document order, whatever its
    /// enabled or running state.
    pub fn foreman_id(&self) -> Option<&str> {
        self.actor_views().find(|a| !a.internal).map(|a| a.id)
    }

    /// `foreman` or `peer` (anything that is not the foreman, including `user`, is a peer).
    pub fn role_of(&self, id: &str) -> &'static str {
        if self.foreman_id() == Some(id) { "foreman" } else { "peer" }
    }

    /// `messaging.default_send_to`: `foreman` (default) or `broadcast`.
    pub fn default_send_to(&self) -> &str {
        match self.doc.get("messaging").and_then(|m| m.get("default_send_to")).and_then(Value::as_str) {
            Some("broadcast") => "broadcast",
            _ => "foreman",
        }
    }

    pub fn scope_url(&self, scope_key: &str) -> Option<&str> {
        self.scopes()
            .iter()
            .find(|s| s.get("scope_key").and_then(Value::as_str) == Some(scope_key))
            .and_then(|s| s.get("url").and_then(Value::as_str))
    }

    /// The document with IM secrets removed (what `group_show` returns).
    pub fn redacted(&self) -> Value {
        let mut doc = self.doc.clone();
        if let Some(Value::Object(im)) = doc.get_mut("im") {
            for k in ["token", "bot_token", "app_token"] {
                im.remove(k);
            }
        }
        Value::Object(doc)
    }
}

/// Automation defaults for a new group (spec §1.6).
pub fn default_automation() -> Value {
    json!({
        "version": 1,
        "rules": [{
            "id": "standup",
            "enabled": false,
            "scope": "group",
            "owner_actor_id": null,
            "to": ["@foreman"],
            "trigger": {"kind": "interval", "every_seconds": 900},
            "action": {"kind": "notify", "priority": "normal", "requires_ack": false, "title": "Stand-up reminder", "snippet_ref": "standup", "message": ""}
        }],
        "snippets": {},
        "snippet_overrides": {},
        "nudge_after_seconds": 0,
        "reply_required_nudge_after_seconds": 300,
        "attention_ack_nudge_after_seconds": 600,
        "unread_nudge_after_seconds": 0,
        "actor_idle_timeout_seconds": 0,
        "keepalive_delay_seconds": 0,
        "silence_timeout_seconds": 0,
        "help_nudge_interval_seconds": 0,
        "help_nudge_min_messages": 0
    })
}

/// Validate an actor id (spec §1.7). Returns the error message the reference gives.
pub fn validate_actor_id(id: &str) -> Result<(), String> {
    const RESERVED: &[&str] =
        &["user", "all", "system", "foreman", "peers", "admin", "root", "cccc", "@all", "@peers", "@foreman", "@user"];
    let n = id.chars().count();
    if n == 0 || n > 32 {
        return Err(format!("invalid actor id: {id:?} (1-32 characters)"));
    }
    if RESERVED.contains(&id.to_lowercase().as_str()) {
        return Err(format!("invalid actor id: {id:?} is reserved"));
    }
    let mut chars = id.chars();
    let first = chars.next().unwrap();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    if !(first.is_alphanumeric()) {
        return Err(format!("invalid actor id: {id:?} (must start with a letter, digit or CJK character)"));
    }
    if let Some(bad) = chars.find(|&c| !(word(c) || c == '-')) {
        return Err(format!("invalid actor id: {id:?} (character {bad:?} not allowed; use letters, digits, '-' and '_')"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_id_rules() {
        for ok in ["lead", "peer-a", "a_1", "漢字", "Ünï", "x"] {
            assert!(validate_actor_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a b", "a.b", "a@b", "a/b", "User", "@all", "foreman", &"x".repeat(33)] {
            assert!(validate_actor_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn foreman_is_first_visible_actor_regardless_of_enabled() {
        let mut g = GroupDoc::new_group("g_000000000000", "t", "");
        g.actors_mut().push(json!({"id": "hidden", "internal_kind": "voice_secretary"}));
        g.actors_mut().push(json!({"id": "lead", "enabled": false}));
        g.actors_mut().push(json!({"id": "peer"}));
        assert_eq!(g.foreman_id(), Some("lead"));
        assert_eq!(g.role_of("peer"), "peer");
        assert_eq!(g.role_of("user"), "peer");
        g.actors_mut().remove(1);
        assert_eq!(g.foreman_id(), Some("peer"));
    }
}
