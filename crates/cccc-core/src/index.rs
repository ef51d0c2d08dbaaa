//! The in-memory index over one group's ledger, built at open and kept current on append.
//!
//! It holds only what the semantics query, in compact form (about 60 bytes an event plus the
//! recipients of messages), so reading an inbox, checking an obligation, resolving an id prefix
//! or replaying a `client_id` never rescans the ledger file:
//!
//! * every event: id (as a `u128`), timestamp, file position, kind and author;
//! * messages (`chat.message`, `system.notify`): canonical recipients, priority, reply_required,
//!   notify target, with a running maximum of timestamps so "everything after cursor ts" starts
//!   with a binary search;
//! * acks `(actor, message)` and replies `(replier, original)`; a prefix id in a `chat.ack` written
//!   by the reference is resolved here, so prefix acks count (the safe fix of quirk §8.1);
//! * `(by, client_id)` → event, for idempotent sends across the whole history, not just the last
//!   800 lines;
//! * `chat.read` records, so read cursors can be recovered from the ledger if the cursor file lost
//!   an update in a crash.

use cccc_proto::Event;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// An interned string (actor ids, recipient tokens, principals, kinds).
pub type Sym = u32;

#[derive(Default, Debug)]
pub struct Interner {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, Sym>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }
    pub fn name(&self, sym: Sym) -> &str {
        &self.names[sym as usize]
    }
}

/// Where an event's line lives: a sealed segment number or the active file, and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub off: u64,
    pub len: u32,
}

