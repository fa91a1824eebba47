//! The serving side of the handshake on any bytes a caller could send, with and without a
//! cluster secret and `--require-same-module`: it never panics or hangs, and a caller it admits
//! speaks this protocol (and runs the same module when that is required).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netrun::wire::connection::accept;
use netrun::wire::message::Hello;
use netrun::wire::secure::ClusterKey;
use netrun_fuzz::runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the peer's settings, the rest is what the caller sends.
    let Some((&pick, sent)) = data.split_first() else {
        return;
    };
    let key = (pick & 1 == 1).then(|| ClusterKey::from_secret(b"fuzzing secret"));
    let module = "ab".repeat(32);
    let same_module = (pick & 2 == 2).then_some(module.as_str());
    let mut hello = Hello::client(MAX_FRAME);
    hello.module_hash = module.clone();
    runtime().block_on(async {
        let (mut caller, served) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let limit = Duration::from_secs(10);
            let accepted = accept(served, &hello, limit, MAX_FRAME, key.as_ref(), same_module);
            let Ok((mut reader, sender, remote)) = accepted.await else {
                return;
            };
            assert!(remote.check_compatible().is_ok(), "admitted {remote:?}");
            if same_module.is_some() && !remote.module_hash.is_empty() {
                assert_eq!(remote.module_hash, module, "admitted another module");
            }
            drop(sender);
            // Whatever follows the hello goes through the message reader until the end.
            while reader.next().await.is_ok() {}
        };
        let call = async {
            let _ = caller.write_all(sent).await;
            let _ = caller.shutdown().await;
            let mut answer = Vec::new();
            let _ = caller.read_to_end(&mut answer).await;
        };
        tokio::join!(serve, call);
    });
});
