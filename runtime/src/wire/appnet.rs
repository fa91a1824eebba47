//! app-net's wire format, both ways: what a Python app-net peer sends and answers.
//!
//! app-net (the Python package this runtime re-imagines) opens one TCP connection per call,
//! sends one ASCII JSON object `{"connection": NAME, "args": [...], "kwargs": {...}}` and
//! reads one reply: the JSON value, a bare flag name (`NULL`, `INVALID_CONNECTION`, or one of
//! the app's own flags), or `{"payload": "error", "traceback": "..."}` for a remote exception;
//! the server closes the connection after the reply. A netrun hello starts with a frame
//! header's zero byte or the secured magic, never `{`, so one peeked byte tells the two apart
//! ([`is_appnet`]).
//!
//! Owns reading and writing those messages, on the serving side ([`read_request`],
//! [`write_reply`]) and the calling side ([`call`]). Both sides read until the JSON value is
//! complete, so messages over app-net's own 1024-byte read work here. Everything written is
//! ASCII, as app-net decodes it. What a request runs, and how a reply maps onto netrun's
//! outcomes, is the cluster layer's business (its `appnet` module).

use std::time::Duration;

use netrun_abi::names::flag;
use netrun_abi::{CallError, Outcome};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The keys app-net's client puts in `kwargs` for itself: the peer called and its socket
/// timeout. They are not arguments.
pub const CLIENT_KEYS: [&str; 2] = ["peer", "time_out"];

/// app-net's built-in connections, as app-net names them (`module.function`).
pub mod builtin {
    pub const INFO: &str = "net.defaults.handlers.info";
    pub const CONNECTIONS: &str = "net.defaults.handlers.connections";
    pub const PASS_THROUGH: &str = "net.defaults.handlers.pass_through";
    pub const NULL: &str = "net.defaults.handlers.null";
    pub const SUBSCRIPTION_HANDLER: &str = "net.defaults.handlers.subscription_handler";
}

/// app-net's built-ins, sorted, as `info` lists them.
pub const BUILTINS: [&str; 5] = [
    builtin::CONNECTIONS,
    builtin::INFO,
    builtin::NULL,
    builtin::PASS_THROUGH,
    builtin::SUBSCRIPTION_HANDLER,
];

/// app-net's name for netrun's built-in `function` (`info`, `connections`, `pass_through`,
/// `null`); any other name is the same in both.
pub fn connection_name(function: &str) -> &str {
    use netrun_abi::names::builtin as own;
    match function {
        own::INFO => builtin::INFO,
        own::CONNECTIONS => builtin::CONNECTIONS,
        own::PASS_THROUGH => builtin::PASS_THROUGH,
        own::NULL => builtin::NULL,
        other => other,
    }
}

/// Bytes read at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Whether a connection whose first byte is `first` speaks app-net.
pub fn is_appnet(first: u8) -> bool {
    first == b'{'
}

/// One call, as app-net sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The connection's name: a tag, or app-net's `module.function`.
    pub connection: String,
    pub args: Vec<Value>,
    /// Keyword arguments, app-net's own [`CLIENT_KEYS`] included.
    pub kwargs: Map<String, Value>,
}

impl Request {
    /// A call of `connection` with `args` and no keyword arguments.
    pub fn new(connection: &str, args: Vec<Value>) -> Request {
        Request {
            connection: connection.to_string(),
            args,
            kwargs: Map::new(),
        }
    }

    /// The seconds app-net's client waits for the reply (`time_out`), if it said.
    pub fn time_out(&self) -> Option<Duration> {
        let seconds = self.kwargs.get("time_out")?.as_f64()?;
        (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
    }

    /// The keyword arguments meant for the function: all but app-net's [`CLIENT_KEYS`].
    pub fn keyword_args(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.kwargs
            .iter()
            .filter(|(key, _)| !CLIENT_KEYS.contains(&key.as_str()))
    }

    /// The request as app-net's client sends it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "connection": self.connection,
            "args": self.args,
            "kwargs": self.kwargs,
        })
    }

    fn from_json(value: Value) -> Result<Request, AppNetError> {
        let Value::Object(mut object) = value else {
            return Err(AppNetError::Malformed(
                "a request is a JSON object with connection, args and kwargs".into(),
            ));
        };
        let connection = match object.remove("connection") {
            Some(Value::String(name)) => name,
            _ => {
                return Err(AppNetError::Malformed(
                    "the request names no connection (a string)".into(),
                ));
            }
        };
        let args = match object.remove("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args,
            Some(_) => return Err(AppNetError::Malformed("args is not a JSON array".into())),
        };
        let kwargs = match object.remove("kwargs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(kwargs)) => kwargs,
            Some(_) => return Err(AppNetError::Malformed("kwargs is not a JSON object".into())),
        };
        Ok(Request {
            connection,
            args,
            kwargs,
        })
    }
}

