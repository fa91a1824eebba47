//! The bridge to app-net: what a netrun peer answers an app-net request with.
//!
//! An app-net request names a connection: one of app-net's built-ins, under app-net's names
//! ([`crate::wire::appnet::BUILTINS`]), or one of the module's connected functions, by its
//! registered name (its tag, the bridge app-net's `@net.connect("tag")` and
//! `#[net::connect("tag")]` share). Functions
//! run through the JSON bridge; keyword arguments fill the parameters of the same names. The
//! outcome goes back in app-net's terms: the JSON value, a bare flag, or app-net's error packet
//! with the error's message as its traceback (what app-net raises as `RemoteError`). `info`
//! answers in the shape app-net's discovery reads, so netrun peers appear in a Python peer's
//! `net.peers()`. app-net's `subscription_handler` subscribes a Python peer to this peer's
//! events, and a Python hub delivers its events to this module's subscription handlers by
//! name, through their JSON entries.
//!
//! Owns the names and the mapping; the format on the wire is [`crate::wire::appnet`]'s, and
//! what a function runs is the router's.

use std::collections::BTreeMap;

use netrun_abi::manifest::Record;
use netrun_abi::names::flag;
use netrun_abi::{CallError, Outcome, PeerDetails};
use serde_json::{Map, Value, json};

use crate::wire::appnet::{BUILTINS, Reply, Request, builtin};
use crate::wire::message::{Call, CallKind, Encoding};

/// What real app-net reads of a reply: `info` must fit, or Python peers cannot list this one.
pub const APPNET_READ: usize = 1024;

/// Warns when `info` in app-net's shape is over what app-net reads of a reply: Python peers
/// would not list this peer.
pub fn check_info_size(details: &PeerDetails) {
    let size = info_size(details);
    if size > APPNET_READ {
        tracing::warn!(
            "this peer's info in app-net's shape is {size} bytes, over the {APPNET_READ} app-net reads of a reply: Python app-net peers will not list it (its {} connection names are too many or too long)",
            details.connections.len()
        );
    }
}

/// The bytes of `info` in app-net's shape, as sent.
fn info_size(details: &PeerDetails) -> usize {
    crate::wire::appnet::ascii_json(&info(details)).len()
}

/// What a request asks of this peer.
#[derive(Debug, PartialEq)]
pub enum Asked {
    /// A built-in, answered at once.
    Answer(Reply),
    /// A call of one of the module's functions, or the delivery of an event to one of its
    /// subscription handlers, through the JSON bridge.
    Run(Call),
    /// app-net's `subscription_handler`: the peer at `host:port` subscribes its `connection`
    /// to `event`.
    Subscribe {
        event: String,
        host: String,
        port: u16,
        connection: String,
    },
}

/// What `request` asks of a peer described by `details`, whose module offers `functions` and
/// the subscription `handlers` (an app-net hub delivers its events to them by name).
pub fn understand(
    request: &Request,
    details: &PeerDetails,
    functions: &BTreeMap<String, Record>,
    handlers: &BTreeMap<String, Record>,
) -> Asked {
    let answer = match request.connection.as_str() {
        builtin::INFO => Reply::Value(info(details)),
        builtin::CONNECTIONS => Reply::Value(Value::String(format!(
            "Connections on {}:\n\t{}",
            details.tag,
            connections(details).join("\n\t")
        ))),
        builtin::PASS_THROUGH => pass_through(request),
        builtin::NULL => Reply::Flag(flag::NULL.to_string()),
        builtin::SUBSCRIPTION_HANDLER => match subscription(request) {
            Ok(asked) => return asked,
            Err(message) => Reply::Error(message),
        },
        name => {
            let (record, kind) = match (functions.get(name), handlers.get(name)) {
                (Some(record), _) => (record, CallKind::Function),
                (None, Some(record)) => (record, CallKind::Event),
                (None, None) => return Asked::Answer(Reply::Flag(flag::INVALID_CONNECTION.into())),
            };
            match arguments(request, record) {
                Ok(args) => return Asked::Run(json_call(kind, name, args, request)),
                Err(message) => Reply::Error(message),
            }
        }
    };
    Asked::Answer(answer)
}

/// app-net's `subscription_handler(event, host, port, connection)`.
fn subscription(request: &Request) -> Result<Asked, String> {
    let usage = || {
        format!(
            "{} takes (event, host, port, connection), not {}",
            builtin::SUBSCRIPTION_HANDLER,
            Value::Array(request.args.clone())
        )
    };
    let [event, host, port, connection] = request.args.as_slice() else {
        return Err(usage());
    };
    let text = |v: &Value| v.as_str().map(str::to_string).ok_or_else(usage);
    Ok(Asked::Subscribe {
        event: text(event)?,
        host: text(host)?,
        port: port
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(usage)?,
        connection: text(connection)?,
    })
}

