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

// A parameter named like the stub's own `peer` parameter, one named like the function, `mut`
// parameters and raw identifiers all work.
#[net::connect]
fn relay(peer: String, mut hops: u32) -> (String, u32) {
    hops += 1;
    (peer, hops)
}

#[net::connect]
fn shadow(shadow: u32) -> u32 {
    shadow
}

#[net::connect]
fn r#type(r#in: String) -> String {
    r#in
}

#[allow(dead_code)]
fn more_stubs() {
    let _: fn(&net::Peer, String, u32) -> Result<(String, u32), net::Error> = relay::on;
    let _: fn(&net::Peer, u32) -> Result<u32, net::Error> = shadow::on;
    let _: fn(&net::Peer, String) -> Result<String, net::Error> = r#type::on;
    let _ = (relay(String::new(), 0), shadow(1), r#type(String::new()));
}
