use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = blocker::cli::Cli::parse();
    if cli.command.only_prints() {
        blocker::cli::quiet_on_closed_pipe();
    }
    // The daemon reports what it does (transfers, NOTIFY); commands only warn.
    let level = match cli.command {
        // (`domain` logs each NOTIFY itself: `follow` says it once, with the decision; the
        // controller's phase timings are in the transfer line.)
        blocker::cli::Command::Follow(_) => "info,domain=warn,blocker::txn=warn",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .format_target(false)
        .init();
    match blocker::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("blocker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
