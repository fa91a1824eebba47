//! `netrun`: parses the command line, sets up logging, runs the command and maps its failure to
//! an exit code (0 ok, 1 failed, 2 bad usage or input). Everything else is in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use netrun::cli::{Cli, Command, with_implicit_run};
use netrun::commands::{self, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_implicit_run(std::env::args().collect()));
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run(args).await,
            Command::Peers(args) => commands::peers(args).await,
            Command::Call(args) => commands::call(args).await,
            Command::Info(args) => commands::info(args).await,
            Command::Inspect(args) => commands::inspect(args),
            Command::Bench(args) => commands::bench(args).await,
        }
    });
    let code = match result {
        Ok(()) => 0,
        Err(failure) => {
            report(&failure);
            failure.exit_code()
        }
    };
    let _ = std::io::stdout().flush();
    // Guest stdin readers and lingering connections must not keep the process alive.
    std::process::exit(code.into());
}

fn report(failure: &Failure) {
    eprintln!("error: {:#}", failure.error());
}

/// Logs go to stderr: info by default, debug with `NET_DEV` set.
fn init_logging() {
    let level = if std::env::var_os("NET_DEV").is_some() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
