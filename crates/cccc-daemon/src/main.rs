//! `ccccd`: the daemon alone, in the foreground, logs on stderr (`CCCC_LOG` sets the filter).
//! `cccc` (no arguments) does the same; `cccc daemon start` runs it in the background.

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "__pty-host" {
        // The daemon runs its own binary as the host of each PTY actor.
        let rest: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(cccc_core::pty::host::main(&rest));
    }
    if !(arg.is_empty() || arg == "run") {
        eprintln!("usage: ccccd [run]\n\nRuns the CCCC daemon for $CCCC_HOME (default ~/.cccc) in the foreground.");
        std::process::exit(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCCC_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = cccc_daemon::run_blocking(cccc_core::home::Home::resolve()) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
