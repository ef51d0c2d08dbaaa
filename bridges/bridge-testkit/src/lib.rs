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
//! * [`discord`]: a fake Discord ([`discord::FakeDiscord`]): REST API v10 and the Gateway
//!   (websocket: HELLO, IDENTIFY with intent checks, READY, heartbeats, RESUME with replay,
//!   op 7 / op 9 / close codes) with the same synchronous control API: guilds, channels, humans
//!   who post, reply, press buttons and submit modals; observation of messages (components,
//!   `allowed_mentions`, nonces, pings), interaction responses and every request; faults (429
//!   with Discord's body and headers, 5xx, 401/403, dropped or closed gateway connections).
//!
//! Each server runs on its own thread with its own tokio runtime, so tests need no async
//! runtime; the bridge under test may use any runtime it likes.
//!
//! There is also a small binary, `fake-telegram`, that runs the fake standalone for manual
//! experiments (`cargo run -p bridge-testkit --bin fake-telegram`).

pub mod discord;
pub mod telegram;
mod wait;

pub use discord::FakeDiscord;
