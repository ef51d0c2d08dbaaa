//! The message map: platform message ↔ ledger event (bridges.md §4.4, §4.5).
//!
//! Every piece the bridge delivers, and every inbound message the daemon accepted, is recorded
//! as `(platform, chat, message_id) → (event_id, part)`. Lookups both ways:
//!
//! * a platform reply or a button press on message M finds its event ([`MessageMap::event_for`]),
//!   so the runner can call the daemon's `reply`/`chat_ack` with the right event id;
//! * an event finds every message that mirrors it, on every chat ([`MessageMap::messages_for`]),
//!   so a `chat.ack` made anywhere can flip the Ack button everywhere
//!   ([`MessageMap::button_messages`]: the last part per chat, where the button sits).
//!
//! Telegram `callback_data` is limited to 64 bytes; an event id is 32 hex digits, so
//! `ack:<event_id>` fits and no short-id table is needed.
//!
//! The map is bounded ([`MAX_ENTRIES`], oldest evicted first): a reply to a very old message
//! falls back to a plain `send`, as the spec recommends. It is persisted as a JSON array in
//! `im_message_map.json`, rewritten atomically. Inserts are idempotent (keyed by the platform
//! message), which is what makes the outbox's "write the map, then advance the cursor" order
//! safe to repeat after a crash.

use crate::{ChatTarget, PlatformRef};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

/// File name under the group's `state/` directory.
pub const MESSAGE_MAP_FILE: &str = "im_message_map.json";
/// Entries kept before the oldest are evicted.
pub const MAX_ENTRIES: usize = 20_000;

/// One mapped message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    pub platform: String,
    pub chat_id: String,
    #[serde(default)]
    pub thread_id: i64,
    pub message_id: String,
    pub event_id: String,
    /// 1-based part of a split message; 0 for an inbound message.
    #[serde(default)]
    pub part: usize,
    #[serde(default)]
    pub at_ms: i64,
}

impl MapEntry {
    pub fn new(at: &PlatformRef, event_id: &str, part: usize, at_ms: i64) -> MapEntry {
        MapEntry {
            platform: at.target.platform.clone(),
            chat_id: at.target.chat_id.clone(),
            thread_id: at.target.thread_id,
            message_id: at.message_id.clone(),
            event_id: event_id.to_string(),
            part,
            at_ms,
        }
    }

    pub fn target(&self) -> ChatTarget {
        ChatTarget::new(self.platform.clone(), self.chat_id.clone(), self.thread_id)
    }

    pub fn platform_ref(&self) -> PlatformRef {
        PlatformRef { target: self.target(), message_id: self.message_id.clone() }
    }

    fn key(&self) -> (String, String) {
        (self.target().scoped_key(), self.message_id.clone())
    }
}

/// The bounded, persisted map.
#[derive(Debug)]
pub struct MessageMap {
    path: PathBuf,
    capacity: usize,
    entries: VecDeque<MapEntry>,
    by_message: HashMap<(String, String), (String, usize)>,
}

impl MessageMap {
    /// Load `<state_dir>/im_message_map.json` (missing or unreadable: empty; the map is a
    /// convenience, losing it only degrades replies to plain sends).
    pub fn open(state_dir: &Path) -> MessageMap {
        Self::with_capacity(state_dir, MAX_ENTRIES)
    }

    pub fn with_capacity(state_dir: &Path, capacity: usize) -> MessageMap {
        let path = state_dir.join(MESSAGE_MAP_FILE);
        let loaded: Vec<MapEntry> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let mut map = MessageMap { path, capacity: capacity.max(1), entries: VecDeque::new(), by_message: HashMap::new() };
        for e in loaded {
            map.insert(e);
        }
        map
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record one message (in memory; call [`MessageMap::save`]). Re-inserting the same
    /// platform message is a no-op.
    pub fn insert(&mut self, entry: MapEntry) {
        let key = entry.key();
        if self.by_message.contains_key(&key) {
            return;
        }
        self.by_message.insert(key, (entry.event_id.clone(), entry.part));
        self.entries.push_back(entry);
        while self.entries.len() > self.capacity {
            if let Some(old) = self.entries.pop_front() {
                self.by_message.remove(&old.key());
            }
        }
    }

    /// Persist atomically.
    pub fn save(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.entries).map_err(io::Error::other)?;
        cccc_core::home::atomic_write(&self.path, &bytes)
    }

