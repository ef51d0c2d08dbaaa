//! PTY actors: a host process per actor, and the daemon's client for it.
//!
//! An agent CLI runs in a pseudo-terminal whose master side is owned by a small **host**
//! process (`<our binary> __pty-host …`, [`host::main`]), not by the daemon. The host survives a
//! daemon crash or restart, so the agent keeps running and the next daemon reattaches to it
//! through the host's unix socket (`groups/<gid>/state/runners/pty/<actor>.sock`).
//!
//! The host keeps the last bytes of terminal output in a ring buffer (for `terminal_tail` and
//! attach), notices when the application turns bracketed paste on, and records the child's exit
//! status in the runner state file (`<actor>.json`, the reference's file with extra keys) so a
//! crash is visible even if no daemon was running when it happened.
//!
//! Host protocol: one JSON request line per connection, one JSON response line; `attach`
//! then streams raw output bytes until the client closes.

pub mod client;
pub mod host;

/// Environment variable overriding the delay between typing a message and pressing submit.
pub const SUBMIT_DELAY_ENV: &str = "CCCC_PTY_SUBMIT_DELAY_MS";
