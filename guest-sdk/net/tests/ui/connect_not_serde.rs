struct Opaque;

#[net::connect]
fn take(value: Opaque) -> u32 {
    let _ = value;
    1
}

fn main() {}
