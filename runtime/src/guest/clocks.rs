//! The guest's clocks: WASI's `clock_time_get`, answered without an async import.
//!
//! wasmtime-wasi links every preview-1 function as an async import, so each of a guest's
//! clock reads (`Instant::now`, `SystemTime::now`) boxed a future and polled it: a call timed
//! by two reads took 120–160 ns p50 so, 90 ns without (docs/performance.md, 2026-12-04,
//! evening). A guest that times its work reads the clock twice per step. This module shadows
//! that one import with a plain host function that reads the same clocks:
//! - the monotonic clock is the instance's [`GuestClock`], which its WASI context is given too,
//!   so that the deadlines of `poll_oneoff` (a guest's `sleep`) and these reads agree;
//! - the wall clock is the system's, as wasmtime-wasi's is.
//!
//! What it answers is what wasmtime-wasi answers: the time in nanoseconds written at the
//! guest's pointer and errno 0; `badf` for the CPU-time clocks, which WASI leaves to the host
//! and wasmtime-wasi does not offer; `inval` for an unknown clock; `overflow` for a wall clock
//! outside what 64 bits of nanoseconds since 1970 hold; a trap for a pointer that is out of
//! bounds or not aligned to 8.

use std::time::{Instant, SystemTime};

use wasmtime::{Caller, Linker, Memory};
use wasmtime_wasi::HostMonotonicClock;

use crate::guest::exports::memory_of;

/// The WASI module the shadowed import belongs to.
const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// WASI's clock ids (`clockid`).
const REALTIME: i32 = 0;
const MONOTONIC: i32 = 1;
const PROCESS_CPUTIME: i32 = 2;
const THREAD_CPUTIME: i32 = 3;

/// WASI's error numbers (`errno`) this import answers with.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_OVERFLOW: i32 = 61;

/// An instance's monotonic clock: nanoseconds since the instance was made. Copied into its
/// WASI context (for `poll_oneoff`) and kept where [`add_to_linker`]'s import finds it.
#[derive(Debug, Clone, Copy)]
pub struct GuestClock {
    since: Instant,
}

impl GuestClock {
    /// A clock that starts now.
    pub fn start() -> GuestClock {
        GuestClock {
            since: Instant::now(),
        }
    }

    /// Nanoseconds since the clock started (saturating after 584 years).
    pub fn nanos(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl HostMonotonicClock for GuestClock {
    /// Linux's monotonic clock counts nanoseconds (with high-resolution timers, which every
    /// kernel netrun runs on has).
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.nanos()
    }
}

/// What the import needs of a store's data.
pub trait ClockView {
    /// The instance's monotonic clock.
    fn clock(&self) -> GuestClock;
    /// The instance's memory, if the store knows it already: else it is looked up by name,
    /// which costs about as much as the rest of a clock read.
    fn memory(&self) -> Option<Memory>;
}

/// Shadows WASI's `clock_time_get` in `linker` (which must have WASI preview 1 already) with a
/// synchronous host function reading the store's [`ClockView`].
pub fn add_to_linker<T: ClockView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let shadowed = linker
        .func_wrap(
            WASI_MODULE,
            "clock_time_get",
            move |mut caller: Caller<'_, T>, id: i32, _precision: i64, at: i32| {
                let now = match id {
                    REALTIME => match wall_clock_nanos() {
                        Some(now) => now,
                        None => return Ok(ERRNO_OVERFLOW),
                    },
                    MONOTONIC => caller.data().clock().nanos(),
                    PROCESS_CPUTIME | THREAD_CPUTIME => return Ok(ERRNO_BADF),
                    _ => return Ok(ERRNO_INVAL),
                };
                write_timestamp(&mut caller, at, now)?;
                Ok(ERRNO_SUCCESS)
            },
        )
        .map(|_| ());
    linker.allow_shadowing(false);
    shadowed
}

/// The wall clock in nanoseconds since 1970, if 64 bits hold it.
fn wall_clock_nanos() -> Option<u64> {
    let since_1970 = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    u64::try_from(since_1970.as_nanos()).ok()
}

