//! What the `jsonrpc_request` fuzz target checks, as a plain function: cargo-fuzz calls it on
//! generated input (`control/proto/fuzz`), and `tests/fuzz_corpus.rs` replays the checked-in
//! corpus through it on stable.

use serde_json::Value;

use crate::envelope::{Response, code, parse_request};
use crate::methods::Call;

/// One request line as xvsd reads it: the envelope ([`parse_request`]), then the method and
/// its parameters ([`Call::parse`]). Never panics; a refusal carries the code for its kind
/// and serializes as a response line; a call read names its method, and its parameters, put
/// back on the wire, read as the same call. Responses are read too, as a client does.
///
/// # Panics
/// When one of those does not hold.
pub fn jsonrpc_request(data: &[u8]) {
    match parse_request(data) {
        Ok(request) => {
            assert_eq!(request.jsonrpc, "2.0");
            match Call::parse(&request.method, request.params.clone()) {
                Ok(call) => {
                    assert_eq!(call.name(), request.method);
                    let again = Call::parse(call.name(), call.params())
                        .unwrap_or_else(|e| panic!("{call:?} does not read back: {e}"));
                    assert_eq!(again, call, "parameters {}", call.params());
                    let ok = Response::ok(request.id, call.params());
                    serde_json::to_string(&ok).expect("a response serializes");
                }
                Err(e) => {
                    assert!(
                        [code::METHOD_NOT_FOUND, code::INVALID_PARAMS].contains(&e.code),
                        "{e:?}"
                    );
                    let refusal = Response::err(request.id, e);
                    serde_json::to_string(&refusal).expect("a response serializes");
                }
            }
        }
        Err(refusal) => {
            let error = refusal.error.as_ref().expect("a refusal carries an error");
            assert!(
                [code::PARSE_ERROR, code::INVALID_REQUEST].contains(&error.code),
                "{error:?}"
            );
            assert!(refusal.result.is_none());
            serde_json::to_string(&refusal).expect("a refusal serializes");
        }
    }
    if let Ok(response) = serde_json::from_slice::<Response>(data) {
        let _ = serde_json::to_value(&response).unwrap_or(Value::Null);
    }
}
