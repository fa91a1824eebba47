//! The floor every call scenario is compared with: a plain Rust TCP ping-pong with
//! length-prefixed frames (a `u32` length, then the bytes) on one persistent loopback
//! connection, with Nagle off, as netrun's own connections are.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// An echo server on 127.0.0.1: answers every frame with the same frame, one thread per
/// connection. Runs until the process ends.
pub struct EchoServer {
    address: SocketAddr,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the baseline echo server");
        let address = listener.local_addr().expect("its address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || echo(stream));
            }
        });
        EchoServer { address }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).expect("connect to the baseline echo");
        stream.set_nodelay(true).expect("nodelay");
        stream
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

    /// `calls` round trips of `size` bytes with `depth` in flight at once: the wall time.
    pub fn pipelined(&self, calls: usize, depth: usize, size: usize) -> Duration {
        let stream = self.connect();
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap());
        let mut writer = stream;
        let frame = frame(size);
        let mut back = vec![0u8; size];
        let started = Instant::now();
        let mut sent = 0;
        // Fill the window in one write, then send one for each answer read.
        let first = depth.min(calls);
        writer
            .write_all(&frame.repeat(first))
            .expect("send the window");
        sent += first;
        for _ in 0..calls {
            read_frame(&mut reader, &mut back).expect("read an echo");
            if sent < calls {
                writer.write_all(&frame).expect("send a frame");
                sent += 1;
            }
        }
        started.elapsed()
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

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap());
    let mut buf = Vec::new();
    while read_frame(&mut reader, &mut buf).is_ok() {
        let mut out = (buf.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}
