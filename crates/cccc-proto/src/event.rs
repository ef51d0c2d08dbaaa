//! The ledger event envelope and the `chat.message` data shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One ledger line. Key order on disk: `v,id,ts,kind,group_id,scope_key,by,data`.
///
/// Deserialization is lenient (missing keys default), because readers must tolerate whatever
/// an older or newer writer put in the file; unknown kinds pass `data` through untouched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default = "one")]
    pub v: u64,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub ts: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub scope_key: String,
    #[serde(default)]
    pub by: String,
    #[serde(default = "empty_object")]
    pub data: Value,
}

fn one() -> u64 {
    1
}
fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Event {
    /// The event as a ledger line (without the trailing newline).
    pub fn to_line(&self) -> String {
        crate::json::to_py_string(self)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("event to value")
    }

    /// `data[key]` as a string, or "".
    pub fn data_str(&self, key: &str) -> &str {
        self.data.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// `chat.message` data with every key the reference always serializes, in its order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessageData {
    pub text: String,
    pub format: String,
    pub insight: Option<String>,
    pub priority: String,
    pub reply_required: bool,
    pub to: Vec<String>,
    pub reply_to: Option<String>,
    pub quote_text: Option<String>,
    pub source_platform: Option<String>,
    pub source_user_name: Option<String>,
    pub source_user_id: Option<String>,
    pub mention_user_ids: Option<Vec<Value>>,
    pub sender_title: Option<String>,
    pub sender_runtime: Option<String>,
    pub sender_avatar_path: Option<String>,
    pub src_group_id: Option<String>,
    pub src_event_id: Option<String>,
    pub src_by: Option<String>,
    pub remote_reply_to: Option<Value>,
    pub dst_group_id: Option<String>,
    pub dst_to: Option<Vec<String>>,
    pub refs: Vec<Value>,
    pub attachments: Vec<Value>,
    pub thread: String,
    pub stream_id: Option<String>,
    pub pending_event_id: Option<String>,
    pub client_id: Option<String>,
    pub suggested_user_message: Option<String>,
}

impl Default for ChatMessageData {
    fn default() -> Self {
        ChatMessageData {
            text: String::new(),
            format: "plain".into(),
            insight: None,
            priority: "normal".into(),
            reply_required: false,
            to: Vec::new(),
            reply_to: None,
            quote_text: None,
            source_platform: None,
            source_user_name: None,
            source_user_id: None,
            mention_user_ids: None,
            sender_title: None,
            sender_runtime: None,
            sender_avatar_path: None,
            src_group_id: None,
            src_event_id: None,
            src_by: None,
            remote_reply_to: None,
            dst_group_id: None,
            dst_to: None,
            refs: Vec::new(),
            attachments: Vec::new(),
            thread: String::new(),
            stream_id: None,
            pending_event_id: None,
            client_id: None,
            suggested_user_message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first chat.message of reference-samples/ledger.jsonl, byte for byte.
    const REF_LINE: &str = r#"{"v": 1, "id": "15e1b1fcab1b40e88a7c1bf7bf4637a9", "ts": "2026-11-25T10:11:43.097327Z", "kind": "chat.message", "group_id": "g_67a6cf96a190", "scope_key": "s_37b1b8029e86", "by": "user", "data": {"text": "Please review the release checklist", "format": "plain", "insight": null, "priority": "attention", "reply_required": true, "to": ["peer-a"], "reply_to": null, "quote_text": null, "source_platform": null, "source_user_name": null, "source_user_id": null, "mention_user_ids": null, "sender_title": null, "sender_runtime": null, "sender_avatar_path": null, "src_group_id": null, "src_event_id": null, "src_by": null, "remote_reply_to": null, "dst_group_id": null, "dst_to": null, "refs": [], "attachments": [], "thread": "", "stream_id": null, "pending_event_id": null, "client_id": null, "suggested_user_message": null}}"#;

    #[test]
    fn chat_message_line_is_byte_identical_to_the_reference() {
        let data = ChatMessageData {
            text: "Please review the release checklist".into(),
            priority: "attention".into(),
            reply_required: true,
            to: vec!["peer-a".into()],
            ..Default::default()
        };
        let ev = Event {
            v: 1,
            id: "15e1b1fcab1b40e88a7c1bf7bf4637a9".into(),
            ts: "2026-11-25T10:11:43.097327Z".into(),
            kind: "chat.message".into(),
            group_id: "g_67a6cf96a190".into(),
            scope_key: "s_37b1b8029e86".into(),
            by: "user".into(),
            data: serde_json::to_value(&data).unwrap(),
        };
        assert_eq!(ev.to_line(), REF_LINE);
    }

    #[test]
    fn every_reference_ledger_line_round_trips_byte_for_byte() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/spec/reference-samples/ledger.jsonl");
        let Ok(text) = std::fs::read_to_string(path) else {
            // The samples live beside the repo (../shared); a lone clone may not have them.
            eprintln!("skipping: {path} not present");
            return;
        };
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let ev: Event = serde_json::from_str(line).unwrap();
            assert_eq!(ev.to_line(), line);
            n += 1;
        }
        assert!(n > 50, "expected the full sample ledger, got {n} lines");
    }
}
