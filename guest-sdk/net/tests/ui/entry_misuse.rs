#[net::entry]
async fn later() {}

#[net::entry]
fn generic<T: Default>() {}

fn main() {}
