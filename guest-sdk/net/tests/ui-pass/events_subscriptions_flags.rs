//! Every shape of event, subscription and flag handler the macros accept, and a connected
//! function that answers a flag.

#[net::event("news")]
fn publish(headline: String, mut priority: u8) -> (String, u8) {
    priority += 1;
    if headline.is_empty() {
        return (String::from("(none)"), priority);
    }
    (headline, priority)
}

#[net::event("tick")]
fn tick() {}

#[net::subscribe("news")]
fn on_news(headline: String, priority: u8) {
    let _ = (headline, priority);
}

#[net::subscribe("tick", groups = ["a", "b"], hubs_only = true, on_host = false)]
fn on_tick() -> u32 {
    0
}

#[net::subscribe("news", peers = "127.0.0.1:3010")]
fn from_one_peer(news: (String, u8)) {
    let _ = news;
}

#[net::flag("BUSY")]
fn busy(function: String, peer: net::Peer) -> String {
    format!("{function} on {}", peer.id)
}

#[net::flag("LATER")]
fn later() -> u32 {
    7
}

#[net::connect]
fn reserve(seats: u32) -> Result<u32, net::Flag> {
    if seats > 10 {
        return Err(net::Flag::new("BUSY"));
    }
    Ok(seats)
}

fn main() {
    // Local calls stay plain Rust calls.
    assert_eq!(publish("x".into(), 1), ("x".to_string(), 2));
    tick();
    on_news("y".into(), 3);
    assert_eq!(on_tick(), 0);
    assert_eq!(later(), 7);
    assert_eq!(reserve(2), Ok(2));
    assert_eq!(reserve(11), Err(net::Flag::new("BUSY")));
    let _: fn(&net::Peer, u32) -> Result<u32, net::Error> = reserve::on;
}
