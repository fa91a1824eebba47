//! The scenarios of `make bench`, each measured against its baseline in the same run, rounds
//! of the two interleaved so that a busy moment of the machine hits both.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netrun::wire::client::{Client, Request, Target};
use netrun::wire::message::Hello;
use netrun_abi::Outcome;
use netrun_tests::{
    Ports, TestPeer, arg, info, netrun, netrun_bin, root, subscription_list, wait_until,
};
use serde_json::{Value, json};

use crate::baseline::EchoServer;
use crate::report::{Scenario, Stats, Unit};

const MIB: usize = 1 << 20;
/// The cluster secret of the secured scenario (a benchmark's, not a user's).
const SECRET: &str = "netrun bench secret";

/// What every scenario shares: the ports, the app, the baseline servers, and how many calls
/// make a round.
pub struct Bench {
    pub ports: Ports,
    pub app: PathBuf,
    /// The ping-pong that waits as netrun's peers do (polling, then asleep): the floor.
    pub echo: EchoServer,
    /// The ping-pong that sleeps in every read, reported beside the floor.
    pub asleep: EchoServer,
    pub rounds: usize,
    pub calls: usize,
}

impl Bench {
    /// A `bench_probe` peer with `args` and `env`.
    fn peer(&self, args: &[&str], env: &[(&str, &str)]) -> TestPeer {
        TestPeer::start(&self.ports, &self.app, args, env)
    }

    /// Calls `function` with JSON `args` on `peer` through `netrun call`; its JSON result.
    fn guest(
        &self,
        peer: &TestPeer,
        function: &str,
        args: &[Value],
        env: &[(&str, &str)],
    ) -> Value {
        let texts: Vec<String> = args.iter().map(Value::to_string).collect();
        let mut all = vec!["call", peer.id(), function];
        all.extend(texts.iter().map(String::as_str));
        let out = netrun(&self.ports, &all, env);
        out.expect_code(0);
        out.json()
    }

    /// A guest's list of nanoseconds as durations.
    fn times(
        &self,
        peer: &TestPeer,
        function: &str,
        args: &[Value],
        env: &[(&str, &str)],
    ) -> Vec<Duration> {
        nanos(&self.guest(peer, function, args, env))
    }

    /// `netrun bench` against `peer`: its JSON report.
    fn cli_bench(&self, peer: &TestPeer, calls: usize, concurrency: usize, size: usize) -> Value {
        let (calls, concurrency, size) =
            (calls.to_string(), concurrency.to_string(), size.to_string());
        let all = [
            "bench",
            peer.id(),
            "echo",
            "--calls",
            &calls,
            "--concurrency",
            &concurrency,
            "--size",
            &size,
            "--json",
        ];
        let out = netrun(&self.ports, &all, &[]);
        out.expect_code(0);
        out.json()
    }
}

fn nanos(value: &Value) -> Vec<Duration> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list of times: {value}"))
        .iter()
        .map(|n| Duration::from_nanos(n.as_u64().expect("nanoseconds")))
        .collect()
}