impl Loc {
    pub const ACTIVE: Loc = Loc { seg: u32::MAX, off: 0, len: 0 };
    pub fn segment(n: u32) -> Loc {
        Loc { seg: n, off: 0, len: 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ChatMessage,
    SystemNotify,
    ChatAck,
    ChatRead,
    NotifyAck,
    Other,
}

/// What the semantics need of a `chat.message` or `system.notify`.
#[derive(Clone, Debug)]
pub struct MsgInfo {
    pub to: Box<[Sym]>,
    pub attention: bool,
    pub reply_required: bool,
    /// `system.notify` target (`None` = everyone).
    pub target: Option<Sym>,
    /// Cross-group relay copies (`dst_group_id` set) carry no local obligations.
    pub dst_group: bool,
    /// `system.notify` kind (e.g. `nudge`), else 0-length.
    pub notify_kind: Option<Sym>,
}

#[derive(Clone, Debug)]
pub struct Entry {
    /// The id as a number when it is 32 hex digits; otherwise see `Index::odd_ids`.
    pub id: u128,
    pub ts: i64,
    pub loc: Loc,
    pub kind: Kind,
    pub kind_sym: Sym,
    pub by: Sym,
    pub msg: Option<Box<MsgInfo>>,
}

/// A `chat.read` record: who, which message, and the read event itself.
#[derive(Clone, Copy, Debug)]
pub struct ReadRec {
    pub actor: Sym,
    pub target: u32,
}

#[derive(Default, Debug)]
pub struct Index {
    pub entries: Vec<Entry>,
    pub syms: Interner,
    by_id: HashMap<u128, u32>,
    odd_ids: HashMap<Box<str>, u32>,
    /// Entry positions of chat.message and system.notify, in ledger order.
    pub msgs: Vec<u32>,
    /// `msg_max_ts[i]` = max ts of `msgs[..=i]`.
    msg_max_ts: Vec<i64>,
    acks: HashMap<(Sym, u32), u32>,
    notify_acks: HashMap<(Sym, u32), u32>,
    replies: HashSet<(Sym, u32)>,
    client_ids: HashMap<(Sym, Box<str>), u32>,
    pub reads: Vec<ReadRec>,
}

fn parse_id(s: &str) -> Option<u128> {
    if cccc_proto::is_full_event_id(s) { u128::from_str_radix(s, 16).ok() } else { None }
}

impl Index {
    /// Add an event (in ledger order) and return its position.
    pub fn add(&mut self, ev: &Event, ts: i64, loc: Loc) -> u32 {
        let pos = self.entries.len() as u32;
        let id = match parse_id(&ev.id) {
            Some(n) => {
                self.by_id.entry(n).or_insert(pos);
                n
            }
            None => {
                if !ev.id.is_empty() {
                    self.odd_ids.entry(ev.id.as_str().into()).or_insert(pos);
                }
                0
            }
        };
        let kind = match ev.kind.as_str() {
            "chat.message" => Kind::ChatMessage,
            "system.notify" => Kind::SystemNotify,
            "chat.ack" => Kind::ChatAck,
            "chat.read" => Kind::ChatRead,
            "system.notify_ack" => Kind::NotifyAck,
            _ => Kind::Other,
        };
        let kind_sym = self.syms.intern(&ev.kind);
        let by = self.syms.intern(&ev.by);
        let d = &ev.data;
        let dstr = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
        let mut msg = None;
        match kind {
            Kind::ChatMessage => {
                let to: Box<[Sym]> = match d.get("to") {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(|s| self.syms.intern(s)).collect(),
                    Some(Value::String(s)) if !s.is_empty() => Box::new([self.syms.intern(s)]),
                    _ => Box::new([]),
                };
                msg = Some(Box::new(MsgInfo {
                    to,
                    attention: dstr("priority") == "attention",
                    reply_required: d.get("reply_required").and_then(Value::as_bool).unwrap_or(false),
                    target: None,
                    dst_group: !dstr("dst_group_id").is_empty(),
                    notify_kind: None,
                }));
                let reply_to = dstr("reply_to");
                if !reply_to.is_empty()
                    && let Some(orig) = self.resolve(reply_to)
                {
                    self.replies.insert((by, orig));
                }
                let client_id = dstr("client_id");
                if !client_id.is_empty() {
                    self.client_ids.entry((by, client_id.into())).or_insert(pos);
                }
            }
            Kind::SystemNotify => {
                let target = dstr("target_actor_id");
                let nk = dstr("kind");
                msg = Some(Box::new(MsgInfo {
                    to: Box::new([]),
                    attention: false,
                    reply_required: false,
                    target: if target.is_empty() { None } else { Some(self.syms.intern(target)) },
                    dst_group: false,
                    notify_kind: if nk.is_empty() { None } else { Some(self.syms.intern(nk)) },
                }));
            }
            Kind::ChatAck => {
                if let Some(t) = self.resolve(dstr("event_id")) {
                    let actor = self.syms.intern(dstr("actor_id"));
                    self.acks.entry((actor, t)).or_insert(pos);
                }
            }
            Kind::NotifyAck => {
                if let Some(t) = self.resolve(dstr("notify_event_id")) {
                    let actor = self.syms.intern(dstr("actor_id"));
                    self.notify_acks.entry((actor, t)).or_insert(pos);
                }
            }
            Kind::ChatRead => {
                if let Some(t) = self.resolve(dstr("event_id")) {
                    let actor = self.syms.intern(dstr("actor_id"));
                    self.reads.push(ReadRec { actor, target: t });
                }
            }
            Kind::Other => {}
        }
        let is_msg = msg.is_some();
        self.entries.push(Entry { id, ts, loc, kind, kind_sym, by, msg });
        if is_msg {
            let prev = self.msg_max_ts.last().copied().unwrap_or(i64::MIN);
            self.msgs.push(pos);
            self.msg_max_ts.push(prev.max(ts));
        }
        pos
    }

    /// Resolve a full id or a unique prefix (of at least 1 hex digit) to a position.
    /// An ambiguous prefix resolves to nothing, as in the reference.
    pub fn resolve(&self, id: &str) -> Option<u32> {
        let id = id.trim();
        if id.is_empty() {
            return None;
        }
        if let Some(n) = parse_id(id) {
            return self.by_id.get(&n).copied();
        }
        if let Some(&p) = self.odd_ids.get(id) {
            return Some(p);
        }
        if id.len() >= 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let shift = 4 * (32 - id.len() as u32);
        let want = u128::from_str_radix(id, 16).ok()?;
        let mut found = None;
        for (pos, e) in self.entries.iter().enumerate().rev() {
            if e.id != 0 && e.id >> shift == want {
                if found.is_some() {
                    return None;
                }
                found = Some(pos as u32);
            }
        }
        found
    }

    /// The full id of the event at `pos`.
    pub fn id_of(&self, pos: u32) -> String {
        let e = &self.entries[pos as usize];
        if e.id != 0 {
            return format!("{:032x}", e.id);
        }
        self.odd_ids.iter().find(|(_, p)| **p == pos).map(|(k, _)| k.to_string()).unwrap_or_default()
    }

    pub fn is_acked_by(&self, actor: &str, pos: u32) -> bool {
        self.ack_of(actor, pos).is_some()
    }
    /// The `chat.ack` by `actor` for the message at `pos`, if any.
    pub fn ack_of(&self, actor: &str, pos: u32) -> Option<u32> {
        self.acks.get(&(self.syms.get(actor)?, pos)).copied()
    }
    /// The `system.notify_ack` by `actor` for the notify at `pos`, if any.
    pub fn notify_ack_of(&self, actor: &str, pos: u32) -> Option<u32> {
        self.notify_acks.get(&(self.syms.get(actor)?, pos)).copied()
    }
    pub fn is_replied_by(&self, actor: &str, pos: u32) -> bool {
        self.syms.get(actor).is_some_and(|s| self.replies.contains(&(s, pos)))
    }
    pub fn client_id_event(&self, by: &str, client_id: &str) -> Option<u32> {
        let s = self.syms.get(by)?;
        self.client_ids.get(&(s, Box::<str>::from(client_id))).copied()
    }

    /// Index into `msgs` of the first message that could be newer than `ts` (all before it have
    /// a timestamp ≤ `ts`).
    pub fn first_msg_after(&self, ts: i64) -> usize {
        self.msg_max_ts.partition_point(|&m| m <= ts)
    }

    pub fn sym_name(&self, s: Sym) -> &str {
        self.syms.name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, kind: &str, by: &str, data: Value) -> Event {
        Event { v: 1, id: id.into(), ts: String::new(), kind: kind.into(), group_id: "g".into(), scope_key: String::new(), by: by.into(), data }
    }

    #[test]
    fn prefix_resolution_acks_and_replies() {
        let mut ix = Index::default();
        let a = "15e1b1fcab1b40e88a7c1bf7bf4637a9";
        let b = "15e1b1fdab1b40e88a7c1bf7bf4637a9";
        ix.add(&ev(a, "chat.message", "user", json!({"to": ["peer-a"], "priority": "attention"})), 1, Loc::ACTIVE);
        ix.add(&ev(b, "chat.message", "user", json!({"to": "peer-a"})), 2, Loc::ACTIVE);
        assert_eq!(ix.resolve(a), Some(0));
        assert_eq!(ix.resolve("15e1b1fc"), Some(0));
        assert_eq!(ix.resolve("15e1b1f"), None, "ambiguous");
        assert_eq!(ix.resolve("zz"), None);
        assert_eq!(ix.id_of(1), b);
        assert_eq!(ix.entries[1].msg.as_ref().unwrap().to.len(), 1, "a string `to` is one recipient");
        // A reference-style prefix ack counts for the full message.
        ix.add(&ev("00000000000000000000000000000003", "chat.ack", "peer-a", json!({"actor_id": "peer-a", "event_id": "15e1b1fc"})), 3, Loc::ACTIVE);
        assert!(ix.is_acked_by("peer-a", 0));
        assert!(!ix.is_acked_by("peer-a", 1));
        ix.add(&ev("00000000000000000000000000000004", "chat.message", "peer-a", json!({"reply_to": b, "client_id": "c1"})), 4, Loc::ACTIVE);
        assert!(ix.is_replied_by("peer-a", 1));
        assert_eq!(ix.client_id_event("peer-a", "c1"), Some(3));
        assert_eq!(ix.client_id_event("user", "c1"), None);
    }

    #[test]
    fn first_msg_after_uses_running_max() {
        let mut ix = Index::default();
        for (i, ts) in [10, 30, 20, 40].iter().enumerate() {
            ix.add(&ev(&format!("{:032x}", i + 1), "chat.message", "user", json!({})), *ts, Loc::ACTIVE);
        }
        assert_eq!(ix.first_msg_after(5), 0);
        assert_eq!(ix.first_msg_after(10), 1);
        assert_eq!(ix.first_msg_after(25), 1, "msg at ts 20 comes after the one at 30");
        assert_eq!(ix.first_msg_after(40), 4);
    }
}
