//! What a scenario measured, how it is judged, and the two forms of the report: the table on
//! stdout and `target/bench/results.json`.

use std::time::Duration;

use netrun::bench::Spread;
use serde::Serialize;

/// A distribution in a scenario's unit (and its rate, where it has one).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    /// Operations per second, where the scenario counts operations.
    pub throughput: Option<f64>,
}

impl Stats {
    /// The distribution of `samples` in `unit` (`us` or `ms`), without a rate.
    pub fn of(samples: &[Duration], unit: Unit) -> Stats {
        let spread = Spread::of(&mut samples.to_vec());
        Stats {
            p50: unit.of(spread.p50),
            p99: unit.of(spread.p99),
            mean: unit.of(spread.mean),
            throughput: None,
        }
    }

    /// One value (a size, a single wall time) as a distribution.
    pub fn single(value: f64) -> Stats {
        Stats {
            p50: value,
            p99: value,
            mean: value,
            throughput: None,
        }
    }

    /// A rate only: p50, p99 and mean are the time per operation in `unit`.
    pub fn rate(ops: usize, wall: Duration, unit: Unit) -> Stats {
        let each = unit.of(wall) / ops as f64;
        Stats {
            p50: each,
            p99: each,
            mean: each,
            throughput: Some(ops as f64 / wall.as_secs_f64()),
        }
    }
}

/// The unit of a scenario's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Millis,
    Mebibytes,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Mebibytes => "MiB",
        }
    }

    fn of(self, d: Duration) -> f64 {
        match self {
            Unit::Micros => d.as_secs_f64() * 1e6,
            Unit::Millis => d.as_secs_f64() * 1e3,
            Unit::Mebibytes => panic!("a duration is not a size"),
        }
    }
}

/// One scenario's result, as `results.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub unit: &'static str,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub throughput: Option<f64>,
    pub baseline: Option<Stats>,
    /// netrun p50 / baseline p50 (for throughput scenarios: netrun / baseline throughput);
    /// `null` without a baseline.
    pub ratio: Option<f64>,
    /// The target, in words, and whether this run met it.
    pub target: String,
    pub met: bool,
    /// Other measurements of the scenario (peak memory, the ideal time…).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Scenario {
    /// A scenario judged on its p50 against a baseline's: `ratio` = p50 / baseline p50.
    pub fn against(name: &'static str, unit: Unit, netrun: Stats, baseline: Stats) -> Scenario {
        let ratio = netrun.p50 / baseline.p50;
        Scenario::new(name, unit, netrun, Some(baseline), Some(ratio))
    }

    pub fn new(
        name: &'static str,
        unit: Unit,
        netrun: Stats,
        baseline: Option<Stats>,
        ratio: Option<f64>,
    ) -> Scenario {
        Scenario {
            name,
            unit: unit.name(),
            p50: netrun.p50,
            p99: netrun.p99,
            mean: netrun.mean,
            throughput: netrun.throughput,
            baseline,
            ratio,
            target: String::new(),
            met: false,
            extra: serde_json::Map::new(),
        }
    }

    /// Sets the target and whether `met` holds.
    pub fn judged(mut self, target: &str, met: bool) -> Scenario {
        self.target = target.to_string();
        self.met = met;
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Scenario {
        self.extra.insert(key.to_string(), value.into());
        self
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

/// The table of `scenarios`, one line each.
pub fn table(scenarios: &[Scenario]) -> String {
    let mut out = format!(
        "{:<24} {:>4} {:>10} {:>10} {:>10} {:>12} {:>10} {:>7}  {}\n",
        "scenario", "unit", "p50", "p99", "mean", "ops/s", "base p50", "ratio", "target"
    );
    for s in scenarios {
        let verdict = if s.met { "met" } else { "NOT MET" };
        out.push_str(&format!(
            "{:<24} {:>4} {:>10} {:>10} {:>10} {:>12} {:>10} {:>7}  {} ({verdict})\n",
            s.name,
            s.unit,
            number(Some(s.p50)),
            number(Some(s.p99)),
            number(Some(s.mean)),
            number(s.throughput),
            number(s.baseline.map(|b| b.p50)),
            number(s.ratio),
            s.target,
        ));
    }
    out
}
