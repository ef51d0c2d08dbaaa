//! Per-recipient read cursors (`state/read_cursors.json`).
//!
//! `{"peer-a": {"event_id": "…", "ts": "<event ts>", "updated_at": "<when set>"}}`. An event is
//! read for R iff `cursor(R).ts >= event.ts` (compared as instants, not strings). Cursors only
//! move forward: setting an older ts keeps the current cursor.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Cursors {
    path: PathBuf,
    doc: Map<String, Value>,
    ts: HashMap<String, i64>,
}

impl Cursors {
    /// Load the cursor file; a missing or unreadable file is an empty set (the ledger's
    /// `chat.read` records can restore it, see `Group::open`).
    pub fn load(group_dir: &Path) -> Cursors {
        let path = group_dir.join("state").join("read_cursors.json");
        let doc = match crate::home::read_json(&path) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) if path.exists() => {
                tracing::warn!(path = %path.display(), "read_cursors.json unreadable; rebuilding cursors from the ledger");
                Map::new()
            }
            _ => Map::new(),
        };
        let ts = doc
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), cccc_proto::ts::parse(v.get("ts")?.as_str()?)?)))
            .collect();
        Cursors { path, doc, ts }
    }

    /// The cursor's ts (µs), if any.
    pub fn ts_of(&self, actor: &str) -> Option<i64> {
        self.ts.get(actor).copied()
    }

    /// `{event_id, ts}` for responses (`""`s when there is no cursor).
    pub fn brief(&self, actor: &str) -> Value {
        match self.doc.get(actor) {
            Some(c) => json!({
                "event_id": c.get("event_id").cloned().unwrap_or(json!("")),
                "ts": c.get("ts").cloned().unwrap_or(json!("")),
            }),
            None => json!({"event_id": "", "ts": ""}),
        }
    }

    pub fn full(&self, actor: &str) -> Value {
        self.doc.get(actor).cloned().unwrap_or_else(|| json!({"event_id": "", "ts": "", "updated_at": ""}))
    }

    /// Move `actor`'s cursor to an event, forward only. Returns whether it moved. An equal ts
    /// overwrites (refreshing `updated_at`), as in the reference.
    pub fn advance(&mut self, actor: &str, event_id: &str, event_ts: &str, ts: i64) -> bool {
        if self.ts.get(actor).is_some_and(|&cur| cur > ts) {
            return false;
        }
        self.ts.insert(actor.to_string(), ts);
        self.doc.insert(
            actor.to_string(),
            json!({"event_id": event_id, "ts": event_ts, "updated_at": cccc_proto::ts::now()}),
        );
        true
    }

    pub fn save(&self) -> io::Result<()> {
        crate::home::write_json_pretty(&self.path, &Value::Object(self.doc.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_only_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cursors::load(dir.path());
        assert_eq!(c.brief("a"), json!({"event_id": "", "ts": ""}));
        let (t1, t2) = ("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z");
        let p = |t| cccc_proto::ts::parse(t).unwrap();
        assert!(c.advance("a", "e2", t2, p(t2)));
        assert!(!c.advance("a", "e1", t1, p(t1)));
        assert!(c.advance("a", "e2b", t2, p(t2)), "equal ts overwrites");
        c.save().unwrap();
        let c2 = Cursors::load(dir.path());
        assert_eq!(c2.brief("a")["event_id"], "e2b");
        assert_eq!(c2.ts_of("a"), Some(p(t2)));
    }
}