/// One answer, as app-net sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// What the function returned.
    Value(Value),
    /// A bare flag name: `NULL`, `INVALID_CONNECTION` or one of the app's.
    Flag(String),
    /// app-net's error packet: the remote exception's traceback (here, the error's message).
    Error(String),
}

impl Reply {
    /// The reply as app-net's server writes it: ASCII.
    pub fn to_text(&self) -> String {
        match self {
            Reply::Value(value) => ascii_json(value),
            Reply::Flag(name) => name.clone(),
            Reply::Error(traceback) => ascii_json(&serde_json::json!({
                "payload": "error",
                "traceback": traceback,
            })),
        }
    }

    /// What a reply's text means, as app-net's client reads it: JSON is a value (or the error
    /// packet); anything else is a flag name.
    pub fn from_text(text: &str) -> Reply {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) if object.get("payload") == Some(&"error".into()) => {
                let traceback = match object.get("traceback") {
                    Some(Value::String(traceback)) => traceback.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                Reply::Error(traceback)
            }
            Ok(value) => Reply::Value(value),
            Err(_) => Reply::Flag(text.trim().to_string()),
        }
    }
}

/// Why an app-net exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AppNetError {
    #[error("the connection closed before the request was complete")]
    Truncated,
    #[error("the request is over {max} bytes")]
    TooLarge { max: usize },
    #[error("malformed app-net request: {0}")]
    Malformed(String),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Reply {
    /// What the reply of `peer` to a call of `function` means in netrun's terms: app-net's
    /// error packet is a remote error carrying the traceback, `INVALID_CONNECTION` is an
    /// invalid connection, other flags stay flags (for the caller's flag handlers).
    pub fn into_outcome(self, peer: &str, function: &str) -> Outcome {
        match self {
            Reply::Value(value) => Outcome::Value(value.to_string().into_bytes()),
            Reply::Flag(name) if name == flag::INVALID_CONNECTION => {
                Outcome::Error(CallError::InvalidConnection {
                    peer: peer.to_string(),
                    function: function.to_string(),
                    available: Vec::new(),
                })
            }
            Reply::Flag(name) => Outcome::Flag(name),
            Reply::Error(traceback) => Outcome::Error(CallError::Remote {
                peer: peer.to_string(),
                function: function.to_string(),
                kind: "app-net error".to_string(),
                message: traceback.trim_end().to_string(),
            }),
        }
    }
}

