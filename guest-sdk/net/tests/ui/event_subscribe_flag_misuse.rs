#[net::event]
fn no_name() -> u32 {
    1
}

#[net::event("")]
fn empty_name() -> u32 {
    1
}

#[net::subscribe("news", hubs_only = "yes")]
fn not_a_bool(_message: String) {}

#[net::subscribe("news", nearby = true)]
fn unknown_filter(_message: String) {}

#[net::subscribe("news", groups = [1, 2])]
fn groups_not_strings(_message: String) {}

#[net::flag("BUSY")]
fn one_parameter(function: String) -> String {
    function
}

#[net::flag("BUSY")]
fn wrong_types(_function: u32, peer: String) -> String {
    peer
}

fn main() {}
