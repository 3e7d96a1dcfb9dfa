//! The JSON-RPC 2.0 envelope: one request per line, one response per line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvsd.ctl";

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Echoed in the response.
    #[serde(default)]
    pub id: Value,
    /// The command.
    pub method: String,
    /// Its arguments, by name.
    #[serde(default)]
    pub params: Value,
}

/// A response: exactly one of `result` and `error` is set.
///
/// The result stays a JSON value here: the envelope does not know the methods, and a value
/// prints its keys in one order whichever struct produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id (null if it could not be read).
    pub id: Value,
    /// The result on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// An error with a code and a message a person understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// The code: JSON-RPC's for protocol errors, small positive numbers for xvs's own.
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

/// Error codes.
pub mod code {
    /// The line is not JSON (or not UTF-8).
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad or missing parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed.
    pub const INTERNAL: i64 = -32603;
    /// No such port (or interface).
    pub const NO_SUCH_PORT: i64 = 1;
    /// The thing exists already.
    pub const EXISTS: i64 = 2;
    /// The dataplane refused (a kernel error).
    pub const DATAPLANE: i64 = 3;
    /// A flow, route or address could not be parsed or applied.
    pub const BAD_SPEC: i64 = 4;
    /// Too many clients, or a request line too long.
    pub const LIMIT: i64 = 5;
}

impl RpcError {
    /// An error of `code` saying `message`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// Bad parameters.
    pub fn params(message: impl Into<String>) -> RpcError {
        RpcError::new(code::INVALID_PARAMS, message)
    }
}

impl Request {
    /// A request for `method` with `params`, under `id`.
    pub fn new(id: u64, method: &str, params: Value) -> Request {
        Request {
            jsonrpc: "2.0".into(),
            id: Value::from(id),
            method: method.to_owned(),
            params,
        }
    }
}

impl Response {
    /// A success.
    pub fn ok(id: Value, result: Value) -> Response {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Value, error: RpcError) -> Response {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// Reads a request from one line of bytes, or says why it is not one.
///
/// # Errors
/// Invalid UTF-8 or JSON ([`code::PARSE_ERROR`]), or JSON that is not a JSON-RPC 2.0 request
/// ([`code::INVALID_REQUEST`]).
pub fn parse_request(line: &[u8]) -> Result<Request, Box<Response>> {
    let text = std::str::from_utf8(line).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            RpcError::new(code::PARSE_ERROR, format!("request is not UTF-8: {e}")),
        ))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            RpcError::new(code::PARSE_ERROR, format!("request is not JSON: {e}")),
        ))
    })?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let request: Request = serde_json::from_value(value).map_err(|e| {
        Box::new(Response::err(
            id.clone(),
            RpcError::new(
                code::INVALID_REQUEST,
                format!("not a JSON-RPC request: {e}"),
            ),
        ))
    })?;
    if request.jsonrpc != "2.0" {
        return Err(Box::new(Response::err(
            id,
            RpcError::new(code::INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        )));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_keep_their_codes() {
        let r = parse_request(br#"{"jsonrpc":"2.0","id":7,"method":"show"}"#).unwrap();
        assert_eq!(r.method, "show");
        assert_eq!(r.id, Value::from(7));
        assert_eq!(
            parse_request(b"\xff\xfe").unwrap_err().error.unwrap().code,
            code::PARSE_ERROR
        );
        assert_eq!(
            parse_request(b"{not json").unwrap_err().error.unwrap().code,
            code::PARSE_ERROR
        );
        let e = parse_request(br#"{"jsonrpc":"2.0","id":3}"#).unwrap_err();
        assert_eq!(e.id, Value::from(3));
        assert_eq!(e.error.unwrap().code, code::INVALID_REQUEST);
        assert_eq!(
            parse_request(br#"{"jsonrpc":"1.0","method":"x"}"#)
                .unwrap_err()
                .error
                .unwrap()
                .code,
            code::INVALID_REQUEST
        );
    }

    #[test]
    fn responses_carry_one_of_result_and_error() {
        let ok = serde_json::to_value(Response::ok(Value::from(1), Value::from(2))).unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": 2})
        );
        let err = Response::err(Value::Null, RpcError::new(code::LIMIT, "too many"));
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            serde_json::json!({"jsonrpc": "2.0", "id": null,
                               "error": {"code": 5, "message": "too many"}})
        );
    }
}
