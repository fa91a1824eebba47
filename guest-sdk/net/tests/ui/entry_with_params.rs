#[net::entry]
fn start(times: u32) {
    let _ = times;
}

#[net::entry(fast)]
fn quick() {}

#[net::entry]
fn wrong_return() -> u32 {
    1
}

fn main() {}
