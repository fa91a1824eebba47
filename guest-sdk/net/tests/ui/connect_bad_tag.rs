#[net::connect(123)]
fn numbered() {}

#[net::connect("two words")]
fn spaced() {}

#[net::connect("a", "b")]
fn twice() {}

#[net::connect("")]
fn empty() {}

#[net::connect(name = "x")]
fn named() {}

fn main() {}
