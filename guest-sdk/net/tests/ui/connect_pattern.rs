#[net::connect]
fn swap((a, b): (u32, u32)) -> (u32, u32) {
    (b, a)
}

fn main() {}