    /// The event a platform message belongs to, and its part.
    pub fn event_for(&self, target: &ChatTarget, message_id: &str) -> Option<(&str, usize)> {
        self.by_message.get(&(target.scoped_key(), message_id.to_string())).map(|(e, p)| (e.as_str(), *p))
    }

    /// Every message mirroring `event_id`, on every chat, in delivery order.
    pub fn messages_for(&self, event_id: &str) -> Vec<&MapEntry> {
        self.entries.iter().filter(|e| e.event_id == event_id).collect()
    }

    /// Per chat, the last part of `event_id`: where its Ack button is.
    pub fn button_messages(&self, event_id: &str) -> Vec<PlatformRef> {
        let mut last: Vec<&MapEntry> = Vec::new();
        for e in self.messages_for(event_id) {
            match last.iter_mut().find(|l| l.target() == e.target()) {
                Some(l) if e.part > l.part => *l = e,
                Some(_) => {}
                None => last.push(e),
            }
        }
        last.into_iter().map(MapEntry::platform_ref).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(chat: &str, thread: i64, msg: &str) -> PlatformRef {
        PlatformRef { target: ChatTarget::new("telegram", chat, thread), message_id: msg.into() }
    }

    #[test]
    fn maps_both_ways_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MessageMap::open(dir.path());
        m.insert(MapEntry::new(&at("1", 0, "10"), "ev1", 1, 5));
        m.insert(MapEntry::new(&at("1", 0, "11"), "ev1", 2, 5));
        m.insert(MapEntry::new(&at("2", 7, "10"), "ev1", 1, 5));
        m.insert(MapEntry::new(&at("2", 7, "12"), "ev2", 0, 6));
        m.insert(MapEntry::new(&at("1", 0, "10"), "other", 9, 9)); // idempotent
        m.save().unwrap();
        let m = MessageMap::open(dir.path());
        assert_eq!(m.len(), 4);
        assert_eq!(m.event_for(&ChatTarget::new("telegram", "1", 0), "11"), Some(("ev1", 2)));
        assert_eq!(m.event_for(&ChatTarget::new("telegram", "2", 7), "10"), Some(("ev1", 1)));
        assert_eq!(m.event_for(&ChatTarget::new("telegram", "2", 0), "10"), None, "other topic");
        assert_eq!(m.event_for(&ChatTarget::new("discord", "1", 0), "10"), None, "other platform");
        assert_eq!(m.messages_for("ev1").len(), 3);
        assert_eq!(m.button_messages("ev1"), vec![at("1", 0, "11"), at("2", 7, "10")]);
        assert!(m.button_messages("nope").is_empty());
    }

    #[test]
    fn evicts_the_oldest_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MessageMap::with_capacity(dir.path(), 3);
        for i in 0..5 {
            m.insert(MapEntry::new(&at("1", 0, &i.to_string()), &format!("ev{i}"), 1, i));
        }
        assert_eq!(m.len(), 3);
        let t = ChatTarget::new("telegram", "1", 0);
        assert_eq!(m.event_for(&t, "1"), None);
        assert_eq!(m.event_for(&t, "2"), Some(("ev2", 1)));
        m.save().unwrap();
        let reloaded = MessageMap::with_capacity(dir.path(), 2);
        assert_eq!(reloaded.len(), 2);
        assert_eq!(reloaded.event_for(&t, "4"), Some(("ev4", 1)));
    }
}
