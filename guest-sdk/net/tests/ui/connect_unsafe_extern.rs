#[net::connect]
unsafe fn risky(x: u32) -> u32 {
    x
}

#[net::connect]
extern "C" fn foreign(x: u32) -> u32 {
    x
}

fn main() {}
