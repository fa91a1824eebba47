#[net::connect("same")]
fn first() {}

#[net::connect("same")]
fn second() {}

fn main() {}