/// The answer to a call of a module's function, in app-net's terms.
pub fn reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Value(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => Reply::Value(value),
            Err(e) => Reply::Error(format!("the function's JSON result is malformed: {e}")),
        },
        Outcome::ValueWithBlobs(_) => {
            Reply::Error("the function answered bincode with blobs, not JSON".to_string())
        }
        Outcome::Flag(name) => Reply::Flag(name),
        Outcome::Error(CallError::InvalidConnection { .. }) => {
            Reply::Flag(flag::INVALID_CONNECTION.to_string())
        }
        Outcome::Error(e) => Reply::Error(e.to_string()),
    }
}

/// `info` in the shape app-net's discovery reads (`tag, host, port, group, hub, connections,
/// subscriptions, flags`), and what it is: `runtime`, `module_hash`.
pub fn info(details: &PeerDetails) -> Value {
    json!({
        "tag": details.tag,
        "host": details.host,
        "port": details.port,
        "group": details.group,
        "hub": details.hub,
        "connections": connections(details),
        "subscriptions": details.events,
        "flags": details.flags,
        "runtime": format!("netrun {}", details.runtime_version),
        "module_hash": details.module_hash,
    })
}

/// What an app-net peer may call: the module's functions and app-net's built-ins, sorted.
fn connections(details: &PeerDetails) -> Vec<String> {
    let own = netrun_abi::names::builtin::ALL;
    let mut all: Vec<String> = details
        .connections
        .iter()
        .filter(|name| !own.contains(&name.as_str()))
        .cloned()
        .chain(BUILTINS.iter().map(|name| name.to_string()))
        .collect();
    all.sort();
    all
}

/// app-net's `pass_through`: the one argument, else `[args, kwargs]`.
fn pass_through(request: &Request) -> Reply {
    let kwargs: Map<String, Value> = request
        .keyword_args()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match request.args.as_slice() {
        [one] if kwargs.is_empty() => Reply::Value(one.clone()),
        args => Reply::Value(json!([args, kwargs])),
    }
}

/// The arguments of a call of `record`: the positional ones, then its other parameters from
/// the keyword arguments of their names.
fn arguments(request: &Request, record: &Record) -> Result<Vec<Value>, String> {
    let name = &record.name;
    let params = &record.params;
    if request.args.len() > params.len() {
        return Err(format!(
            "{name}() takes {} arguments but {} were given",
            params.len(),
            request.args.len()
        ));
    }
    // Checked in Python's order: unknown names, then names given twice, then what is missing.
    for (key, _) in request.keyword_args() {
        match params.iter().position(|p| &p.name == key) {
            None => {
                return Err(format!(
                    "{name}() got an unexpected keyword argument '{key}'"
                ));
            }
            Some(i) if i < request.args.len() => {
                return Err(format!("{name}() got multiple values for argument '{key}'"));
            }
            Some(_) => {}
        }
    }
    let mut args = request.args.clone();
    for param in &params[args.len()..] {
        let given = request.keyword_args().find(|(key, _)| **key == param.name);
        match given {
            Some((_, value)) => args.push(value.clone()),
            None => {
                return Err(format!(
                    "{name}() missing argument '{}' ({})",
                    param.name, param.ty
                ));
            }
        }
    }
    Ok(args)
}

