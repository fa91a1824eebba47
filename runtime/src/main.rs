//! `netrun`: parses the command line, sets up logging, runs the command and maps its failure to
//! an exit code (0 ok, or the output's reader gone; 1 failed; 2 bad usage or input). Everything
//! else is in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use netrun::cli::{Cli, Command, with_implicit_run};
use netrun::commands::{self, Failure};

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse_from(with_implicit_run(std::env::args().collect()));
    init_logging();
    let runtime = match runtime_for(&cli.command) {
        Ok(runtime) => runtime,
        Err(e) => {
            commands::note(format_args!("error: cannot start the async runtime: {e}"));
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

/// The async runtime a command runs on. A peer with one worker (the default) runs on one
/// thread: the network, the scheduler and the instance share it, and a call is never handed
/// across threads (each such hand-off is a futex wake-up, which cost a peer about a fifth of
/// its CPU per call; docs/performance.md). With `--workers N`, N threads up to the CPUs, so
/// that instances run in parallel. Guest code yields at every epoch tick, so a busy instance
/// still lets the network run. The other commands are clients that wait on the network; one
/// thread serves them.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Run(args) if args.workers > 1 => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(args.workers).min(cpus))
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
}

/// Lets glibc's malloc keep large freed buffers for the next call instead of handing them back
/// to the kernel after each one. By default a buffer of a large payload (an 8 MiB argument, its
/// frame, its reply) is mapped for one call and unmapped or trimmed off the heap after it, so
/// every call pays page faults and the kernel's zeroing of each page again: a sixth of a
/// caller's CPU on 8 MiB echoes, and a fifth of their time (docs/performance.md). Allocations
/// under 32 MiB now come from the heap, and up to 64 MiB of free memory at its top is kept
/// rather than trimmed. The peak a peer reaches does not grow (the memory kept is what the
/// next call reuses); what it holds after a burst of large calls may, by up to those 64 MiB.
/// glibc's own variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) still decide when
/// either is set.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 64 << 20;
        let told = |name: &str| std::env::var_os(name).is_some();
        if told("MALLOC_MMAP_THRESHOLD_") || told("MALLOC_TRIM_THRESHOLD_") {
            return;
        }
        // SAFETY: mallopt only changes malloc's parameters; it is called before any thread
        // starts. A refused value leaves glibc's default, which is correct, only slower.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

fn report(failure: &Failure) {
    if let Some(message) = failure.message() {
        commands::note(format_args!("error: {message}"));
    }
}

/// Logs go to stderr: info by default, debug with `NET_DEV` set.
///
/// wasmtime-wasi wraps every WASI call of a guest in an info-level span (`#[instrument]`),
/// which would format its arguments on each `clock_time_get`; its spans and events below
/// warnings are filtered out where they are declared, so they cost nothing.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = if std::env::var_os("NET_DEV").is_some() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("wasmtime_wasi", tracing::Level::WARN);
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .init();
}
