//! The bridge boundary between the CCCC core and chat platforms.
//!
//! Placeholder: the Telegram/Discord bridge issues fill this crate with outbound rendering,
//! lossless chunking, the durable outbox, inbound command parsing and the event <-> platform
//! message map. Platform crates will depend on this crate only, never on the ledger.
