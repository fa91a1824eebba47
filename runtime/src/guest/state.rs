//! What each instance's store holds ([`HostState`]), and what every instance of a peer shares
//! ([`InstanceEnv`]).
//!
//! Owns the WASI context an instance starts with (stdout and stderr a line at a time, stdin
//! only for an entry's peer, the granted directories and variables), the memory cap as a
//! [`ResourceLimiter`], and the per-call facts the imports and traps need. It does not run
//! guest code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::guest::blobs::Blobs;
use crate::guest::chain::ChainState;
use crate::guest::clocks::{ClockView, GuestClock};
use crate::guest::config::GuestConfig;
use crate::guest::exports::ExportCache;
use crate::guest::handover::Handover;
use crate::guest::output::{GuestOutput, PromptingStdin, Sink};
use crate::guest::scheduler::Scheduler;
use crate::guest::services::PeerServices;
use crate::guest::started::StartedCalls;
use crate::wire::spin::RecentWaits;

/// What every instance of a peer shares: its settings, the peer's services, the scheduler.
#[derive(Clone)]
pub struct InstanceEnv {
    pub config: Arc<GuestConfig>,
    pub services: Arc<dyn PeerServices>,
    pub scheduler: Arc<Scheduler>,
}

/// What each instance's store holds.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    /// The peer's settings for its instances.
    pub config: Arc<GuestConfig>,
    /// The peer's services, for the `net` imports.
    pub services: Arc<dyn PeerServices>,
    /// Where calls wait for an instance; told which chain this one runs.
    pub scheduler: Arc<Scheduler>,
    /// Set by the `net.panic` import just before a guest panic traps.
    pub panic_message: Option<String>,
    /// Set when the instance was refused memory beyond
    /// [`Limits::max_memory`](crate::guest::config::Limits::max_memory).
    pub memory_refused: bool,
    /// When the running call must stop; `None` for an entry, which has no deadline.
    pub deadline: Option<Deadline>,
    /// The chain of the call running now, and the calls of it that arrive while it waits.
    pub chain: ChainState,
    /// Calls the guest started and has not waited for yet.
    pub started: StartedCalls,
    /// The guest's stdout and stderr, line by line.
    pub output: [GuestOutput; 2],
    /// The exports this instance's calls used, found once.
    pub exports: ExportCache,
    /// How long the replies to this instance's outgoing calls took lately: whether it polls
    /// for the next one awake before sleeping.
    pub recent_replies: RecentWaits,
    /// Blobs the guest handed over, and those of the value it is decoding.
    pub blobs: Blobs,
    /// The instance's monotonic clock, read by its WASI context and by `clock_time_get`.
    pub clock: GuestClock,
    /// What the host holds for the guest to take, and the outcome its export handed over.
    pub handover: Handover,
}

/// When the running call must stop, and whose limit that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When the guest is interrupted.
    pub at: Instant,
    /// True when `at` is the time the call's caller gave it (running out is a timeout);
    /// false when it is the peer's own `--deadline` (running out is a `deadline` trap).
    pub from_caller: bool,
    /// When the call started.
    pub started: Instant,
}

impl Deadline {
    /// The deadline of a call starting at `started` (now: the clock read by whoever starts
    /// it): the peer's `limit` or the `caller`'s, whichever comes first; `None` when there is
    /// neither.
    pub fn of_call(
        limit: Option<Duration>,
        caller: Option<Instant>,
        started: Instant,
    ) -> Option<Deadline> {
        let own = limit.map(|limit| Deadline {
            at: started + limit,
            from_caller: false,
            started,
        });
        let callers = caller.map(|at| Deadline {
            at,
            from_caller: true,
            started,
        });
        match (own, callers) {
            (Some(own), Some(callers)) => Some(if callers.at < own.at { callers } else { own }),
            (own, callers) => own.or(callers),
        }
    }

    /// This deadline, or the `caller`'s if that comes first (a call nested in this one).
    pub fn or_earlier(self, caller: Option<Instant>) -> Deadline {
        match caller {
            Some(at) if at < self.at => Deadline {
                at,
                from_caller: true,
                started: Instant::now(),
            },
            _ => self,
        }
    }

    /// How long until it passes (zero once it has).
    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Refuses memory growth past the peer's cap. The guest sees `memory.grow` fail (its allocator
/// usually aborts, which traps); the refusal is remembered so the trap can be named.
impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.config.limits.max_memory {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

impl ClockView for HostState {
    fn clock(&self) -> GuestClock {
        self.clock
    }

    fn memory(&self) -> Option<wasmtime::Memory> {
        self.exports.buffers().map(|exports| exports.memory())
    }
}

impl HostState {
    /// Fresh state for a new instance: a WASI context with stdout/stderr, the process's stdin
    /// when the peer was started to run an entry (`--entry`), and the peer's
    /// [`Grants`](crate::guest::config::Grants).
    pub fn new(env: &InstanceEnv) -> anyhow::Result<HostState> {
        let config = &env.config;
        let mut wasi = WasiCtxBuilder::new();
        let clock = GuestClock::start();
        wasi.monotonic_clock(clock);
        let output = [
            GuestOutput::new(Sink::Stdout),
            GuestOutput::new(Sink::Stderr),
        ];
        wasi.stdout(output[0].clone()).stderr(output[1].clone());
        if config.stdin {
            wasi.stdin(PromptingStdin::new(output.clone()));
        }
        for (name, value) in &config.grants.env {
            wasi.env(name, value);
        }
        for dir in &config.grants.dirs {
            let perms = if dir.writable {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.host.display()))?;
        }
        let wasi = wasi.build_p1();
        Ok(HostState {
            wasi,
            config: env.config.clone(),
            services: env.services.clone(),
            scheduler: env.scheduler.clone(),
            panic_message: None,
            memory_refused: false,
            deadline: None,
            chain: ChainState::new(),
            started: StartedCalls::default(),
            output,
            exports: ExportCache::default(),
            recent_replies: RecentWaits::quick(),
            blobs: Blobs::default(),
            clock,
            handover: Handover::default(),
        })
    }
}
