//! `cccc`: the command line of CCCC, wire- and disk-compatible with CCCC 0.4.32.
//!
//! Without a subcommand it runs the daemon in the foreground. Every other command talks to the
//! daemon over IPC v1 (starting it in the background first if it does not answer), except the
//! few that read files directly as the reference does (`tail`, `group show`, `use`, `active`)
//! and the read-only views that must work without a daemon (`status`, `doctor`, `version`).
//!
//! Exit codes: 0 ok, 2 rejected (by the daemon or by argument checks; usage errors too),
//! 1 could not run (daemon failed to start, IO error).

mod cli;
mod cmd;
mod ctx;
mod daemon_ctl;
mod output;

use clap::Parser;
use cli::{Cli, Command};
use ctx::{Ctx, Fail, report_rejection};

fn main() {
    // The daemon runs its own executable as the host process of each PTY actor.
    if std::env::args().nth(1).as_deref() == Some("__pty-host") {
        let rest: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(cccc_daemon::pty_host_main(&rest));
    }
    // The daemon runs `cccc __im-bridge --platform P …` as the process of one bot credential.
    if std::env::args().nth(1).as_deref() == Some("__im-bridge") {
        let rest: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(bridge_main(&rest));
    }
    let cli = Cli::parse();
    let ctx = Ctx::new(cccc_core::home::Home::resolve(), cli.json);
    let code = match dispatch(&ctx, cli.command) {
        Ok(code) => code,
        Err(Fail::Rejected(body)) => {
            report_rejection(&body, ctx.json);
            2
        }
        Err(Fail::Exit(code)) => code,
        Err(Fail::Other(e)) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code.into());
}

/// `__im-bridge`: pick the platform crate by `--platform` (each parses the rest itself).
fn bridge_main(args: &[String]) -> i32 {
    let platform = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--platform=").map(str::to_string).or_else(|| (a == "--platform").then(|| args.get(i + 1).cloned().unwrap_or_default()))
    });
    match platform.as_deref() {
        Some("telegram") => cccc_telegram::run_bridge_process(args),
        Some("discord") => cccc_discord::run_bridge_process(args),
        other => {
            eprintln!("__im-bridge: unsupported platform {:?} (expected telegram or discord)", other.unwrap_or(""));
            2
        }
    }
}

fn dispatch(ctx: &Ctx, command: Option<Command>) -> ctx::CmdResult {
    let Some(command) = command else { return cmd::daemon::foreground(ctx) };
    match command {
        Command::Daemon { action } => cmd::daemon::run(ctx, &action),
        Command::Doctor => cmd::info::doctor(ctx),
        Command::Status => cmd::info::status(ctx),
        Command::Version => cmd::info::version(ctx),
        Command::Groups => cmd::group::groups(ctx),
        Command::Group { action } => cmd::group::run(ctx, &action),
        Command::Attach(a) => cmd::group::attach(ctx, &a),
        Command::Use { group_id } => cmd::group::use_group(ctx, &group_id),
        Command::Active => cmd::group::active(ctx),
        Command::Actor { action } => cmd::actor::run(ctx, &action),
        Command::Send(a) => cmd::chat::send(ctx, &a),
        Command::Reply(a) => cmd::chat::reply(ctx, &a),
        Command::Inbox(a) => cmd::chat::inbox(ctx, &a),
        Command::Read(a) => cmd::chat::read(ctx, &a),
        Command::Ack(a) => cmd::chat::ack(ctx, &a),
        Command::Obligations(a) => cmd::chat::obligations(ctx, &a),
        Command::Tail(a) => cmd::tail::run(ctx, &a),
        Command::Im { action } => cmd::im::run(ctx, &action),
        Command::Mcp => cmd::mcp(ctx),
    }
}
