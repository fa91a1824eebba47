#[net::connect(123)]
fn numbered() {}

#[net::connect("two words")]
fn spaced() {}

#[net::connect("a", "b")]
fn twice() {}

fn main() {}
