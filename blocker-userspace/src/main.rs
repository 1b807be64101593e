use clap::Parser;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = blocker::cli::Cli::parse();
    match blocker::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("blocker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
