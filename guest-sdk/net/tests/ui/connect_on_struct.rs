#[net::connect]
struct NotAFunction;

fn main() {}
