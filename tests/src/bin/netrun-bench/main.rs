//! `make bench`: every scenario of docs/performance.md against its baseline, measured in one
//! run on this machine; prints a table and writes `target/bench/results.json`.
//!
//! `BENCH_ROUNDS` (default 5) rounds of each scenario, interleaved with its baseline;
//! `BENCH_CALLS` (default 2000) calls per round of the small-call scenarios. Absolute numbers
//! are printed, not judged: each line says whether the ratio met the target.
//! `BENCH_ONLY` (a comma-separated list of words) runs only the groups whose name contains one
//! of them, e.g. `BENCH_ONLY=remote,fresh`.

mod baseline;
mod report;
mod scenarios;

use std::time::Instant;

use netrun_tests::{Ports, app, root};

use crate::baseline::{EchoServer, Wait};
use crate::report::Scenario;
use crate::scenarios::Bench;

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a positive number")),
        Err(_) => default,
    }
}

fn main() {
    // The peers' own output stays in their captures (a failure prints it), off the table.
    netrun_tests::echo_output(false);
    let bench = Bench {
        ports: Ports::new(),
        app: app("bench_probe"),
        echo: EchoServer::start(Wait::Awake),
        asleep: EchoServer::start(Wait::Asleep),
        rounds: setting("BENCH_ROUNDS", 5).max(1),
        calls: setting("BENCH_CALLS", 2000).max(1),
    };
    let started = Instant::now();
    let mut results = Vec::new();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| {
        only.is_empty()
            || only
                .split(',')
                .any(|word| !word.is_empty() && name.contains(word.trim()))
    };
    let mut measure = |name: &str, run: &dyn Fn(&[Scenario]) -> Vec<Scenario>| {
        if !wanted(name) {
            return;
        }
        eprintln!("bench: {name}…");
        let done = run(&results);
        eprint!("{}", report::table(&done));
        results.extend(done);
    };
    measure("remote calls", &|_| scenarios::remote_calls(&bench));
    measure("pipelined", &|_| vec![scenarios::pipelined(&bench)]);
    measure("concurrent", &|so_far| {
        let measured;
        let single = match so_far.iter().find(|s| s.name == "remote_call_16b") {
            Some(single) => single,
            None => {
                measured = scenarios::remote_calls(&bench);
                &measured[0]
            }
        };
        vec![scenarios::concurrent(&bench, single)]
    });
    measure("local call", &|_| vec![scenarios::local(&bench)]);
    measure("8 MiB payloads", &|_| vec![scenarios::payload(&bench)]);
    measure("mixed payloads", &|_| vec![scenarios::mixed(&bench)]);
    measure("fan-out to 50", &|_| vec![scenarios::fanout(&bench)]);
    measure("parallel map", &|_| vec![scenarios::parallel_map(&bench)]);
    measure("warm start", &|_| vec![scenarios::warm_start(&bench)]);
    measure("fresh instance", &|_| {
        vec![scenarios::fresh_instance(&bench)]
    });
    measure("idle memory", &|_| vec![scenarios::idle_rss(&bench)]);
    println!("{}", report::table(&results));
    let out = root().join("target").join("bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let path = out.join("results.json");
    let json = serde_json::to_string_pretty(&results).expect("results serialize");
    std::fs::write(&path, json + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!(
        "{} scenarios in {:.0} s; {} met their target; written to {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        results.iter().filter(|s| s.met).count(),
        path.display()
    );
}
