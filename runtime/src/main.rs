//! `netrun`: parses the command line, sets up logging, runs the command and maps its failure to
//! an exit code (0 ok, or the output's reader gone; 1 failed; 2 bad usage or input). Everything
//! else is in the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use netrun::cli::{Cli, Command, with_implicit_run};
use netrun::commands::{self, Failure};

/// The process's allocator: mimalloc, whose threads free blocks another thread allocated
/// without taking that thread's lock. With glibc's malloc, a call's buffers made on the
/// connection's thread and freed on a worker's (`--workers 2`) contended for an arena's lock:
/// futex waits and wake-ups were 7 % of a busy two-worker peer's CPU (docs/performance.md). It
/// also keeps the buffers of large calls for the next ones, so they do not fault their pages
/// in again on each call. Built without transparent huge pages (`no_thp`), which would have
/// made an idle peer's first heap 10 MiB of resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often memory freed and left unused is handed back to the system.
const RETURN_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands memory that large calls freed back to the system once it has been unused for a
/// second (mimalloc's purge delay), from a thread of its own. mimalloc keeps freed memory for
/// the next calls and purges it only when asked, or when a thread allocates again: a peer that
/// went idle after eight 8 MiB echoes at once would otherwise hold the 400 MiB they peaked at
/// for as long as it stays idle. Only a peer needs it: the other commands end when their
/// work does.
fn return_unused_memory() {
    let started = std::thread::Builder::new()
        .name("netrun-memory".into())
        .spawn(|| {
            // `mi_collect` does nothing on a thread that has never allocated.
            drop(std::hint::black_box(Box::new(0u8)));
            loop {
                std::thread::sleep(RETURN_MEMORY_EVERY);
                // SAFETY: `mi_collect` only returns memory that no allocation uses.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
        });
    if let Err(e) = started {
        tracing::warn!("cannot start the memory thread: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_implicit_run(std::env::args().collect()));
    init_logging();
    if matches!(cli.command, Command::Run(_)) {
        return_unused_memory();
    }
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
