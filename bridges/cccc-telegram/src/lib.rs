//! The CCCC Telegram bridge process.
//!
//! One process serves one bot credential and every group configured with it. The shared
//! runner ([`cccc_bridge::runner`]) does the platform-neutral work and
//! [`cccc_bridge::process`] the process shell (arguments, credential lock, signals, exit
//! codes); this crate adds only the Bot API transport ([`platform`]). The daemon starts it as
//!
//! ```text
//! <cccc binary> __im-bridge --platform telegram --token-env VAR [--api-url URL]
//! ```
//!
//! with `CCCC_HOME` in the environment, and the binary's `__im-bridge` dispatch calls
//! [`run_bridge_process`]. Exit codes are [`cccc_bridge::process`]'s.
//!
//! Files (`<cred>` = [`cccc_bridge::runner::credential_key`] of the token):
//!
//! * `$CCCC_HOME/locks/im_bridge_telegram_<cred>.lock`: flock held for the process lifetime,
//!   containing its pid;
//! * `$CCCC_HOME/state/im/telegram_<cred>/`: `offset.json` (getUpdates offset), `status.json`
//!   (bridge status), `im_pending_keys.json` (pairing keys of unbound chats);
//! * per group, `groups/<gid>/state/`: `im_outbox.json`, `im_message_map.json` (ours), and the
//!   reference's `im_authorized_chats.json` / `im_subscribers.json` (shared with the daemon).

pub mod platform;

pub use cccc_bridge::process::{BridgeOptions, EXIT_CREDENTIAL, EXIT_FATAL, EXIT_LOCKED, EXIT_OK, EXIT_USAGE};
use cccc_bridge::runner::{self, StopToken};
pub use platform::{TelegramPlatform, TgPiece};
use std::path::PathBuf;

const PLATFORM: &str = "telegram";

/// This credential's key.
pub fn cred(opts: &BridgeOptions) -> String {
    runner::credential_key(PLATFORM, &opts.token)
}

/// `$CCCC_HOME/locks/im_bridge_telegram_<cred>.lock`.
pub fn lock_path(opts: &BridgeOptions) -> PathBuf {
    cccc_bridge::process::lock_path(&opts.home, PLATFORM, &cred(opts))
}

/// `$CCCC_HOME/state/im/telegram_<cred>`.
pub fn state_dir(opts: &BridgeOptions) -> PathBuf {
    runner::credential_dir(&opts.home, PLATFORM, &cred(opts))
}

/// Run one bridge until `stop`; returns the process exit code. Takes the credential lock.
pub async fn run_bridge(opts: BridgeOptions, stop: StopToken) -> i32 {
    cccc_bridge::process::run_bridge(PLATFORM, &opts, stop, |o, state_dir| {
        let mut p = TelegramPlatform::new(&o.token, o.api_url.as_deref(), state_dir)?;
        p.poll_timeout_secs = o.poll_timeout_secs;
        Ok(p)
    })
    .await
}

/// The process entry: `args` are the arguments after the binary name (starting at
/// `__im-bridge` or at the first flag). Blocks until the bridge stops; returns the exit code.
pub fn run_bridge_process(args: &[String]) -> i32 {
    cccc_bridge::process::main(PLATFORM, args, run_bridge)
}
