#[net::connect]
fn greet(name: &str) -> String {
    format!("hello {name}")
}

#[net::connect]
fn names(list: Vec<&'static str>) -> &'static str {
    list[0]
}

fn main() {}
