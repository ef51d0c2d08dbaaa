//! Test kit for the CCCC chat bridges: faithful fake chat-platform servers that run on
//! `127.0.0.1` inside the test process, so the real bridge code (its HTTP client, retries,
//! pacing, parsing) is exercised end to end with no network.
//!
//! * [`telegram`]: a fake Telegram Bot API server ([`telegram::FakeTelegram`]) with a
//!   synchronous control API for plain `#[test]` functions: create chats and users, act as a
//!   human (send, reply, edit, press buttons, upload, kick the bot), observe what the bot sent
//!   (text, parse mode, keyboards, edit history, replies, topics), inject faults (429 with
//!   `retry_after`, 5xx, timeouts, lost responses, 401/403/409) and optional flood control.
//!
//! The server runs on its own thread with its own tokio runtime, so tests need no async
//! runtime; the bridge under test may use any runtime it likes.
//!
//! There is also a small binary, `fake-telegram`, that runs the fake standalone for manual
//! experiments (`cargo run -p bridge-testkit --bin fake-telegram`).

pub mod telegram;
