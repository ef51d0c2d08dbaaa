//! Pairing keys, authorized chats and subscriptions (bridges.md §2), persisted compatibly.
//!
//! **Model.** The unit of authorization is the chat target `(platform, chat_id, thread_id)`.
//! Three sets are kept:
//!
//! 1. *pending* one-time keys, created by `/subscribe` in an unauthorized chat, valid for
//!    [`KEY_TTL_SECS`] (600 s). A repeated `/subscribe` from the same target while its key is
//!    live returns the **same** key (RsHEAD's rule; it also stops a chat from flooding the
//!    pending list). Keys carry 64 random bits, as 16 hex digits.
//! 2. *authorized* chats. [`Bindings::bind`] (what `cccc im bind --key K` and the daemon's
//!    `im_bind_chat` do) consumes a live key, authorizes its target and subscribes it
//!    (`verbose: false`). An unknown or expired key is [`BindingError::InvalidKey`]
//!    (`invalid_key`, "key not found or expired").
//! 3. *subscribers*: the per-chat switches `subscribed`, `verbose`, `paused`.
//!
//! Delivery needs authorization **and** a subscription ([`Bindings::view`] feeds
//! [`crate::mirror`]). Topics are distinct targets: authorizing topic 42 says nothing about
//! topic 43 or the General topic (thread 0). An entry whose `platform` is empty matches any
//! platform (legacy Py432 files); otherwise the platform must match.
//!
//! **Files** (under the group's `state/` directory, the reference's names and shapes, so the
//! Python tooling and this crate can read each other's state; bridges.md §1.4):
//!
//! | file | content |
//! |---|---|
//! | `im_pending_keys.json` | `{"<key>": {chat_id, thread_id, platform, created_at}}` |
//! | `im_authorized_chats.json` | `{"<chat_key>": {chat_id, thread_id, platform, authorized_at, key_used}}` |
//! | `im_subscribers.json` | `{"<chat_key>": {subscribed, verbose, paused, subscribed_at, chat_title, thread_id, platform, chat_id}}` |
//!
//! `<chat_key>` is [`ChatTarget::chat_key`] (`chat_id` or `chat_id:thread_id`). Times are what
//! the reference writes: `created_at`/`authorized_at` are float Unix seconds, `subscribed_at`
//! is `YYYY-MM-DDTHH:MM:SSZ`. Entries are kept as JSON objects, so keys written by another
//! implementation survive our rewrites; values are read leniently (`"false"` strings, string
//! thread ids), as the Python loader does.
//!
//! **Writes** are atomic (temp file, fsync, rename, directory fsync via
//! [`cccc_core::home::atomic_write`]). The daemon and the bridge both write these files, so every
//! mutation first re-reads the file it changes (read-modify-write), which narrows but does not
//! close the window for a lost update between two processes; a shared lock file
//! (`state/im_state.lock`, as RsHEAD has) is left for when both writers live in this code base.
//! `bind` writes *authorized*, then *subscribers*, then consumes the key: a crash in between
//! leaves a key that binds the same chat again, never a consumed key without authorization.
//! An unreadable file counts as empty (fail closed) and is copied aside as
//! `<name>.corrupt-<content hash>` before anything overwrites it.

use crate::mirror::ChatView;
use crate::{ChatTarget, Clock};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pairing keys live this long (seconds). A key is still valid at exactly this age.
pub const KEY_TTL_SECS: i64 = 600;
pub const PENDING_FILE: &str = "im_pending_keys.json";
pub const AUTHORIZED_FILE: &str = "im_authorized_chats.json";
pub const SUBSCRIBERS_FILE: &str = "im_subscribers.json";

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("key not found or expired")]
    InvalidKey,
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl BindingError {
    /// The IPC error code.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::InvalidKey => "invalid_key",
            BindingError::Io { .. } => "io_error",
        }
    }
}

/// A pairing key handed to a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingKey {
    pub key: String,
    pub target: ChatTarget,
    pub expires_at_ms: i64,
    /// The chat already had this live key (a repeated `/subscribe`).
    pub reused: bool,
}