/// Reads one request of at most `max` bytes, waiting at most `limit` for all of it.
pub async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    max: usize,
    limit: Duration,
) -> Result<Request, AppNetError> {
    let read = async {
        let mut buf = Vec::new();
        loop {
            if let Some(value) = complete_value(&buf)? {
                return Request::from_json(value);
            }
            if buf.len() >= max {
                return Err(AppNetError::TooLarge { max });
            }
            if read_some(stream, &mut buf, max).await? == 0 {
                return Err(AppNetError::Truncated);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| AppNetError::TimedOut(limit))?
}

/// Writes `reply` and closes the sending side, as app-net's server does.
pub async fn write_reply(
    stream: &mut (impl AsyncWrite + Unpin),
    reply: &Reply,
) -> std::io::Result<()> {
    stream.write_all(reply.to_text().as_bytes()).await?;
    stream.shutdown().await
}

/// Where an app-net call failed: nothing was sent, or the outcome is unknown.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// Connecting failed or timed out: the call was not sent.
    #[error("{0}")]
    NotSent(String),
    /// The call was sent and no whole reply came back.
    #[error("{0}")]
    Lost(String),
    /// The call was sent and the reply did not come back in time.
    #[error("no reply within {0:?}")]
    TimedOut(Duration),
}

/// Calls `request` on the app-net peer at `address`, within `timeout`, accepting a reply of
/// less than `max` bytes.
pub async fn call(
    address: &str,
    request: &Request,
    timeout: Duration,
    max: usize,
) -> Result<Reply, CallFailure> {
    let started = tokio::time::Instant::now();
    let connect = tokio::time::timeout(timeout, TcpStream::connect(address));
    let mut stream = match connect.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(CallFailure::NotSent(e.to_string())),
        Err(_) => {
            return Err(CallFailure::NotSent(format!(
                "connecting took over {timeout:?}"
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    let exchange = async {
        let text = ascii_json(&request.to_json());
        stream.write_all(text.as_bytes()).await?;
        read_reply(&mut stream, max).await
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(CallFailure::Lost(e.to_string())),
        Err(_) => Err(CallFailure::TimedOut(timeout)),
    }
}

/// Reads a reply until the server closes, as app-net's server does after every reply (a bare
/// flag has no end of its own).
async fn read_reply(stream: &mut TcpStream, max: usize) -> Result<Reply, AppNetError> {
    let mut buf = Vec::new();
    while read_some(stream, &mut buf, max).await? > 0 {
        if buf.len() >= max {
            return Err(AppNetError::TooLarge { max });
        }
    }
    if buf.is_empty() {
        return Err(AppNetError::Truncated);
    }
    Ok(Reply::from_text(&String::from_utf8_lossy(&buf)))
}

/// Appends what the stream has (up to `max` bytes in all) to `buf`; 0 at its end.
async fn read_some(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let start = buf.len();
    let room = (max - start).min(READ_CHUNK);
    buf.resize(start + room, 0);
    let read = stream.read(&mut buf[start..]).await;
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// The JSON value `buf` starts with, once it is complete; `None` while more is to come.
fn complete_value(buf: &[u8]) -> Result<Option<Value>, AppNetError> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    match values.next() {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(AppNetError::Malformed(e.to_string())),
    }
}

/// `value` as JSON text in ASCII: every other character escaped, as Python's `json.dumps`
/// writes it (app-net decodes what it reads as ASCII).
pub fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    // Outside ASCII, serde_json writes characters only inside strings, where an escape means
    // the same.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_request_is_read_until_its_value_is_complete() {
        let big = "x".repeat(5000);
        let text = format!(
            r#"{{"connection": "greet", "args": ["{big}"], "kwargs": {{"peer": ["127.0.0.1", 3010], "time_out": 0.5}}}}"#
        );
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // In small pieces, and the connection left open, as app-net's client leaves it.
            for piece in text.as_bytes().chunks(100) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let request = read_request(&mut server, 1 << 20, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(request.connection, "greet");
        assert_eq!(request.args, vec![json!(big)]);
        assert_eq!(request.time_out(), Some(Duration::from_millis(500)));
        assert_eq!(request.keyword_args().count(), 0);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 4] = [
            (b"{\"args\": []}", "names no connection"),
            (b"{\"connection\": \"f\", \"args\": 3}", "args is not"),
            (b"{\"connection\": \"f\", \"kwargs\": []}", "kwargs is not"),
            (b"{\"connection\" 1}", "malformed"),
        ];
        for (bytes, expected) in cases {
            let mut reader = bytes;
            let e = read_request(&mut reader, 1024, Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
        }
        let mut cut: &[u8] = b"{\"connection\": \"f\"";
        let e = read_request(&mut cut, 1024, Duration::from_secs(1)).await;
        assert!(matches!(e, Err(AppNetError::Truncated)), "{e:?}");
        let mut endless: &[u8] = &[b' '; 2048];
        let mut long = b"{\"connection\": \"".to_vec();
        long.extend_from_slice(endless);
        let e = read_request(&mut &long[..], 1024, Duration::from_secs(1)).await;
        assert!(
            matches!(e, Err(AppNetError::TooLarge { max: 1024 })),
            "{e:?}"
        );
        let e = read_request(&mut endless, 1 << 20, Duration::from_secs(1)).await;
        assert!(matches!(e, Err(AppNetError::Truncated)), "{e:?}");
    }

    #[test]
    fn replies_read_back_as_app_net_reads_them() {
        let cases = [
            Reply::Value(json!({"a": [1, 2.5, "é😀"], "b": null})),
            Reply::Value(json!("NULL")),
            Reply::Flag("NULL".into()),
            Reply::Flag("INVALID_CONNECTION".into()),
            Reply::Error("Traceback: boom".into()),
        ];
        for reply in cases {
            let text = reply.to_text();
            assert!(text.is_ascii(), "{text}");
            assert_eq!(Reply::from_text(&text), reply, "{text}");
        }
        assert_eq!(
            ascii_json(&json!("é😀")),
            r#""\u00e9\ud83d\ude00""#,
            "as Python's json.dumps writes it"
        );
    }
}
