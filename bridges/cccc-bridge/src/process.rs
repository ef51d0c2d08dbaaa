//! The shell of a bridge process, shared by every platform: arguments, the credential lock,
//! signals, exit codes. A platform crate adds only how to build its [`Platform`] (the
//! `__im-bridge` contract is the daemon's, so it must not drift between platforms).
//!
//! The daemon starts `<cccc> __im-bridge --platform P --token-env VAR [--api-url URL]` with
//! `CCCC_HOME` set, and reads the exit code:
//!
//! | exit code | meaning | the supervisor |
//! |---|---|---|
//! | 0 | clean stop (SIGTERM / SIGINT) | restarts only if still wanted |
//! | 1 | other fatal error | restarts with backoff |
//! | 2 | usage or configuration error (bad arguments, token variable unset, bad URL) | backoff |
//! | 3 | another bridge holds this credential's lock | retries every 5 s |
//! | 4 | the credential was rejected; `status.json` says so | parks it until `cccc im start` |

use crate::Platform;
use crate::runner::{self, EnvLookup, RunnerConfig, RunnerError, StopToken};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_LOCKED: i32 = 3;
pub const EXIT_CREDENTIAL: i32 = 4;

fn usage(platform: &str) -> String {
    format!("usage: __im-bridge --platform {platform} --token-env VAR [--api-url URL]")
}

/// Parsed `__im-bridge` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub platform: String,
    pub token_env: String,
    pub api_url: Option<String>,
}

/// Parse `--platform P --token-env VAR [--api-url URL]` (also `--flag=value`) for a bridge of
/// `platform`. The first argument may be the `__im-bridge` subcommand itself.
pub fn parse_args(args: &[String], platform_name: &str) -> Result<Args, String> {
    let usage = usage(platform_name);
    let mut platform = None;
    let mut token_env = None;
    let mut api_url = None;
    let mut it = args.iter().map(String::as_str).skip_while(|a| *a == "__im-bridge").peekable();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let mut value = || inline.clone().or_else(|| it.next().map(str::to_string)).ok_or_else(|| format!("{flag} needs a value\n{usage}"));
        match flag {
            "--platform" => platform = Some(value()?),
            "--token-env" => token_env = Some(value()?),
            "--api-url" => api_url = Some(value()?).filter(|u: &String| !u.trim().is_empty()),
            "-h" | "--help" => return Err(usage),
            other => return Err(format!("unexpected argument {other:?}\n{usage}")),
        }
    }
    let platform = platform.ok_or_else(|| format!("missing --platform\n{usage}"))?;
    if platform != platform_name {
        return Err(format!("unsupported platform {platform:?} (this bridge is {platform_name})\n{usage}"));
    }
    let token_env = token_env.ok_or_else(|| format!("missing --token-env\n{usage}"))?;
    Ok(Args { platform, token_env, api_url })
}

/// Everything one bridge run needs (the process entry fills it from arguments and the
/// environment; tests fill it directly).
#[derive(Clone)]
pub struct BridgeOptions {
    /// `CCCC_HOME`.
    pub home: PathBuf,
    /// The bot token (never logged).
    pub token: String,
    /// API base URL (a self-hosted Bot API, or a test fake).
    pub api_url: Option<String>,
    /// Resolves the `bot_token_env` names found in group configs.
    pub env: EnvLookup,
    /// How long one poll for updates may wait (s).
    pub poll_timeout_secs: u32,
    pub scan_every: Duration,
    pub pass_every: Duration,
    pub status_every: Duration,
    /// A processing marker without a reply is resolved after this long (30 min).
    pub marker_timeout: Duration,
}

impl BridgeOptions {
    pub fn new(home: impl Into<PathBuf>, token: impl Into<String>) -> BridgeOptions {
        BridgeOptions {
            home: home.into(),
            token: token.into(),
            api_url: None,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
            poll_timeout_secs: 10,
            scan_every: Duration::from_secs(5),
            pass_every: Duration::from_secs(1),
            status_every: Duration::from_secs(3),
            marker_timeout: runner::MARKER_TIMEOUT,
        }
    }

    /// The runner configuration of these options for `platform`.
    pub fn runner_config(&self, platform: &str) -> RunnerConfig {
        let mut cfg = RunnerConfig::new(&self.home, runner::credential_key(platform, &self.token));
        cfg.env = self.env.clone();
        cfg.scan_every = self.scan_every;
        cfg.pass_every = self.pass_every;
        cfg.status_every = self.status_every;
        cfg.marker_timeout = self.marker_timeout;
        cfg
    }
}

/// `$CCCC_HOME/locks/im_bridge_<platform>_<cred>.lock`.
pub fn lock_path(home: &Path, platform: &str, cred: &str) -> PathBuf {
    home.join("locks").join(format!("im_bridge_{platform}_{cred}.lock"))
}

/// The credential lock, held while this value lives.
pub struct CredentialLock {
    _file: std::fs::File,
}

