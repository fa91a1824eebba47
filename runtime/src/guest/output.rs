//! Where a guest's stdout and stderr go: the peer's own, a whole line at a time.
//!
//! Each instance has its own line buffer per stream. Complete lines are written to the
//! process's stdout (or stderr) under its lock, so the lines of instances running in parallel
//! (`--workers`) never mix within a line. An unfinished line waits for its end, for the end of
//! the call that wrote it, or until it reaches [`MAX_LINE`] bytes, when it is written as a line
//! of its own; and when the guest reads stdin ([`PromptingStdin`]), it is written as it is, so
//! that a prompt shows before the input it asks for.
//!
//! Memory stays bounded whatever the guest writes: WASI hands writes over in chunks of at most
//! a few KiB, and no more than [`MAX_LINE`] bytes wait in a buffer. Writing blocks while the
//! process's own output is blocked (a full pipe nobody reads), as it would for any process.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// The longest line written as the guest wrote it; a longer one is cut into lines this long.
pub const MAX_LINE: usize = 64 * 1024;

/// Most bytes the guest may hand over in one write.
const WRITE_PERMIT: usize = 64 * 1024;

/// The process stream a guest stream goes to.
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    Stderr,
    /// Each write, kept (for tests).
    #[cfg(test)]
    Kept(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    /// Writes `parts` as one piece, under the process stream's lock.
    fn write(&self, parts: &[&[u8]]) -> io::Result<()> {
        fn all(mut out: impl Write, parts: &[&[u8]]) -> io::Result<()> {
            for part in parts {
                out.write_all(part)?;
            }
            out.flush()
        }
        match self {
            Sink::Stdout => all(io::stdout().lock(), parts),
            Sink::Stderr => all(io::stderr().lock(), parts),
            #[cfg(test)]
            Sink::Kept(kept) => all(&mut *kept.lock().unwrap(), parts),
        }
    }
}

/// One instance's stdout or stderr. Clones share the line being written.
#[derive(Clone)]
pub struct GuestOutput {
    sink: Sink,
    line: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    pub fn new(sink: Sink) -> GuestOutput {
        GuestOutput {
            sink,
            line: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Takes `bytes` from the guest; writes the lines they complete.
    fn push(&self, bytes: &[u8]) -> io::Result<()> {
        let mut line = self.line.lock().expect("guest output lock");
        let rest = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                let (lines, rest) = bytes.split_at(end + 1);
                self.sink.write(&[&line, lines])?;
                line.clear();
                rest
            }
            None => bytes,
        };
        line.extend_from_slice(rest);
        while line.len() >= MAX_LINE {
            self.sink.write(&[&line[..MAX_LINE], b"\n"])?;
            line.drain(..MAX_LINE);
        }
        Ok(())
    }

    /// Writes the unfinished line, if any, as a line (at the end of a call).
    pub fn finish_line(&self) {
        self.write_unfinished(b"\n");
    }

    /// Writes the unfinished line, if any, as it is (a prompt, before reading stdin).
    fn write_prompt(&self) {
        self.write_unfinished(b"");
    }

    fn write_unfinished(&self, end: &[u8]) {
        let mut line = self.line.lock().expect("guest output lock");
        if !line.is_empty() {
            if let Err(e) = self.sink.write(&[&line, end]) {
                tracing::debug!("cannot write the guest's output: {e}");
            }
            line.clear();
        }
    }
}

/// The process's stdin for a guest (an entry's): before each read it writes what the guest
/// left unfinished on stdout and stderr, such as a `print!("Message: ")` prompt.
pub struct PromptingStdin {
    outputs: [GuestOutput; 2],
}

impl PromptingStdin {
    pub fn new(outputs: [GuestOutput; 2]) -> PromptingStdin {
        PromptingStdin { outputs }
    }

    fn prompt(&self) {
        for output in &self.outputs {
            output.write_prompt();
        }
    }
}

impl IsTerminal for PromptingStdin {
    fn is_terminal(&self) -> bool {
        io::IsTerminal::is_terminal(&io::stdin())
    }
}

impl StdinStream for PromptingStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(PromptedInput {
            prompts: PromptingStdin::new(self.outputs.clone()),
            input: StdinStream::p2_stream(&wasmtime_wasi::cli::stdin()),
        })
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        StdinStream::async_stream(&wasmtime_wasi::cli::stdin())
    }
}

/// The stream WASI reads an entry's stdin through.
struct PromptedInput {
    prompts: PromptingStdin,
    input: Box<dyn InputStream>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for PromptedInput {
    async fn ready(&mut self) {
        self.prompts.prompt();
        self.input.ready().await;
    }
}

impl InputStream for PromptedInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.prompts.prompt();
        self.input.read(size)
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    /// Lines are written as they complete; an unfinished one waits (see the module docs).
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len().min(WRITE_PERMIT);
        Poll::Ready(self.push(&buf[..len]).map(|()| len))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.finish_line();
        Poll::Ready(Ok(()))
    }
}

impl Drop for GuestOutput {
    fn drop(&mut self) {
        // The last clone writes what is left.
        if Arc::strong_count(&self.line) == 1 {
            self.finish_line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> (GuestOutput, Arc<Mutex<Vec<u8>>>) {
        let kept = Arc::new(Mutex::new(Vec::new()));
        (GuestOutput::new(Sink::Kept(kept.clone())), kept)
    }

    #[test]
    fn complete_lines_pass_and_the_unfinished_one_waits() {
        let (output, kept) = kept();
        output.push(b"one\ntw").unwrap();
        assert_eq!(kept.lock().unwrap().as_slice(), b"one\n");
        output.push(b"o\nthr").unwrap();
        assert_eq!(kept.lock().unwrap().as_slice(), b"one\ntwo\n");
        output.finish_line();
        assert_eq!(kept.lock().unwrap().as_slice(), b"one\ntwo\nthr\n");
        output.finish_line();
        assert_eq!(kept.lock().unwrap().as_slice(), b"one\ntwo\nthr\n");
    }

    #[test]
    fn a_line_without_end_is_cut_at_max_line_and_memory_stays_bounded() {
        let (output, kept) = kept();
        let chunk = vec![b'x'; 4096];
        for _ in 0..(3 * MAX_LINE / chunk.len()) {
            output.push(&chunk).unwrap();
            assert!(output.line.lock().unwrap().len() < MAX_LINE);
        }
        let kept = kept.lock().unwrap();
        let lines: Vec<&[u8]> = kept.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|line| line.len() == MAX_LINE + 1));
    }

    #[test]
    fn a_prompt_is_written_as_it_is_before_a_read() {
        let (output, kept) = kept();
        output.push(b"Message: ").unwrap();
        assert!(kept.lock().unwrap().is_empty());
        PromptingStdin::new([output.clone(), output.clone()]).prompt();
        assert_eq!(kept.lock().unwrap().as_slice(), b"Message: ");
        output.finish_line();
        assert_eq!(kept.lock().unwrap().as_slice(), b"Message: ");
    }

    #[test]
    fn the_last_clone_writes_what_is_left() {
        let (output, kept) = kept();
        let stream = output.clone();
        output.push(b"tail").unwrap();
        drop(output);
        assert!(kept.lock().unwrap().is_empty());
        drop(stream);
        assert_eq!(kept.lock().unwrap().as_slice(), b"tail\n");
    }
}
