//! What the fuzz targets share: running the runtime's async readers on fuzz input.

use std::sync::OnceLock;

/// One single-threaded runtime for every input, with its clock paused: a handshake that waits
/// for bytes that never come reaches its time limit at once instead of in ten seconds.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    })
}