/// A call of `function` (a connected function, or a subscription handler for an event) through
/// the JSON bridge with `args`, given the time app-net's client waits.
fn json_call(kind: CallKind, function: &str, args: Vec<Value>, request: &Request) -> Call {
    Call {
        id: 0,
        chain: None,
        kind,
        function: function.to_string(),
        encoding: Encoding::Json,
        args: Value::Array(args).to_string().into_bytes(),
        contract: None,
        time_left_ms: request.time_out().map(|t| t.as_millis() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netrun_abi::manifest::{ItemKind, Param};

    fn request(connection: &str, args: Value, kwargs: Value) -> Request {
        Request {
            connection: connection.into(),
            args: serde_json::from_value(args).unwrap(),
            kwargs: serde_json::from_value(kwargs).unwrap(),
        }
    }

    fn functions() -> BTreeMap<String, Record> {
        let params = vec![
            Param {
                name: "a".into(),
                ty: "i64".into(),
            },
            Param {
                name: "b".into(),
                ty: "i64".into(),
            },
        ];
        let add = Record::new(ItemKind::Connect, "add", "add", params, "i64");
        BTreeMap::from([("add".to_string(), add)])
    }

    fn details() -> PeerDetails {
        PeerDetails {
            tag: "id".into(),
            host: "127.0.0.1".into(),
            port: 3010,
            group: "None".into(),
            hub: true,
            connections: vec!["add".into(), "info".into(), "pass_through".into()],
            events: vec!["ev".into()],
            subscribers: vec![],
            subscriptions: vec![],
            flags: vec!["INVALID_CONNECTION".into(), "NULL".into()],
            module_hash: "ab".into(),
            runtime_version: "0.1.0".into(),
            appnet: true,
        }
    }

    fn run(request: &Request) -> Result<Call, Reply> {
        match understand(request, &details(), &functions(), &BTreeMap::new()) {
            Asked::Run(call) => Ok(call),
            Asked::Answer(reply) => Err(reply),
            other => panic!("not a call or an answer: {other:?}"),
        }
    }

    #[test]
    fn keyword_arguments_fill_parameters_and_app_nets_own_are_dropped() {
        let kwargs = json!({"b": 2, "peer": ["127.0.0.1", 3010], "time_out": 1.5});
        let call = run(&request("add", json!([1]), kwargs)).unwrap();
        assert_eq!(call.args, b"[1,2]");
        assert_eq!(
            (call.encoding, call.time_left_ms),
            (Encoding::Json, Some(1500))
        );
        for (args, kwargs, expected) in [
            (
                json!([1, 2, 3]),
                json!({}),
                "add() takes 2 arguments but 3 were given",
            ),
            (json!([1]), json!({}), "add() missing argument 'b' (i64)"),
            (
                json!([1, 2]),
                json!({"a": 1}),
                "multiple values for argument 'a'",
            ),
            (
                json!([1, 2]),
                json!({"c": 1}),
                "unexpected keyword argument 'c'",
            ),
        ] {
            match run(&request("add", args, kwargs)) {
                Err(Reply::Error(message)) => assert!(message.contains(expected), "{message}"),
                other => panic!("expected an error packet, got {other:?}"),
            }
        }
    }

    #[test]
    fn built_ins_answer_under_app_nets_names() {
        let flag = |name: &str| Err(Reply::Flag(name.into()));
        assert_eq!(
            run(&request("missing", json!([]), json!({}))),
            flag("INVALID_CONNECTION")
        );
        assert_eq!(
            run(&request(builtin::NULL, json!([]), json!({}))),
            flag("NULL")
        );
        let pass = |args, kwargs| run(&request(builtin::PASS_THROUGH, args, kwargs));
        assert_eq!(
            pass(json!([{"1": 2}]), json!({"peer": ["h", 1]})),
            Err(Reply::Value(json!({"1": 2})))
        );
        assert_eq!(
            pass(json!([1, 2]), json!({"k": 3})),
            Err(Reply::Value(json!([[1, 2], {"k": 3}])))
        );
        let Err(Reply::Value(info)) = run(&request(builtin::INFO, json!([]), json!({}))) else {
            panic!("info answers a value");
        };
        assert_eq!(info["hub"], json!(true));
        assert_eq!(info["group"], json!("None"));
        let listed: Vec<String> = serde_json::from_value(info["connections"].clone()).unwrap();
        assert!(listed.contains(&"add".to_string()), "{listed:?}");
        assert!(listed.contains(&builtin::SUBSCRIPTION_HANDLER.to_string()));
        assert!(
            !listed.contains(&"info".to_string()),
            "netrun's own names stay out"
        );
    }

    #[test]
    fn app_nets_subscriptions_and_deliveries_are_understood() {
        let handlers = functions();
        let ask = |connection: &str, args: Value| {
            let request = request(connection, args, json!({}));
            understand(&request, &details(), &BTreeMap::new(), &handlers)
        };
        let args = json!(["news", "127.0.0.1", 3011, "__main__.on_news"]);
        assert_eq!(
            ask(builtin::SUBSCRIPTION_HANDLER, args),
            Asked::Subscribe {
                event: "news".into(),
                host: "127.0.0.1".into(),
                port: 3011,
                connection: "__main__.on_news".into(),
            }
        );
        let Asked::Answer(Reply::Error(usage)) =
            ask(builtin::SUBSCRIPTION_HANDLER, json!(["news"]))
        else {
            panic!("a short subscription is refused");
        };
        assert!(usage.contains("(event, host, port, connection)"), "{usage}");
        // An app-net hub delivers to a subscription handler by its name.
        let Asked::Run(call) = ask("add", json!([1, 2])) else {
            panic!("a delivery runs the handler");
        };
        assert_eq!(
            (call.kind, call.encoding),
            (CallKind::Event, Encoding::Json)
        );
    }

    #[test]
    fn info_fits_app_nets_read_unless_the_names_are_many() {
        let mut peer = details();
        assert!(info_size(&peer) < APPNET_READ, "{}", info_size(&peer));
        peer.connections = (0..40)
            .map(|i| format!("some_connected_function_{i}"))
            .collect();
        assert!(info_size(&peer) > APPNET_READ, "{}", info_size(&peer));
    }

    #[test]
    fn outcomes_map_to_app_nets_replies() {
        assert_eq!(
            reply(Outcome::Value(b"[1]".to_vec())),
            Reply::Value(json!([1]))
        );
        let invalid = CallError::InvalidConnection {
            peer: "p".into(),
            function: "f".into(),
            available: vec![],
        };
        assert_eq!(
            reply(Outcome::Error(invalid)),
            Reply::Flag("INVALID_CONNECTION".into())
        );
        let trap = CallError::Remote {
            peer: "p".into(),
            function: "f".into(),
            kind: "panic".into(),
            message: "boom".into(),
        };
        match reply(Outcome::Error(trap)) {
            Reply::Error(traceback) => assert!(traceback.contains("boom"), "{traceback}"),
            other => panic!("{other:?}"),
        }
    }
}
