//! The synchronous core of CCCC: everything about a home that does not need a socket.
//!
//! * [`home`]: `CCCC_HOME` paths, `registry.json`, `active.json`, atomic writes.
//! * [`yaml`], [`group`]: the group document, read and written compatibly with the reference.
//! * [`ledger`], [`index`]: the durable append-only ledger with group commit, and the index that
//!   keeps queries off the file.
//! * [`cursors`]: forward-only read cursors.
//! * [`semantics`]: recipients, visibility, obligations: pure functions over the index.
//! * [`store`], [`ops`]: groups opened in memory and the IPC operations applied to them.
//!
//! No tokio here. The daemon calls into this crate from blocking threads and does the IO of
//! sockets and streams itself.

pub mod automation;
pub mod cursors;
pub mod group;
pub mod home;
pub mod index;
pub mod ledger;
pub mod ops;
pub mod pty;
pub mod runtime;
pub mod semantics;
pub mod store;
pub mod yaml;

pub use cccc_proto::ErrorBody;

/// Result type of operations: the error is the IPC error body.
pub type OpResult<T> = Result<T, ErrorBody>;

/// Build an error body.
pub fn err(code: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}
