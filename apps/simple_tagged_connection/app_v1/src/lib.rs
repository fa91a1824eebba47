//! Version 1 of the original app-net example `simple_tagged_connection` (`app_v1.py`), built as
//! `target/apps/app_v1.wasm`. Run it in group `app_v1`:
//!
//! ```text
//! NET_GROUP=app_v1 netrun target/apps/app_v1.wasm
//! ```
//!
//! Its `connected_function` is registered under the tag `myTaggedFunction`, so a peer running
//! another version of the app (`app_v2.wasm`) can still call it by that tag, as long as the
//! types agree: the call carries a type fingerprint, and a peer whose function has other types
//! refuses it with a "contract mismatch" error.

/// Returns the message with " Version 1" appended.
#[net::connect("myTaggedFunction")]
fn connected_function(message: String) -> String {
    message + " Version 1"
}