/// The three state files of one group, loaded.
pub struct Bindings {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    pending: Map<String, Value>,
    authorized: Map<String, Value>,
    subscribers: Map<String, Value>,
}

fn lenient_bool(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => default,
        },
        _ => default,
    }
}

fn lenient_i64(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn lenient_f64(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn str_field<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

fn platform_matches(entry: &Value, platform: &str) -> bool {
    let p = str_field(entry, "platform");
    p.is_empty() || p == platform
}

/// `YYYY-MM-DDTHH:MM:SSZ` (the reference's `subscribed_at`).
fn iso_seconds(ms: i64) -> String {
    cccc_proto::ts::format(ms.div_euclid(1000) * 1_000_000)
}

/// A fresh 64-bit key as 16 hex digits (uuid v4 minus its fixed version and variant bits).
fn new_key() -> String {
    let v = uuid::Uuid::new_v4().as_u128();
    let low = (v as u64) & ((1 << 62) - 1);
    let high = ((v >> 64) as u64) & 3;
    format!("{:016x}", low | (high << 62))
}

fn load(path: &Path) -> Map<String, Value> {
    match std::fs::read(path) {
        Err(_) => Map::new(),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            _ => {
                if !bytes.iter().all(u8::is_ascii_whitespace) {
                    // Named by content, so reloading the same bad file keeps one copy.
                    let digest: String = Sha256::digest(&bytes).iter().take(6).map(|b| format!("{b:02x}")).collect();
                    let aside = path.with_file_name(format!("{}.corrupt-{digest}", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
                    if !aside.exists() {
                        let _ = std::fs::copy(path, &aside);
                    }
                    tracing::warn!(path = %path.display(), kept = %aside.display(), "unreadable IM state file; treating it as empty");
                }
                Map::new()
            }
        },
    }
}

impl Bindings {
    /// Load the state files of `state_dir` (missing files are empty).
    pub fn open(state_dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Bindings {
        let mut b = Bindings { dir: state_dir.into(), clock, pending: Map::new(), authorized: Map::new(), subscribers: Map::new() };
        b.reload();
        b
    }

    /// Re-read all three files (another process may have bound or revoked a chat).
    pub fn reload(&mut self) {
        self.pending = load(&self.dir.join(PENDING_FILE));
        self.authorized = load(&self.dir.join(AUTHORIZED_FILE));
        self.subscribers = load(&self.dir.join(SUBSCRIBERS_FILE));
    }

    fn save(&self, name: &'static str) -> Result<(), BindingError> {
        let map = match name {
            PENDING_FILE => &self.pending,
            AUTHORIZED_FILE => &self.authorized,
            SUBSCRIBERS_FILE => &self.subscribers,
            other => unreachable!("not an IM state file: {other}"),
        };
        let path = self.dir.join(name);
        cccc_core::home::write_json_pretty(&path, &Value::Object(map.clone())).map_err(|source| BindingError::Io { path, source })
    }

    fn now_secs(&self) -> f64 {
        self.clock.now_ms() as f64 / 1000.0
    }

    fn expired(&self, entry: &Value) -> bool {
        self.now_secs() - lenient_f64(entry.get("created_at")) > KEY_TTL_SECS as f64
    }

    fn purge_expired(&mut self) -> bool {
        let expired: Vec<String> = self.pending.iter().filter(|(_, e)| self.expired(e)).map(|(k, _)| k.clone()).collect();
        for k in &expired {
            self.pending.remove(k);
        }
        !expired.is_empty()
    }

    fn target_of(key: &str, entry: &Value, default_platform: &str) -> ChatTarget {
        let thread_id = lenient_i64(entry.get("thread_id"));
        let chat_id = match str_field(entry, "chat_id") {
            "" => {
                let suffix = format!(":{thread_id}");
                if thread_id > 0 && key.ends_with(&suffix) { &key[..key.len() - suffix.len()] } else { key }
            }
            id => id,
        };
        let platform = match str_field(entry, "platform") {
            "" => default_platform,
            p => p,
        };
        ChatTarget::new(platform, chat_id, thread_id)
    }

    /// `/subscribe` from an unauthorized chat: a live key for `target`, reused if it has one.
    pub fn request_key(&mut self, target: &ChatTarget) -> Result<PendingKey, BindingError> {
        self.pending = load(&self.dir.join(PENDING_FILE));
        let purged = self.purge_expired();
        let ttl_ms = KEY_TTL_SECS * 1000;
        let live = self.pending.iter().find(|(_, e)| {
            str_field(e, "chat_id") == target.chat_id && lenient_i64(e.get("thread_id")) == target.thread_id && str_field(e, "platform") == target.platform
        });
        if let Some((key, e)) = live {
            let created_ms = (lenient_f64(e.get("created_at")) * 1000.0) as i64;
            let key = PendingKey { key: key.clone(), target: target.clone(), expires_at_ms: created_ms + ttl_ms, reused: true };
            if purged {
                self.save(PENDING_FILE)?;
            }
            return Ok(key);
        }
        let key = new_key();
        let now_ms = self.clock.now_ms();
        self.pending.insert(
            key.clone(),
            json!({"chat_id": target.chat_id, "thread_id": target.thread_id, "platform": target.platform, "created_at": now_ms as f64 / 1000.0}),
        );
        self.save(PENDING_FILE)?;
        Ok(PendingKey { key, target: target.clone(), expires_at_ms: now_ms + ttl_ms, reused: false })
    }

    /// Live pending keys, newest first, with their expiry (ms).
    pub fn list_pending(&mut self) -> Vec<(String, ChatTarget, i64)> {
        self.pending = load(&self.dir.join(PENDING_FILE));
        let mut out: Vec<(String, ChatTarget, i64)> = self
            .pending
            .iter()
            .filter(|(_, e)| !self.expired(e))
            .map(|(k, e)| {
                let created_ms = (lenient_f64(e.get("created_at")) * 1000.0) as i64;
                (k.clone(), Self::target_of(str_field(e, "chat_id"), e, ""), created_ms + KEY_TTL_SECS * 1000)
            })
            .collect();
        out.sort_by_key(|(_, _, exp)| std::cmp::Reverse(*exp));
        out
    }

    /// Consume `key`: authorize and subscribe its chat.
    pub fn bind(&mut self, key: &str) -> Result<ChatTarget, BindingError> {
        self.reload();
        let key = key.trim();
        let Some(entry) = self.pending.get(key).cloned() else {
            return Err(BindingError::InvalidKey);
        };
        if self.expired(&entry) {
            self.pending.remove(key);
            self.save(PENDING_FILE)?;
            return Err(BindingError::InvalidKey);
        }
        let target = Self::target_of(str_field(&entry, "chat_id"), &entry, "");
        let ck = target.chat_key();
        self.authorized.insert(
            ck.clone(),
            json!({"chat_id": target.chat_id, "thread_id": target.thread_id, "platform": target.platform, "authorized_at": self.now_secs(), "key_used": key}),
        );
        self.save(AUTHORIZED_FILE)?;
        self.upsert_subscriber(&target, None)?;
        self.pending.remove(key);
        self.purge_expired();
        self.save(PENDING_FILE)?;
        Ok(target)
    }

    /// Authorize and subscribe a chat the bridge made for this group itself (a Discord
    /// channel per group): no pairing key, the group's own configuration is the consent.
    /// Returns whether anything changed.
    pub fn authorize_provisioned(&mut self, target: &ChatTarget, chat_title: &str) -> Result<bool, BindingError> {
        self.reload();
        if self.is_authorized(target) && self.subscriber(target).is_some() {
            return Ok(false);
        }
        if !self.is_authorized(target) {
            self.authorized.insert(
                target.chat_key(),
                json!({"chat_id": target.chat_id, "thread_id": target.thread_id, "platform": target.platform, "authorized_at": self.now_secs(), "key_used": "channel-per-group"}),
            );
            self.save(AUTHORIZED_FILE)?;
        }
        self.upsert_subscriber(target, Some(chat_title))?;
        Ok(true)
    }

    /// Delete a pending key (`im_reject_pending`). Nothing is sent to the chat.
    pub fn reject(&mut self, key: &str) -> Result<bool, BindingError> {
        self.pending = load(&self.dir.join(PENDING_FILE));
        let existed = self.pending.remove(key.trim()).is_some();
        let purged = self.purge_expired();
        if existed || purged {
            self.save(PENDING_FILE)?;
        }
        Ok(existed)
    }

    /// Revoke authorization and remove the subscription (`/unsubscribe`, `cccc im revoke`).
    /// Only this exact target: other topics of the chat are untouched. Returns whether the chat
    /// was authorized.
    pub fn revoke(&mut self, target: &ChatTarget) -> Result<bool, BindingError> {
        self.reload();
        let ck = target.chat_key();
        let was = self.authorized.get(&ck).is_some_and(|e| platform_matches(e, &target.platform));
        if was {
            self.authorized.remove(&ck);
            self.save(AUTHORIZED_FILE)?;
        }
        if self.subscribers.get(&ck).is_some_and(|e| platform_matches(e, &target.platform)) {
            self.subscribers.remove(&ck);
            self.save(SUBSCRIBERS_FILE)?;
        }
        Ok(was)
    }

    /// Is this exact target authorized?
    pub fn is_authorized(&self, target: &ChatTarget) -> bool {
        self.authorized.get(&target.chat_key()).is_some_and(|e| platform_matches(e, &target.platform))
    }

    fn subscriber(&self, target: &ChatTarget) -> Option<&Value> {
        self.subscribers.get(&target.chat_key()).filter(|e| platform_matches(e, &target.platform))
    }

    /// The delivery switches of one target.
    pub fn view(&self, target: &ChatTarget) -> ChatView {
        let sub = self.subscriber(target);
        ChatView {
            authorized: self.is_authorized(target),
            subscribed: sub.is_some_and(|e| lenient_bool(e.get("subscribed"), true)),
            verbose: sub.is_some_and(|e| lenient_bool(e.get("verbose"), false)),
            paused: sub.is_some_and(|e| lenient_bool(e.get("paused"), false)),
        }
    }

    /// Every subscriber entry of `platform` (or of no platform) with its view, in file order.
    /// Feed this to [`crate::mirror::targets`].
    pub fn chats(&self, platform: &str) -> Vec<(ChatTarget, ChatView)> {
        self.subscribers
            .iter()
            .filter(|(_, e)| platform_matches(e, platform))
            .map(|(k, e)| {
                let t = Self::target_of(k, e, platform);
                let v = self.view(&t);
                (t, v)
            })
            .collect()
    }

    fn upsert_subscriber(&mut self, target: &ChatTarget, chat_title: Option<&str>) -> Result<(), BindingError> {
        self.subscribers = load(&self.dir.join(SUBSCRIBERS_FILE));
        let ck = target.chat_key();
        let now = iso_seconds(self.clock.now_ms());
        let entry = self.subscribers.entry(ck).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let verbose = lenient_bool(entry.get("verbose"), false);
        let title = chat_title.map(str::to_string).unwrap_or_else(|| str_field(entry, "chat_title").to_string());
        let m = entry.as_object_mut().expect("object");
        m.insert("subscribed".into(), json!(true));
        m.insert("verbose".into(), json!(verbose));
        m.insert("paused".into(), json!(false));
        m.insert("subscribed_at".into(), json!(now));
        m.insert("chat_title".into(), json!(title));
        m.insert("thread_id".into(), json!(target.thread_id));
        m.insert("platform".into(), json!(target.platform));
        m.insert("chat_id".into(), json!(target.chat_id));
        self.save(SUBSCRIBERS_FILE)
    }

    /// (Re)subscribe an authorized chat (a second `/subscribe`). Unauthorized chats must pair
    /// first: returns `false` and changes nothing.
    pub fn subscribe(&mut self, target: &ChatTarget, chat_title: &str) -> Result<bool, BindingError> {
        self.reload();
        if !self.is_authorized(target) {
            return Ok(false);
        }
        self.upsert_subscriber(target, Some(chat_title))?;
        Ok(true)
    }

    fn set_flag(&mut self, target: &ChatTarget, flag: &str, value: Option<bool>) -> Result<Option<bool>, BindingError> {
        self.subscribers = load(&self.dir.join(SUBSCRIBERS_FILE));
        let ck = target.chat_key();
        let Some(entry) = self.subscribers.get_mut(&ck).filter(|e| platform_matches(e, &target.platform)) else {
            return Ok(None);
        };
        let new = value.unwrap_or(!lenient_bool(entry.get(flag), false));
        if let Some(m) = entry.as_object_mut() {
            m.insert(flag.into(), json!(new));
        }
        self.save(SUBSCRIBERS_FILE)?;
        Ok(Some(new))
    }

    /// Set (or toggle with `None`) `verbose`. `None` if the chat is not subscribed.
    pub fn set_verbose(&mut self, target: &ChatTarget, value: Option<bool>) -> Result<Option<bool>, BindingError> {
        self.set_flag(target, "verbose", value)
    }

    /// Pause or resume mirroring to this chat. `None` if the chat is not subscribed.
    pub fn set_paused(&mut self, target: &ChatTarget, paused: bool) -> Result<Option<bool>, BindingError> {
        self.set_flag(target, "paused", Some(paused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    const T0: i64 = 1_764_065_503_000; // 2025-11-25T10:11:43Z

    fn setup() -> (tempfile::TempDir, Arc<ManualClock>, Bindings) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let b = Bindings::open(dir.path(), clock.clone());
        (dir, clock, b)
    }

    fn read(dir: &Path, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    }

    fn tg(chat: &str, thread: i64) -> ChatTarget {
        ChatTarget::new("telegram", chat, thread)
    }

    #[test]
    fn subscribe_writes_one_pending_key_with_the_ttl() {
        let (dir, _clock, mut b) = setup();
        let k = b.request_key(&tg("123", 0)).unwrap();
        assert_eq!(k.key.len(), 16);
        assert!(k.key.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!k.reused);
        assert_eq!(k.expires_at_ms, T0 + 600_000);
        let doc = read(dir.path(), PENDING_FILE);
        let m = doc.as_object().unwrap();
        assert_eq!(m.len(), 1);
        let e = &m[&k.key];
        assert_eq!(e["chat_id"], "123");
        assert_eq!(e["thread_id"], 0);
        assert_eq!(e["platform"], "telegram");
        assert_eq!(e["created_at"].as_f64().unwrap(), T0 as f64 / 1000.0);
    }

    #[test]
    fn a_repeated_subscribe_within_the_ttl_returns_the_same_key() {
        let (dir, clock, mut b) = setup();
        let k1 = b.request_key(&tg("123", 0)).unwrap();
        clock.advance(599_000);
        let k2 = b.request_key(&tg("123", 0)).unwrap();
        assert_eq!(k2.key, k1.key);
        assert!(k2.reused);
        assert_eq!(k2.expires_at_ms, k1.expires_at_ms);
        // Another topic of the same chat gets its own key.
        let k3 = b.request_key(&tg("123", 7)).unwrap();
        assert_ne!(k3.key, k1.key);
        // After expiry a new key replaces the old one.
        clock.advance(2_000);
        let k4 = b.request_key(&tg("123", 0)).unwrap();
        assert_ne!(k4.key, k1.key);
        assert!(!read(dir.path(), PENDING_FILE).as_object().unwrap().contains_key(&k1.key));
    }

    #[test]
    fn bind_authorizes_subscribes_and_consumes_the_key() {
        let (dir, clock, mut b) = setup();
        let target = tg("-100555", 42);
        let k = b.request_key(&target).unwrap();
        assert_eq!(b.view(&target), ChatView::default());
        clock.advance(600_000); // exactly the TTL: still valid
        assert_eq!(b.bind(&k.key).unwrap(), target);
        assert_eq!(b.view(&target), ChatView { authorized: true, subscribed: true, verbose: false, paused: false });
        assert!(matches!(b.bind(&k.key), Err(BindingError::InvalidKey)), "single use");
        let auth = read(dir.path(), AUTHORIZED_FILE);
        assert_eq!(auth["-100555:42"]["key_used"], k.key.as_str());
        assert_eq!(auth["-100555:42"]["thread_id"], 42);
        let subs = read(dir.path(), SUBSCRIBERS_FILE);
        assert_eq!(subs["-100555:42"]["subscribed"], true);
        assert_eq!(subs["-100555:42"]["subscribed_at"], "2025-11-25T10:21:43Z");
        assert!(read(dir.path(), PENDING_FILE).as_object().unwrap().is_empty());
    }

    #[test]
    fn an_expired_or_unknown_key_is_invalid() {
        let (_dir, clock, mut b) = setup();
        let k = b.request_key(&tg("1", 0)).unwrap();
        clock.advance(600_001);
        let e = b.bind(&k.key).unwrap_err();
        assert!(matches!(e, BindingError::InvalidKey));
        assert_eq!(e.code(), "invalid_key");
        assert_eq!(e.to_string(), "key not found or expired");
        assert!(matches!(b.bind("nope"), Err(BindingError::InvalidKey)));
        assert!(!b.is_authorized(&tg("1", 0)));
    }

    #[test]
    fn topics_are_authorized_separately() {
        let (_dir, _clock, mut b) = setup();
        let k = b.request_key(&tg("-100777", 42)).unwrap();
        b.bind(&k.key).unwrap();
        assert!(b.is_authorized(&tg("-100777", 42)));
        assert!(!b.is_authorized(&tg("-100777", 43)));
        assert!(!b.is_authorized(&tg("-100777", 0)));
        assert!(!b.is_authorized(&ChatTarget::new("discord", "-100777", 42)));
    }

    #[test]
    fn revoke_stops_only_that_topic() {
        let (_dir, _clock, mut b) = setup();
        for t in [42, 43] {
            let k = b.request_key(&tg("-100777", t)).unwrap();
            b.bind(&k.key).unwrap();
        }
        assert!(b.revoke(&tg("-100777", 42)).unwrap());
        assert_eq!(b.view(&tg("-100777", 42)), ChatView::default());
        assert!(b.view(&tg("-100777", 43)).authorized && b.view(&tg("-100777", 43)).subscribed);
        assert!(!b.revoke(&tg("-100777", 42)).unwrap());
        let chats = b.chats("telegram");
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0].0, tg("-100777", 43));
    }

    #[test]
    fn verbose_pause_and_resubscribe() {
        let (_dir, _clock, mut b) = setup();
        let t = tg("9", 0);
        assert_eq!(b.set_verbose(&t, None).unwrap(), None, "not subscribed");
        assert!(!b.subscribe(&t, "DM").unwrap(), "must pair first");
        let k = b.request_key(&t).unwrap();
        b.bind(&k.key).unwrap();
        assert_eq!(b.set_verbose(&t, None).unwrap(), Some(true));
        assert_eq!(b.set_verbose(&t, None).unwrap(), Some(false));
        assert_eq!(b.set_verbose(&t, Some(true)).unwrap(), Some(true));
        assert_eq!(b.set_paused(&t, true).unwrap(), Some(true));
        assert!(b.view(&t).paused);
        // Re-subscribing keeps verbose, clears pause, records the title.
        assert!(b.subscribe(&t, "My DM").unwrap());
        assert_eq!(b.view(&t), ChatView { authorized: true, subscribed: true, verbose: true, paused: false });
    }

    #[test]
    fn reject_and_list_pending() {
        let (_dir, clock, mut b) = setup();
        let k1 = b.request_key(&tg("1", 0)).unwrap();
        clock.advance(1000);
        let k2 = b.request_key(&tg("2", 0)).unwrap();
        let listed = b.list_pending();
        assert_eq!(listed.iter().map(|(k, _, _)| k.clone()).collect::<Vec<_>>(), vec![k2.key.clone(), k1.key.clone()]);
        assert_eq!(listed[0].1, tg("2", 0));
        assert!(b.reject(&k1.key).unwrap());
        assert!(!b.reject(&k1.key).unwrap());
        assert!(matches!(b.bind(&k1.key), Err(BindingError::InvalidKey)));
        assert_eq!(b.list_pending().len(), 1);
    }

    #[test]
    fn state_survives_reopen_and_is_shared_through_the_files() {
        let (dir, clock, mut bridge) = setup();
        let t = tg("5", 0);
        let k = bridge.request_key(&t).unwrap();
        // "The daemon" binds with its own instance.
        let mut daemon = Bindings::open(dir.path(), clock.clone());
        daemon.bind(&k.key).unwrap();
        assert!(!bridge.is_authorized(&t), "stale until reload");
        bridge.reload();
        assert!(bridge.is_authorized(&t));
        let reopened = Bindings::open(dir.path(), clock);
        assert_eq!(reopened.view(&t), ChatView { authorized: true, subscribed: true, verbose: false, paused: false });
    }

    #[test]
    fn reads_python_written_files_leniently_and_keeps_unknown_keys() {
        let (dir, clock, _) = setup();
        let now = T0 as f64 / 1000.0;
        std::fs::write(
            dir.path().join(AUTHORIZED_FILE),
            serde_json::to_vec_pretty(&json!({
                "111": {"chat_id": "111", "thread_id": 0, "platform": "", "authorized_at": now, "key_used": "k"},
                "222:5": {"chat_id": "222", "thread_id": 5, "platform": "telegram", "authorized_at": now, "key_used": "k", "future_key": [1, 2]},
                "333": {"chat_id": "333", "thread_id": 0, "platform": "telegram", "authorized_at": now, "key_used": "k"}
            }))
            .unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(SUBSCRIBERS_FILE),
            serde_json::to_vec(&json!({
                "111": {"subscribed": true, "verbose": true, "subscribed_at": "2025-01-01T00:00:00Z", "chat_title": ""},
                "222:5": {"subscribed": "true", "thread_id": "5", "platform": "telegram", "custom": "x"},
                "333": {"subscribed": "false", "verbose": "false", "thread_id": "oops"},
                "444": {"subscribed": true, "verbose": true, "platform": "telegram"}
            }))
            .unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(PENDING_FILE),
            serde_json::to_vec(&json!({
                "fresh": {"chat_id": "chat-1", "thread_id": 9, "platform": "telegram", "created_at": now},
                "stale": {"chat_id": "old", "thread_id": 0, "platform": "telegram", "created_at": now - 1200.0}
            }))
            .unwrap(),
        )
        .unwrap();
        let mut b = Bindings::open(dir.path(), clock);
        let views: Vec<(String, ChatView)> = b.chats("telegram").into_iter().map(|(t, v)| (t.chat_key(), v)).collect();
        assert_eq!(
            views,
            vec![
                ("111".into(), ChatView { authorized: true, subscribed: true, verbose: true, paused: false }),
                ("222:5".into(), ChatView { authorized: true, subscribed: true, verbose: false, paused: false }),
                ("333".into(), ChatView { authorized: true, subscribed: false, verbose: false, paused: false }),
                ("444".into(), ChatView { authorized: false, subscribed: true, verbose: true, paused: false }),
            ]
        );
        assert_eq!(b.list_pending().len(), 1);
        assert_eq!(b.bind("fresh").unwrap(), tg("chat-1", 9));
        b.set_verbose(&tg("222", 5), Some(true)).unwrap();
        let subs = read(dir.path(), SUBSCRIBERS_FILE);
        assert_eq!(subs["222:5"]["custom"], "x");
        assert_eq!(subs["222:5"]["verbose"], true);
        assert_eq!(read(dir.path(), AUTHORIZED_FILE)["222:5"]["future_key"], json!([1, 2]));
    }

    #[test]
    fn an_unreadable_file_counts_as_empty_and_is_kept_aside() {
        let (dir, clock, _) = setup();
        std::fs::write(dir.path().join(AUTHORIZED_FILE), b"{not json").unwrap();
        let mut b = Bindings::open(dir.path(), clock);
        assert!(!b.is_authorized(&tg("1", 0)));
        let k = b.request_key(&tg("1", 0)).unwrap();
        b.bind(&k.key).unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("im_authorized_chats.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{not json");
    }
}