/// Writes `nanos` (a WASI `timestamp`, little-endian) at `at` in the guest's memory; traps if
/// `at` is not aligned to 8 or the 8 bytes are outside its memory.
fn write_timestamp<T: ClockView>(
    caller: &mut Caller<'_, T>,
    at: i32,
    nanos: u64,
) -> wasmtime::Result<()> {
    let bad = |why: &str| wasmtime::format_err!("clock_time_get: the result pointer {at} {why}");
    let at = at as u32 as usize;
    if !at.is_multiple_of(8) {
        return Err(bad("is not aligned to 8"));
    }
    let memory = match caller.data().memory() {
        Some(memory) => memory,
        None => memory_of(caller).map_err(|e| bad(&format!("cannot be written: {e}")))?,
    };
    memory
        .data_mut(caller)
        .get_mut(at..at + 8)
        .ok_or_else(|| bad("is outside guest memory"))?
        .copy_from_slice(&nanos.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine, Module, Store};

    /// A module that reads clock `id` into memory at `at` and returns the errno and the
    /// timestamp found there.
    const READER: &str = r#"(module
        (import "wasi_snapshot_preview1" "clock_time_get"
            (func $get (param i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "read") (param $id i32) (param $at i32) (result i32 i64)
            (call $get (local.get $id) (i64.const 1) (local.get $at))
            (i64.load (i32.const 8))))"#;

    /// A store's clock, and its instance's memory once it is told it.
    struct Data {
        clock: GuestClock,
        memory: Option<Memory>,
    }

    impl ClockView for Data {
        fn clock(&self) -> GuestClock {
            self.clock
        }

        fn memory(&self) -> Option<Memory> {
            self.memory
        }
    }

    type Read = wasmtime::TypedFunc<(i32, i32), (i32, i64)>;

    /// A store whose clock started `ago` nanoseconds back, and the module's `read`; the store
    /// knows the instance's memory if `known` (else the import looks it up by name).
    fn reader(ago: u64, known: bool) -> (Store<Data>, Read) {
        let engine = Engine::new(&Config::new()).unwrap();
        let mut linker = Linker::new(&engine);
        // Stands in for WASI's import, which add_to_linker shadows.
        linker
            .func_wrap(
                WASI_MODULE,
                "clock_time_get",
                |_: i32, _: i64, _: i32| -> i32 { panic!("the shadowed import ran") },
            )
            .unwrap();
        add_to_linker(&mut linker).unwrap();
        let since = Instant::now() - std::time::Duration::from_nanos(ago);
        let data = Data {
            clock: GuestClock { since },
            memory: None,
        };
        let mut store = Store::new(&engine, data);
        let module = Module::new(&engine, READER).unwrap();
        let instance = linker.instantiate(&mut store, &module).unwrap();
        if known {
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
        }
        let read = instance.get_typed_func(&mut store, "read").unwrap();
        (store, read)
    }

    #[test]
    fn the_monotonic_clock_counts_from_the_instances_start() {
        for known in [false, true] {
            let (mut store, read) = reader(5_000_000_000, known);
            let (errno, first) = read.call(&mut store, (MONOTONIC, 8)).unwrap();
            assert_eq!(errno, ERRNO_SUCCESS);
            assert!(
                (5_000_000_000..6_000_000_000).contains(&first),
                "{first} ns"
            );
            let (_, second) = read.call(&mut store, (MONOTONIC, 8)).unwrap();
            assert!(second >= first, "{second} after {first}");
            let clock = store.data().clock;
            assert!(HostMonotonicClock::now(&clock) >= second as u64);
        }
    }

    #[test]
    fn the_wall_clock_is_the_systems() {
        let (mut store, read) = reader(0, true);
        let before = wall_clock_nanos().unwrap();
        let (errno, now) = read.call(&mut store, (REALTIME, 8)).unwrap();
        let after = wall_clock_nanos().unwrap();
        assert_eq!(errno, ERRNO_SUCCESS);
        assert!((before..=after).contains(&(now as u64)), "{now}");
    }

    #[test]
    fn other_clocks_are_refused_with_wasis_errors() {
        let (mut store, read) = reader(0, true);
        for (id, errno) in [
            (PROCESS_CPUTIME, ERRNO_BADF),
            (THREAD_CPUTIME, ERRNO_BADF),
            (4, ERRNO_INVAL),
            (-1, ERRNO_INVAL),
        ] {
            assert_eq!(
                read.call(&mut store, (id, 8)).unwrap().0,
                errno,
                "clock {id}"
            );
        }
    }

    #[test]
    fn a_bad_pointer_traps() {
        for known in [false, true] {
            for (at, why) in [
                (12, "is not aligned to 8"),
                (65_536, "is outside guest memory"),
                (65_532, "is not aligned to 8"),
                (-8, "is outside guest memory"),
            ] {
                // A trap leaves the instance unusable: a fresh one for each.
                let (mut store, read) = reader(0, known);
                let error = read.call(&mut store, (MONOTONIC, at)).unwrap_err();
                let text = format!("{error:#}");
                assert!(text.contains(why), "pointer {at}: {text}");
            }
        }
    }
}