/// Take the credential lock; `Err(Ok(pid))` when another process holds it (its pid if it
/// wrote one), `Err(Err(message))` when the lock file cannot be used.
pub fn acquire_lock(path: &Path) -> Result<CredentialLock, Result<Option<u32>, String>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Err(format!("cannot open {}: {e}", path.display())))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            return Err(Ok(s.trim().parse().ok()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Err(format!("cannot lock {}: {e}", path.display()))),
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "{}", std::process::id());
    let _ = f.flush();
    Ok(CredentialLock { _file: f })
}

/// Run one bridge until `stop`: take the lock, build the platform with `make` (an error
/// there is a configuration error), run the shared runner, map the outcome to an exit code.
/// The token is redacted from everything printed.
pub async fn run_bridge<P: Platform>(
    platform_name: &str,
    opts: &BridgeOptions,
    stop: StopToken,
    make: impl FnOnce(&BridgeOptions, PathBuf) -> Result<P, String>,
) -> i32 {
    let cred = runner::credential_key(platform_name, &opts.token);
    let _lock = match acquire_lock(&lock_path(&opts.home, platform_name, &cred)) {
        Ok(l) => l,
        Err(Ok(pid)) => {
            let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            eprintln!("Another {platform_name} bridge is already running for this credential (pid={pid})");
            return EXIT_LOCKED;
        }
        Err(Err(e)) => {
            eprintln!("{e}");
            return EXIT_FATAL;
        }
    };
    let cfg = opts.runner_config(platform_name);
    let state_dir = cfg.cred_dir(platform_name);
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        eprintln!("cannot create {}: {e}", state_dir.display());
        return EXIT_FATAL;
    }
    let redact = |m: &str| m.replace(&opts.token, "<redacted>");
    let platform = match make(opts, state_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", redact(&e));
            return EXIT_USAGE;
        }
    };
    match runner::run(Arc::new(platform), cfg, stop).await {
        Ok(()) => EXIT_OK,
        Err(RunnerError::CredentialRejected(m)) => {
            eprintln!("{platform_name} credential rejected: {}", redact(&m));
            EXIT_CREDENTIAL
        }
        Err(RunnerError::Fatal(m)) => {
            eprintln!("{platform_name} bridge failed: {}", redact(&m));
            EXIT_FATAL
        }
    }
}

/// The process entry of a platform: `args` are the arguments after the binary name (starting
/// at `__im-bridge` or at the first flag). Sets up logging to stderr, reads the token from the
/// variable `--token-env` names, runs `body` on a two-thread runtime until SIGTERM/SIGINT, and
/// returns the exit code.
pub fn main<F, Fut>(platform_name: &str, args: &[String], body: F) -> i32
where
    F: FnOnce(BridgeOptions, StopToken) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let args = match parse_args(args, platform_name) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    let token = match std::env::var(&args.token_env) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            eprintln!("environment variable {} is not set (it must hold the {platform_name} bot token)", args.token_env);
            return EXIT_USAGE;
        }
    };
    let home = cccc_core::home::Home::resolve().root().to_path_buf();
    let mut opts = BridgeOptions::new(home, token);
    opts.api_url = args.api_url;
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return EXIT_FATAL;
        }
    };
    rt.block_on(async move {
        let stop = StopToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping on signal");
            signals.stop();
        });
        body(opts, stop).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_are_parsed_strictly() {
        let a = parse_args(&v(&["__im-bridge", "--platform", "telegram", "--token-env", "TG", "--api-url", "http://127.0.0.1:1/"]), "telegram").unwrap();
        assert_eq!(a, Args { platform: "telegram".into(), token_env: "TG".into(), api_url: Some("http://127.0.0.1:1/".into()) });
        let a = parse_args(&v(&["--platform=discord", "--token-env=DC"]), "discord").unwrap();
        assert_eq!(a.api_url, None);
        assert!(parse_args(&v(&["--platform", "discord", "--token-env", "X"]), "telegram").is_err());
        assert!(parse_args(&v(&["--platform", "telegram"]), "telegram").is_err());
        assert!(parse_args(&v(&["--platform", "telegram", "--token-env"]), "telegram").is_err());
        assert!(parse_args(&v(&["--platform", "telegram", "--token-env", "X", "--bogus"]), "telegram").is_err());
    }

    #[test]
    fn missing_token_variable_is_a_usage_error() {
        let body = |_: BridgeOptions, _: StopToken| async { EXIT_OK };
        assert_eq!(main("telegram", &v(&["--platform", "telegram", "--token-env", "CCCC_TEST_SURELY_UNSET_VAR"]), body), EXIT_USAGE);
        assert_eq!(main("telegram", &v(&["--platform", "irc", "--token-env", "X"]), body), EXIT_USAGE);
    }

    #[test]
    fn a_second_lock_on_one_credential_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "discord", "abc");
        let held = acquire_lock(&path).ok().expect("first lock");
        match acquire_lock(&path) {
            Err(Ok(pid)) => assert_eq!(pid, Some(std::process::id())),
            _ => panic!("a second lock must be refused"),
        }
        drop(held);
        assert!(acquire_lock(&path).is_ok(), "free again once the holder is gone");
    }
}
