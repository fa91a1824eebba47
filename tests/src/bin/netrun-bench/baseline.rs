//! The floor every call scenario is compared with: a plain Rust TCP ping-pong with
//! length-prefixed frames (a `u32` length, then the bytes) on one persistent loopback
//! connection, with Nagle off, as netrun's own connections are.
//!
//! How a thread waits for the other side decides much of a small round trip on a VM: a thread
//! asleep in `read` must be woken by the other's `send` (an interrupt to a halted virtual CPU
//! when the two run on different ones) and scheduled again. Measured on one 2-core VM, the same
//! ping-pong took 4 µs in one run and 50 µs in the next, as the scheduler placed its two
//! threads. netrun's peers poll for what they expect for up to 150 µs before sleeping
//! (`runtime/src/wire/spin.rs`), letting other threads on their CPU run between polls once
//! they have waited a while, so the floor waits the same way ([`Wait::Awake`]): the fastest a
//! plain ping-pong gets, whichever CPUs it lands on. The sleeping kind ([`Wait::Asleep`]) is
//! measured too and reported beside it.
//!
//! With many frames in flight, each end writes what it has to send in one write, as netrun's
//! connections do: the echo answers all the frames it read together in one write, and the
//! caller sends as many new frames at once as it read echoes.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netrun::wire::spin::{self, SHARE_CPU_AFTER, SPIN};

/// How both ends of a ping-pong wait for the other's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Blocking reads and writes: asleep until the kernel wakes the thread.
    Asleep,
    /// Polls without blocking for up to [`SPIN`] (past [`SHARE_CPU_AFTER`], giving its CPU to
    /// any other thread ready on it between polls), then sleeps until the socket is ready.
    Awake,
}

/// An echo server on 127.0.0.1: answers every frame with the same frame, one thread per
/// connection, waiting for frames as `wait` says. Runs until the process ends.
pub struct EchoServer {
    address: SocketAddr,
    wait: Wait,
}

impl EchoServer {
    pub fn start(wait: Wait) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the baseline echo server");
        let address = listener.local_addr().expect("its address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || echo(Socket::new(stream, wait)));
            }
        });
        EchoServer { address, wait }
    }

    fn connect(&self) -> Socket {
        let stream = TcpStream::connect(self.address).expect("connect to the baseline echo");
        Socket::new(stream, self.wait)
    }

    /// `calls` round trips of `size` bytes, one at a time: how long each took.
    pub fn ping_pong(&self, calls: usize, size: usize) -> Vec<Duration> {
        let mut stream = self.connect();
        let frame = frame(size);
        let mut back = vec![0u8; size];
        (0..calls)
            .map(|_| {
                let started = Instant::now();
                stream.write_all(&frame).expect("send a frame");
                read_frame(&mut stream, &mut back).expect("read the echo");
                started.elapsed()
            })
            .collect()
    }

    /// `calls` round trips of `size` bytes with `depth` in flight at once, each end writing
    /// what it has to send in one write (as netrun's connections do): how long each took,
    /// from its frame's write to its echo's read (echoes come back in order).
    pub fn in_flight(&self, calls: usize, depth: usize, size: usize) -> Vec<Duration> {
        self.pipeline(calls, depth, size).0
    }

    /// As [`EchoServer::in_flight`]: the wall time of all the round trips.
    pub fn pipelined(&self, calls: usize, depth: usize, size: usize) -> Duration {
        self.pipeline(calls, depth, size).1
    }

    /// The round trips of [`EchoServer::in_flight`], each one's time, and the time of all
    /// (the connection made before either clock starts).
    fn pipeline(&self, calls: usize, depth: usize, size: usize) -> (Vec<Duration>, Duration) {
        let stream = self.connect();
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream.try_clone());
        let mut writer = stream;
        let frame = frame(size);
        // The most frames ever sent at once, made once.
        let window = frame.repeat(depth);
        let mut back = vec![0u8; size];
        let mut sent = VecDeque::with_capacity(depth);
        let mut took = Vec::with_capacity(calls);
        let mut send = |count: usize, sent: &mut VecDeque<Instant>| {
            sent.extend(std::iter::repeat_n(Instant::now(), count));
            writer
                .write_all(&window[..count * frame.len()])
                .expect("send frames");
        };
        let started = Instant::now();
        send(depth.min(calls), &mut sent);
        while !sent.is_empty() {
            // The echo waited for, then every other one already read with it (no system call,
            // so one clock read times them all).
            let mut answered = 0;
            loop {
                read_frame(&mut reader, &mut back).expect("read an echo");
                answered += 1;
                if !holds_a_frame(reader.buffer()) {
                    break;
                }
            }
            assert!(answered <= sent.len(), "more echoes than frames sent");
            let now = Instant::now();
            took.extend(sent.drain(..answered).map(|sent_at| now - sent_at));
            let more = answered.min(calls - took.len() - sent.len());
            if more > 0 {
                send(more, &mut sent);
            }
        }
        (took, started.elapsed())
    }
}

