//! Deciding what an arriving call runs: a built-in connection or one of the module's functions.
//!
//! Owns name lookup, the contract check (a caller whose type fingerprint differs is refused
//! with both signatures, never fed to the guest), the built-ins (`info`, `connections`,
//! `pass_through`, `null`) in both encodings, and turning a guest trap into a remote error.
//! It does not own sockets (see [`crate::server`]) or the instance (see [`crate::instance`]).

use netrun_abi::names::{self, builtin, flag};
use netrun_abi::{CallError, Outcome, PeerDetails, codec};
use serde::Serialize;

use crate::instance::{InstanceHandle, Job};
use crate::message::{Call, Encoding};
use crate::module::Manifest;

/// Routes calls on one peer.
pub struct Router {
    details: PeerDetails,
    /// `host:port -> group`, for error messages.
    display: String,
    manifest: Manifest,
    instance: InstanceHandle,
}

impl Router {
    pub fn new(details: PeerDetails, manifest: Manifest, instance: InstanceHandle) -> Router {
        let display = format!("{}:{} -> {}", details.host, details.port, details.group);
        Router {
            details,
            display,
            manifest,
            instance,
        }
    }

    /// Every connection this peer answers, sorted: the module's functions and the built-ins.
    pub fn connections(manifest: &Manifest) -> Vec<String> {
        let mut all: Vec<String> = manifest.functions.keys().cloned().collect();
        all.extend(builtin::ALL.iter().map(|s| s.to_string()));
        all.sort();
        all.dedup();
        all
    }

    /// Runs `call` and says what it produced.
    pub async fn dispatch(&self, call: Call) -> Outcome {
        if let Some(outcome) = self.builtin(&call) {
            return outcome;
        }
        let Some(record) = self.manifest.functions.get(&call.function) else {
            return Outcome::Error(CallError::InvalidConnection {
                peer: self.display.clone(),
                function: call.function,
                available: self.details.connections.clone(),
            });
        };
        if let Some(contract) = &call.contract
            && contract.fingerprint != record.fingerprint
        {
            return Outcome::Error(CallError::ContractMismatch {
                peer: self.display.clone(),
                function: call.function,
                caller: contract.signature.clone(),
                callee: record.type_signature(),
            });
        }
        let prefix = match call.encoding {
            Encoding::Bincode => names::EXPORT_FN_PREFIX,
            Encoding::Json => names::EXPORT_JSON_PREFIX,
        };
        let job = Job::Export {
            export: format!("{prefix}{}", call.function),
            args: call.args,
        };
        match self.instance.run(job).await {
            Ok(outcome) => outcome,
            Err(failure) => Outcome::Error(CallError::Remote {
                peer: self.display.clone(),
                function: call.function,
                kind: failure.kind,
                message: failure.message,
            }),
        }
    }

    fn builtin(&self, call: &Call) -> Option<Outcome> {
        let outcome = match call.function.as_str() {
            builtin::INFO => encode(call.encoding, &self.details),
            builtin::CONNECTIONS => encode(call.encoding, &self.details.connections),
            builtin::NULL => Outcome::Flag(flag::NULL.to_string()),
            builtin::PASS_THROUGH => self.pass_through(call),
            _ => return None,
        };
        Some(outcome)
    }

    /// Returns the single argument unchanged (several arguments come back as their array, as
    /// in the original). In bincode a one-element tuple encodes exactly as its element, so the
    /// bytes go back as they came.
    fn pass_through(&self, call: &Call) -> Outcome {
        match call.encoding {
            Encoding::Bincode => Outcome::Value(call.args.clone()),
            Encoding::Json => match serde_json::from_slice::<Vec<serde_json::Value>>(&call.args) {
                Ok(mut args) if args.len() == 1 => encode(Encoding::Json, &args.remove(0)),
                Ok(args) => encode(Encoding::Json, &args),
                Err(e) => Outcome::Error(CallError::BadArguments {
                    function: builtin::PASS_THROUGH.to_string(),
                    message: format!("expected a JSON array of arguments: {e}"),
                }),
            },
        }
    }
}

/// A built-in's answer in the call's encoding.
fn encode<T: Serialize>(encoding: Encoding, value: &T) -> Outcome {
    let bytes = match encoding {
        Encoding::Bincode => codec::encode(value).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
    };
    match bytes {
        Ok(bytes) => Outcome::Value(bytes),
        Err(message) => Outcome::Error(CallError::Codec { message }),
    }
}