/// `remote_call_16b` and `remote_call_16b_secret`: a guest calls `echo` on another peer's guest
/// with 16 bytes, one call at a time; rounds of the ping-pong, plain peers and secured peers.
/// The ping-pong asleep in its reads is reported too (`asleep_ping_pong_*`), not judged.
pub fn remote_calls(bench: &Bench) -> Vec<Scenario> {
    let secret = [("NET_SECRET", SECRET)];
    let (caller, callee) = (bench.peer(&[], &[]), bench.peer(&[], &[]));
    let (secure_caller, secure_callee) = (bench.peer(&[], &secret), bench.peer(&[], &secret));
    let args = |to: &TestPeer| [json!(to.id()), json!(bench.calls), json!(16)];
    let (mut floor, mut asleep) = (Vec::new(), Vec::new());
    let (mut plain, mut secured) = (Vec::new(), Vec::new());
    // Each round's own ratio (its p50 against its floor's): how far rounds of one run differ.
    let mut round_ratios = Vec::new();
    for _ in 0..bench.rounds {
        let round_floor = bench.echo.ping_pong(bench.calls, 16);
        asleep.extend(bench.asleep.ping_pong(bench.calls, 16));
        let round_plain = bench.times(&caller, "time_remote", &args(&callee), &[]);
        round_ratios.push(
            Stats::of(&round_plain, Unit::Micros).p50 / Stats::of(&round_floor, Unit::Micros).p50,
        );
        floor.extend(round_floor);
        plain.extend(round_plain);
        secured.extend(bench.times(
            &secure_caller,
            "time_remote",
            &args(&secure_callee),
            &secret,
        ));
    }
    let floor = Stats::of(&floor, Unit::Micros);
    let asleep = Stats::of(&asleep, Unit::Micros);
    let plain = Stats::of(&plain, Unit::Micros);
    let secured = Stats::of(&secured, Unit::Micros);
    let first = Scenario::against("remote_call_16b", Unit::Micros, plain, floor)
        .with("asleep_ping_pong_p50_us", asleep.p50)
        .with("asleep_ping_pong_p99_us", asleep.p99)
        .with("round_ratios", round_ratios);
    let met = first.ratio.unwrap() <= 1.5;
    let second = Scenario::against("remote_call_16b_secret", Unit::Micros, secured, plain);
    let second_met = second.ratio.unwrap() <= 1.2;
    vec![
        first.judged("p50 <= 1.5x TCP ping-pong", met),
        second.judged("p50 <= 1.2x remote_call_16b", second_met),
    ]
}

/// `pipelined_64`: `netrun bench` with 64 calls in flight on one connection to a peer with two
/// workers, against the pipelined ping-pong; judged on throughput.
pub fn pipelined(bench: &Bench) -> Scenario {
    let callee = bench.peer(&["--workers", "2"], &[]);
    let calls = bench.calls * 4;
    let (mut floor_wall, mut floor_calls, mut ours) = (Duration::ZERO, 0, Vec::new());
    for _ in 0..bench.rounds {
        floor_wall += bench.echo.pipelined(calls * 4, 64, 16);
        floor_calls += calls * 4;
        ours.push(bench.cli_bench(&callee, calls, 64, 16));
    }
    let floor = Stats::rate(floor_calls, floor_wall, Unit::Micros);
    let netrun = merge_cli(&ours);
    let ratio = netrun.throughput.unwrap() / floor.throughput.unwrap();
    Scenario::new(
        "pipelined_64",
        Unit::Micros,
        netrun,
        Some(floor),
        Some(ratio),
    )
    .judged("throughput >= 30% of pipelined ping-pong", ratio >= 0.3)
}

/// Several `netrun bench` reports as one: mean of the percentiles, total rate.
fn merge_cli(reports: &[Value]) -> Stats {
    let field = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_f64().expect(key))
            .collect::<Vec<_>>()
    };
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    Stats {
        p50: mean(field("p50_us")),
        p99: mean(field("p99_us")),
        mean: mean(field("mean_us")),
        throughput: Some(mean(field("throughput"))),
    }
}