fn frame(size: usize) -> Vec<u8> {
    let mut frame = (size as u32).to_be_bytes().to_vec();
    frame.resize(4 + size, 7);
    frame
}

fn read_frame(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    buf.resize(u32::from_be_bytes(header) as usize, 0);
    stream.read_exact(buf)
}

/// Whether `buffered` starts with a whole frame.
fn holds_a_frame(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(header) => buffered.len() - 4 >= u32::from_be_bytes(*header) as usize,
        None => false,
    }
}

/// Echoes every frame; the echoes of the frames read together leave together, in one write.
fn echo(mut stream: Socket) {
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream.try_clone());
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while read_frame(&mut reader, &mut buf).is_ok() {
        out.extend_from_slice(&(buf.len() as u32).to_be_bytes());
        out.extend_from_slice(&buf);
        if holds_a_frame(reader.buffer()) {
            continue;
        }
        if stream.write_all(&out).is_err() {
            return;
        }
        out.clear();
    }
}

/// One end of a ping-pong connection, waiting for the socket as its [`Wait`] says.
struct Socket {
    stream: TcpStream,
    wait: Wait,
}

impl Socket {
    fn new(stream: TcpStream, wait: Wait) -> Socket {
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_nonblocking(wait == Wait::Awake)
            .expect("set the socket's blocking mode");
        Socket { stream, wait }
    }

    /// Another handle on the same connection (and the same blocking mode).
    fn try_clone(&self) -> Socket {
        Socket {
            stream: self.stream.try_clone().expect("clone the socket"),
            wait: self.wait,
        }
    }

    /// Runs `io` until it does not answer `WouldBlock`: polling for up to [`SPIN`] (sharing
    /// the CPU past [`SHARE_CPU_AFTER`]), then asleep in `poll(2)` until the socket is ready
    /// for `events`.
    fn awake<T>(
        &mut self,
        events: libc::c_short,
        mut io: impl FnMut(&mut TcpStream) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let started = Instant::now();
        loop {
            match io(&mut self.stream) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let waited = started.elapsed();
            if waited >= SHARE_CPU_AFTER {
                spin::share_cpu();
            }
            if waited >= SPIN {
                let mut ready = libc::pollfd {
                    fd: self.stream.as_raw_fd(),
                    events,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                if unsafe { libc::poll(&mut ready, 1, -1) } < 0 {
                    let error = std::io::Error::last_os_error();
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.wait {
            Wait::Asleep => self.stream.read(buf),
            Wait::Awake => self.awake(libc::POLLIN, |stream| stream.read(buf)),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.wait {
            Wait::Asleep => self.stream.write(buf),
            Wait::Awake => self.awake(libc::POLLOUT, |stream| stream.write(buf)),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_holds_a_frame_once_its_header_and_all_its_bytes_are_in() {
        assert!(!holds_a_frame(&[]));
        assert!(!holds_a_frame(&[0, 0, 0]));
        assert!(holds_a_frame(&[0, 0, 0, 0]));
        assert!(!holds_a_frame(&[0, 0, 0, 2, 9]));
        assert!(holds_a_frame(&[0, 0, 0, 2, 9, 9]));
        assert!(holds_a_frame(&[0, 0, 0, 1, 9, 0, 0]));
    }

    /// A frame of `size` bytes that differ from one another, echoed whole by a server of each
    /// kind: large enough (4 MiB) that a non-blocking end meets a full socket buffer both ways.
    #[test]
    fn both_kinds_of_echo_answer_every_frame_whole() {
        for wait in [Wait::Awake, Wait::Asleep] {
            let server = EchoServer::start(wait);
            let mut socket = server.connect();
            for size in [0, 16, 4 << 20] {
                let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let mut frame = (size as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                socket.write_all(&frame).expect("send a frame");
                let mut back = Vec::new();
                read_frame(&mut socket, &mut back).expect("read the echo");
                assert!(back == body, "{wait:?}: the echo of {size} bytes differs");
            }
            assert_eq!(server.ping_pong(10, 16).len(), 10, "{wait:?}");
            assert!(server.pipelined(100, 8, 16) > Duration::ZERO, "{wait:?}");
            assert_eq!(server.in_flight(100, 8, 16).len(), 100, "{wait:?}");
        }
    }
}
