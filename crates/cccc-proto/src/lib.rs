//! Wire and disk types of CCCC IPC v1 and the ledger.
//!
//! Everything here is pure data: no IO, no clocks other than [`ts::now`]. The types are shaped
//! so that what we write is byte-compatible with the Python reference (CCCC 0.4.32):
//!
//! * JSON is written the way Python's `json.dumps(obj, ensure_ascii=False)` writes it, with
//!   `", "` and `": "` separators ([`json::to_py_string`]). Key order is preserved everywhere
//!   (serde_json's `preserve_order`), because the ledger envelope and `chat.message` data have a
//!   fixed key order on disk.
//! * Timestamps are RFC 3339 UTC with a `Z` suffix and microseconds, with the fraction omitted
//!   when it is zero, exactly like Python's `isoformat()` ([`ts`]).
//! * Event ids are 32 lowercase hex digits (a UUID4 without dashes).
//!
//! Any change to these types is a protocol change; the snapshot tests in this crate make such a
//! change deliberate.

pub mod envelope;
pub mod event;
pub mod json;
pub mod ts;

pub use envelope::{ErrorBody, Request, Response};
pub use event::{ChatMessageData, Event};

/// Version string reported by `ping` and written to `ccccd.addr.json`.
///
/// We report the reference version we are compatible with, because the reference CLI and SDK
/// restart a daemon whose version differs from their own.
pub const COMPAT_VERSION: &str = "0.4.32";

/// IPC protocol version.
pub const IPC_V: u64 = 1;

/// A new event id: a random UUID4 as 32 lowercase hex digits.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new group id: `g_` + the first 12 hex digits of a random UUID4.
pub fn new_group_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("g_{}", &hex[..12])
}

/// Is `s` a plausible full event id (32 lowercase hex)?
pub fn is_full_event_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