/// `concurrent_8`: eight callers at once (`netrun bench --concurrency 8`), against the single
/// caller of `remote_call_16b`; judged on p99 against that p50. The ping-pong with eight frames
/// in flight, rounds interleaved with netrun's, is reported beside it: what the transport
/// allows at eight in flight.
pub fn concurrent(bench: &Bench, single: &Scenario) -> Scenario {
    let callee = bench.peer(&[], &[]);
    let (mut reports, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..bench.rounds {
        floor.extend(bench.echo.in_flight(bench.calls, 8, 16));
        reports.push(bench.cli_bench(&callee, bench.calls, 8, 16));
    }
    let floor = Stats::of(&floor, Unit::Micros);
    let netrun = merge_cli(&reports);
    let baseline = Stats {
        p50: single.p50,
        p99: single.p99,
        mean: single.mean,
        throughput: None,
    };
    let met = netrun.p99 <= 3.0 * baseline.p50;
    // Each round's own figures: a round where `netrun bench` and the callee share a CPU
    // (docs/performance.md) stands out from the others.
    let each = |key: &str| -> Vec<f64> { reports.iter().filter_map(|r| r[key].as_f64()).collect() };
    Scenario::against("concurrent_8", Unit::Micros, netrun, baseline)
        .with("round_p50_us", each("p50_us"))
        .with("round_p99_us", each("p99_us"))
        .with("ping_pong_8_in_flight_p50_us", floor.p50)
        .with("ping_pong_8_in_flight_p99_us", floor.p99)
        .judged("p99 <= 3x remote_call_16b p50", met)
}

/// `local_call`: a connected function called in the guest against a plain function.
pub fn local(bench: &Bench) -> Scenario {
    let peer = bench.peer(&[], &[]);
    let (mut connected, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..bench.rounds {
        let pair = bench.guest(
            &peer,
            "time_local",
            &[json!(bench.calls * 10), json!(16)],
            &[],
        );
        connected.extend(nanos(&pair[0]));
        plain.extend(nanos(&pair[1]));
    }
    let netrun = Stats::of(&connected, Unit::Micros);
    let baseline = Stats::of(&plain, Unit::Micros);
    let scenario = Scenario::against("local_call", Unit::Micros, netrun, baseline);
    let met = scenario.ratio.unwrap() <= 1.25;
    scenario.judged("p50 <= 1.25x plain function", met)
}

/// `payload_8mib`: 8 MiB echoed guest to guest against the same bytes over the ping-pong (the
/// one asleep in its reads reported too); and the serving peer's peak resident memory while a
/// guest has eight such echoes in flight.
pub fn payload(bench: &Bench) -> Scenario {
    let (caller, callee) = (bench.peer(&[], &[]), bench.peer(&[], &[]));
    let (mut floor, mut asleep, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..bench.rounds {
        floor.extend(bench.echo.ping_pong(3, 8 * MIB));
        asleep.extend(bench.asleep.ping_pong(3, 8 * MIB));
        ours.extend(bench.times(
            &caller,
            "time_remote",
            &[json!(callee.id()), json!(3), json!(8 * MIB)],
            &[],
        ));
    }
    let netrun = Stats::of(&ours, Unit::Millis);
    let floor = Stats::of(&floor, Unit::Millis);
    let asleep = Stats::of(&asleep, Unit::Millis);
    // A fresh server with eight workers, so that eight echoes run at once.
    let server = bench.peer(&["--workers", "8"], &[]);
    let before = server.resident_kib();
    let wall = bench.guest(
        &caller,
        "time_concurrent",
        &[json!(server.id()), json!(8), json!(8 * MIB)],
        &[],
    );
    let peak_mib = server.peak_memory_kib() as f64 / 1024.0;
    let in_flight_mib = 8.0 * 8.0;
    let scenario = Scenario::against("payload_8mib", Unit::Millis, netrun, floor)
        .with("asleep_ping_pong_p50_ms", asleep.p50)
        .with("peak_rss_mib", peak_mib)
        .with("idle_rss_mib_before", before as f64 / 1024.0)
        .with("in_flight_mib", in_flight_mib)
        .with(
            "eight_echoes_wall_ms",
            wall.as_f64().unwrap_or_default() / 1e6,
        );
    let met = scenario.ratio.unwrap() <= 2.0 && peak_mib <= 4.0 * in_flight_mib;
    scenario.judged(
        "p50 <= 2x ping-pong; peak RSS <= 4x the 64 MiB in flight",
        met,
    )
}

/// `mixed_8mib_16b`: 16-byte calls while 8 MiB echoes travel on the same connection, against
/// the same small calls alone; judged on p99.
pub fn mixed(bench: &Bench) -> Scenario {
    let (caller, callee) = (bench.peer(&[], &[]), bench.peer(&["--workers", "2"], &[]));
    let (mut alone, mut mixed) = (Vec::new(), Vec::new());
    for _ in 0..bench.rounds {
        alone.extend(bench.times(
            &caller,
            "time_remote",
            &[json!(callee.id()), json!(100), json!(16)],
            &[],
        ));
        let args = [
            json!(callee.id()),
            json!(2),
            json!(8 * MIB),
            json!(50),
            json!(16),
        ];
        mixed.extend(bench.times(&caller, "time_mixed", &args, &[]));
    }
    let netrun = Stats::of(&mixed, Unit::Micros);
    let baseline = Stats::of(&alone, Unit::Micros);
    let met = netrun.p99 <= 3.0 * baseline.p99;
    Scenario::against("mixed_8mib_16b", Unit::Micros, netrun, baseline)
        .with("p99_ratio", netrun.p99 / baseline.p99)
        .judged("p99 <= 3x the small calls' alone", met)
}

/// `fanout_50`: a hub triggers an event that 50 subscriber peers get; from trigger to the last
/// delivery.
pub fn fanout(bench: &Bench) -> Scenario {
    const SUBSCRIBERS: usize = 50;
    // One range wide enough for the hub and every subscriber.
    let wide = Ports::wide(SUBSCRIBERS as u16 + 5);
    let range = [
        ("NET_PORT", wide.start.to_string()),
        ("NET_PORT_RANGE", (SUBSCRIBERS + 5).to_string()),
    ];
    let env: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hub = TestPeer::start(&bench.ports, &bench.app, &["--hub", "--workers", "1"], &env);
    let subscribers: Vec<TestPeer> = (0..SUBSCRIBERS)
        .map(|_| TestPeer::start(&bench.ports, &bench.app, &["--workers", "1"], &env))
        .collect();
    let all_in = wait_until(Duration::from_secs(90), || {
        subscription_list(&info(&bench.ports, hub.id()), "subscribers").len() >= SUBSCRIBERS
    });
    assert!(
        all_in,
        "the hub did not get {SUBSCRIBERS} subscriptions within 90 s"
    );
    let ticks = bench.rounds * 4;
    let sent = bench.guest(&hub, "fire", &[json!(ticks), json!(20)], &[]);
    let sent: Vec<u64> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut last = vec![0u64; ticks];
    let complete = wait_until(Duration::from_secs(30), || {
        last.fill(0);
        let mut all = true;
        for subscriber in &subscribers {
            let got = bench.guest(subscriber, "deliveries", &[], &[]);
            let got = got.as_array().unwrap();
            all &= got.len() == ticks;
            for pair in got {
                let (at_sent, arrived) = (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap());
                if let Some(i) = sent.iter().position(|&s| s == at_sent) {
                    last[i] = last[i].max(arrived);
                }
            }
        }
        all
    });
    assert!(
        complete,
        "not every subscriber got all {ticks} ticks within 30 s"
    );
    let took: Vec<Duration> = sent
        .iter()
        .zip(&last)
        .map(|(s, l)| Duration::from_micros(l - s))
        .collect();
    let netrun = Stats::of(&took, Unit::Millis);
    Scenario::new("fanout_50", Unit::Millis, netrun, None, None)
        .with("app_net_ms", 27)
        .judged("p50 <= 5 ms", netrun.p50 <= 5.0)
}

/// `parallel_map_8`: a guest spreads 8 calls of 10 ms of work over 4 one-worker peers with
/// the parallel call API; the ideal is two calls after each other, 20 ms.
pub fn parallel_map(bench: &Bench) -> Scenario {
    let caller = bench.peer(&[], &[]);
    let workers: Vec<TestPeer> = (0..4)
        .map(|_| bench.peer(&["--workers", "1"], &[]))
        .collect();
    let ids: Vec<&str> = workers.iter().map(TestPeer::id).collect();
    let walls: Vec<Duration> = (0..bench.rounds * 4)
        .map(|_| {
            let ns = bench.guest(
                &caller,
                "time_parallel",
                &[json!(ids), json!(8), json!(10)],
                &[],
            );
            Duration::from_nanos(ns.as_u64().expect("nanoseconds"))
        })
        .collect();
    let netrun = Stats::of(&walls, Unit::Millis);
    let ideal = Stats::single(20.0);
    let scenario = Scenario::against("parallel_map_8", Unit::Millis, netrun, ideal);
    let met = scenario.ratio.unwrap() <= 1.5;
    scenario.judged("wall <= 1.5x the ideal 20 ms", met)
}

/// A `netrun run` of the app on one port, killed on drop.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// From `netrun run` to its first answered call, with the compiled-module cache in `cache`.
fn time_to_first_answer(
    bench: &Bench,
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    cache: &std::path::Path,
) -> Duration {
    let port = bench.ports.unused(9);
    let target = Target::parse(&format!("127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let child = Command::new(netrun_bin())
        .args([
            "run",
            arg(&bench.app),
            "--port",
            &port.to_string(),
            "--port-range",
            "1",
        ])
        .env("NET_CACHE_DIR", cache)
        .env_remove("NET_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netrun");
    let _peer = Started(child);
    loop {
        let request = Request::json("pass_through", b"[1]".to_vec());
        let outcome = runtime.block_on(client.call(&target, request, Duration::from_secs(5)));
        if let Outcome::Value(_) = outcome {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no answer within 60 s: {outcome:?}"
        );
        client.give_up(&target.address, "not up yet");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn client() -> Client {
    Client::new(Hello::client(64 * MIB), 64 * MIB, None)
}

/// `warm_start`: from start to the first answered call with the module cache warm, against a
/// cold cache (emptied before each start).
pub fn warm_start(bench: &Bench) -> Scenario {
    let runtime = runtime();
    let scratch = root().join("target").join("bench").join("cache");
    let (warm_dir, cold_dir) = (scratch.join("warm"), scratch.join("cold"));
    let _ = std::fs::remove_dir_all(&scratch);
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    let client = client();
    time_to_first_answer(bench, &client, &runtime, &warm_dir); // fills the warm cache
    for _ in 0..bench.rounds {
        let _ = std::fs::remove_dir_all(&cold_dir);
        cold.push(time_to_first_answer(bench, &client, &runtime, &cold_dir));
        warm.push(time_to_first_answer(bench, &client, &runtime, &warm_dir));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let netrun = Stats::of(&warm, Unit::Millis);
    let baseline = Stats::of(&cold, Unit::Millis);
    Scenario::against("warm_start", Unit::Millis, netrun, baseline)
        .judged("p50 <= 30 ms", netrun.p50 <= 30.0)
}

/// `fresh_instance`: how long a worker takes to make a fresh instance after a trap, as the
/// peer logs it (`fresh instance ready in N µs`, with NET_DEV).
pub fn fresh_instance(bench: &Bench) -> Scenario {
    let peer = bench.peer(&["--workers", "1"], &[("NET_DEV", "1")]);
    let runtime = runtime();
    let client = Arc::new(client());
    let target = Target::parse(peer.id()).unwrap();
    let traps = bench.rounds * 20;
    for _ in 0..traps {
        let request = Request::json("boom", b"[]".to_vec());
        let outcome = runtime.block_on(client.call(&target, request, Duration::from_secs(10)));
        assert!(
            matches!(outcome, Outcome::Error(_)),
            "boom did not fail: {outcome:?}"
        );
    }
    let logged = |p: &TestPeer, what: &str| {
        p.stderr()
            .lines()
            .filter_map(|line| line.split(what).nth(1)?.split(' ').next()?.parse().ok())
            .map(|micros: f64| Duration::from_secs_f64(micros / 1e6))
            .collect::<Vec<_>>()
    };
    let ready = "fresh instance ready in ";
    wait_until(Duration::from_secs(10), || {
        logged(&peer, ready).len() >= traps
    });
    let times = logged(&peer, ready);
    assert!(
        times.len() >= traps,
        "{} fresh instances logged of {traps}\n{}",
        times.len(),
        peer.report()
    );
    let netrun = Stats::of(&times, Unit::Micros);
    let scenario = Scenario::new("fresh_instance", Unit::Micros, netrun, None, None)
        .judged("p50 <= 20 us", netrun.p50 <= 20.0);
    // What the swap hides: making each spare, off the worker's path.
    let made = logged(&peer, "spare instance made in ");
    if made.is_empty() {
        return scenario;
    }
    scenario.with("spare_made_p50_us", Stats::of(&made, Unit::Micros).p50)
}

/// `idle_rss`: an idle peer's resident memory, a few seconds after it started.
pub fn idle_rss(bench: &Bench) -> Scenario {
    let peer = bench.peer(&[], &[]);
    std::thread::sleep(Duration::from_secs(2));
    let mib = peer.resident_kib() as f64 / 1024.0;
    Scenario::new("idle_rss", Unit::Mebibytes, Stats::single(mib), None, None)
        .judged("<= 16 MiB", mib <= 16.0)
}
