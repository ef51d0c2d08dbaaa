//! `cccc daemon start|stop|status|run` and the foreground daemon (`cccc` without arguments).

use crate::cli::DaemonCmd;
use crate::ctx::{CmdResult, Ctx, Fail, envelope};
use crate::daemon_ctl::{self, Stopped};
use crate::output::{outln, print_json, str_of};
use serde_json::{Value, json};

pub fn run(ctx: &Ctx, action: &DaemonCmd) -> CmdResult {
    match action {
        DaemonCmd::Start => start(ctx),
        DaemonCmd::Stop => stop(ctx),
        DaemonCmd::Status => status(ctx),
        DaemonCmd::Run => foreground(ctx),
    }
}

fn start(ctx: &Ctx) -> CmdResult {
    match daemon_ctl::start(&ctx.home) {
        Ok(resp) => {
            if ctx.json {
                print_json(&envelope(&resp));
            } else {
                outln!("ccccd: running");
            }
            Ok(0)
        }
        Err(failure) => {
            failure.report();
            Err(Fail::Exit(1))
        }
    }
}

fn stop(ctx: &Ctx) -> CmdResult {
    let outcome = daemon_ctl::stop(&ctx.home).map_err(|e| Fail::Rejected(e.to_body("shutdown")))?;
    match outcome {
        Stopped::NotRunning => {
            if ctx.json {
                print_json(&json!({"ok": true, "result": {"message": "not running"}}));
            } else {
                outln!("ccccd: not running");
            }
            Ok(0)
        }
        Stopped::Exited(resp) => ctx.finish(resp, |_| outln!("ccccd: shutdown requested")),
        Stopped::StillRunning(resp, pid) => {
            let code = ctx.finish(resp, |_| outln!("ccccd: shutdown requested"))?;
            eprintln!("ccccd: still running 10 s after shutdown (pid {pid}); check {}", ctx.home.log_path().display());
            Ok(code.max(1))
        }
    }
}

fn status(ctx: &Ctx) -> CmdResult {
    match daemon_ctl::ping(&ctx.home) {
        Ok(resp) if resp.ok => {
            if ctx.json {
                print_json(&envelope(&resp));
            } else {
                outln!("ccccd: running {}", pid_version(&resp.result));
            }
            Ok(0)
        }
        other => {
            if ctx.json {
                let body = match other {
                    Ok(resp) => envelope(&resp),
                    Err(e) => json!({"ok": false, "error": e.to_body("ping")}),
                };
                print_json(&body);
            } else {
                outln!("ccccd: not running");
            }
            Ok(1)
        }
    }
}

/// `pid=<pid> version=<v>` from a `ping` result.
pub fn pid_version(ping: &Value) -> String {
    let pid = ping.get("pid").map(|p| p.to_string()).unwrap_or_else(|| "?".into());
    format!("pid={pid} version={}", str_of(ping, "version"))
}

/// Run the daemon in this process until it shuts down, logging to stderr.
pub fn foreground(ctx: &Ctx) -> CmdResult {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCCC_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: in the background, stderr is ccccd.log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    match cccc_daemon::run_blocking(ctx.home.clone()) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("error: {e}");
            Err(Fail::Exit(1))
        }
    }
}
