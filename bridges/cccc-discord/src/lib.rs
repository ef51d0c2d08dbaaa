//! The CCCC Discord platform: [`DiscordPlatform`] implements [`cccc_bridge::Platform`] with
//! serenity 0.12 (REST routes and models, and the gateway shard), for the shared bridge runner.
//!
//! # Design decisions
//!
//! * **Our own REST execution, serenity's routes** ([`rest`]). serenity's `Http` drops a 429's
//!   `retry_after`, and its ratelimiter (which would otherwise absorb 429s by sleeping inside the
//!   call) also ignores the base-URL override. The ratelimiter is therefore always off, every
//!   request is built by serenity (`Request::build`: route, `Authorization: Bot …`, proxy
//!   rewrite) and sent on the shared `reqwest::Client`, and the answer is classified once into a
//!   [`cccc_bridge::SendFailure`]: 429 → `RetryAfter` with Discord's exact `retry_after`, so the
//!   durable outbox (not a hidden sleep) keeps per-chat FIFO order across restarts. Tests and
//!   production take the same code path.
//! * **Exactly-once sends**: [`Platform::deliver`] passes the outbox's deterministic 25-char
//!   nonce with `enforce_nonce: true`; a resend after a crash within Discord's nonce window
//!   returns the original message instead of posting a second one.
//! * **Nobody is pinged by agent text**: every message carries `allowed_mentions: {parse: []}`
//!   (and the renderer also defuses `@everyone`/`@here`): two independent safeguards.
//! * **Buttons**: an ackable message gets `[Ack]` (`ack:<event_id>`), a `reply_required` one
//!   `[Reply]` (`reply:<event_id>`), on its last part. [`Platform::mark_acked`] swaps the Ack
//!   button for a disabled "✓ Acked by X" (custom id [`ACKED_DATA`]) and keeps the others.
//! * **The 3-second interaction deadline is met by the platform, not the runner**: a component
//!   press is acknowledged at once with a deferred update (type 6, no visible change) inside the
//!   gateway handler, *then* surfaced as [`cccc_bridge::Update::Button`]; the runner's later
//!   [`Platform::answer_button`] text arrives as an ephemeral followup (webhook with the
//!   interaction token, valid 15 min). However slow the daemon is, Discord never shows
//!   "This interaction failed".
//! * **Reply button → modal**: a `reply:<id>` press is answered with a modal (type 9) directly
//!   by the handler (a modal must be the *first* response, so it cannot wait for the runner);
//!   the submitted text comes back as [`cccc_bridge::Update::FormReply`], which the runner
//!   turns into IPC `reply` (this is how an ask is closed from Discord).
//! * **Mentions**: a `<@bot_id>` / `<@!bot_id>` token in inbound text is rewritten to
//!   `@<bot username>`, the form the shared command parser already recognises as addressing
//!   the bot, so no runner change is needed ([`DiscordPlatform::mention_tokens`] is there too).
//! * **Gateway errors are credential errors**: close 4004 → `CredentialRejected("… token …")`,
//!   4014 → `CredentialRejected("MESSAGE_CONTENT intent not enabled …")` from
//!   [`Platform::next_updates`], so the runner parks the credential instead of hot-looping.
//! * **Channel per group**: [`Platform::group_channel`] (for a group whose `im` names a
//!   `guild_id`) finds or creates a text channel named after the group, under an optional
//!   `category`, and renames it when the group's title changes; the runner authorizes it
//!   without a pairing key; Discord normalises text-channel names (lowercase, spaces → `-`), and the
//!   lookup compares normalised names.
//! * A Discord thread is its own channel, so targets always have `thread_id = 0` and
//!   `chat_id` = the channel id.

pub mod platform;
pub mod rest;

pub use platform::{ACKED_DATA, DcPiece, DiscordConfig, DiscordError, DiscordPlatform, normalize_channel_name};

pub use cccc_bridge::process::{BridgeOptions, EXIT_CREDENTIAL, EXIT_FATAL, EXIT_LOCKED, EXIT_OK, EXIT_USAGE};
use cccc_bridge::runner::{self, StopToken};
use std::path::PathBuf;
use std::time::Duration;

const PLATFORM: &str = "discord";

/// `$CCCC_HOME/locks/im_bridge_discord_<cred>.lock`.
pub fn lock_path(opts: &BridgeOptions) -> PathBuf {
    cccc_bridge::process::lock_path(&opts.home, PLATFORM, &runner::credential_key(PLATFORM, &opts.token))
}

/// `$CCCC_HOME/state/im/discord_<cred>`.
pub fn state_dir(opts: &BridgeOptions) -> PathBuf {
    runner::credential_dir(&opts.home, PLATFORM, &runner::credential_key(PLATFORM, &opts.token))
}

/// Run one Discord bridge until `stop`; returns the process exit code. Takes the credential
/// lock. `opts.api_url` overrides the REST base (the gateway URL then comes from that
/// server's `GET /gateway/bot`, which is how tests reach the fake's gateway).
pub async fn run_bridge(opts: BridgeOptions, stop: StopToken) -> i32 {
    cccc_bridge::process::run_bridge(PLATFORM, &opts, stop, |o, _state_dir| {
        let mut cfg = DiscordConfig::new(o.token.clone());
        cfg.api_base = o.api_url.clone();
        cfg.poll_wait = Duration::from_secs(u64::from(o.poll_timeout_secs.max(1)));
        Ok(DiscordPlatform::new(cfg))
    })
    .await
}

/// The process entry of `__im-bridge --platform discord …` (see [`cccc_bridge::process`]).
pub fn run_bridge_process(args: &[String]) -> i32 {
    cccc_bridge::process::main(PLATFORM, args, run_bridge)
}
