#[net::connect]
fn numbers() -> impl Iterator<Item = u32> {
    0..3
}

#[net::connect]
fn sum(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().sum()
}

fn main() {}
