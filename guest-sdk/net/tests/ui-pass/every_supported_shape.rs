//! Every supported signature compiles, and the stub has the expected type.
use std::collections::BTreeMap;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Point {
    x: i32,
    y: i32,
}

#[net::connect]
fn nothing() {}

#[net::connect("renamed")]
pub fn tagged(a: u8, b: String, c: Vec<Point>, d: BTreeMap<String, (u8, Option<f64>)>) -> Point {
    let _ = (a, b, c, d);
    Point { x: 1, y: 2 }
}

#[net::connect]
fn fallible(x: u32) -> Result<u32, String> {
    Ok(x)
}

#[net::entry]
fn plain() {}

#[net::entry]
fn checked() -> Result<(), net::Error> {
    Ok(())
}

fn main() {
    // Local calls are plain Rust calls.
    nothing();
    assert_eq!(tagged(1, String::new(), Vec::new(), BTreeMap::new()).x, 1);
    assert_eq!(fallible(3), Ok(3));
    // Remote stubs exist with the right types.
    let _: fn(&net::Peer) -> Result<(), net::Error> = nothing::on;
    let _: fn(&net::Peer, u32) -> Result<Result<u32, String>, net::Error> = fallible::on;
    let _ = tagged::on;
    let _ = (plain, checked);
}
