#[net::connect]
async fn fetch(url: String) -> String {
    url
}

fn main() {}
