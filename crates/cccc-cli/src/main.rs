//! `cccc`: for now only the daemon in the foreground (the full CLI lands next).

fn main() {
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
