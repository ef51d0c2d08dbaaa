//! IPC v1 envelopes: one request line, one response line.
//!
//! Request: `{"v":1,"op":"<snake_case>","args":{…}}`. `v` defaults to 1 and, like the
//! reference, is not checked; `args` defaults to `{}`; any other top-level key is an
//! `invalid_request`. Response: `{"v":1,"ok":…,"result":{…},"error":null|{code,message,details}}`
//! with all four keys always present and `result` = `{}` on error.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A parsed request envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub op: String,
    pub args: Map<String, Value>,
}

impl Request {
    pub fn new(op: impl Into<String>, args: Value) -> Self {
        let args = match args {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Request { op: op.into(), args }
    }

    /// Parse one request line. The error is a human-readable reason for `invalid_request`.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("request is not valid JSON: {e}"))?;
        let Value::Object(mut obj) = value else {
            return Err("request must be a JSON object".into());
        };
        if let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "v" | "op" | "args")) {
            return Err(format!("unexpected top-level key: {extra:?} (allowed: v, op, args)"));
        }
        let op = match obj.remove("op") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            Some(Value::String(_)) => return Err("op must not be empty".into()),
            Some(_) => return Err("op must be a string".into()),
            None => return Err("op: field required".into()),
        };
        let args = match obj.remove("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err("args must be a JSON object".into()),
        };
        Ok(Request { op, args })
    }

    /// The request as one JSON value (without the trailing newline).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(1));
        m.insert("op".into(), Value::from(self.op.clone()));
        m.insert("args".into(), Value::Object(self.args.clone()));
        Value::Object(m)
    }
}

/// The `error` member of a failed response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default = "empty_object")]
    pub details: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody { code: code.into(), message: message.into(), details: empty_object() }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// A response envelope. Field order is the reference's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default = "one")]
    pub v: u64,
    pub ok: bool,
    #[serde(default = "empty_object")]
    pub result: Value,
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

fn one() -> u64 {
    1
}

impl Response {
    pub fn ok(result: Value) -> Self {
        Response { v: 1, ok: true, result, error: None }
    }
    pub fn err(error: ErrorBody) -> Self {
        Response { v: 1, ok: false, result: empty_object(), error: Some(error) }
    }
    /// `Ok(result)` or `Err(error)`.
    pub fn into_result(self) -> Result<Value, ErrorBody> {
        if self.ok {
            Ok(self.result)
        } else {
            Err(self.error.unwrap_or_else(|| ErrorBody::new("internal_error", "error response without error body")))
        }
    }
    /// The response line, newline-terminated, in the reference's byte form.
    pub fn to_line(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        crate::json::write_py(&mut buf, self).expect("serialize to memory");
        buf.push(b'\n');
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_accepts_defaults_and_any_v() {
        let r = Request::parse(br#"{"op":"ping"}"#).unwrap();
        assert_eq!(r.op, "ping");
        assert!(r.args.is_empty());
        assert!(Request::parse(br#"{"v":2,"op":"ping","args":{}}"#).is_ok());
    }

    #[test]
    fn parse_rejects_what_the_reference_rejects() {
        for (line, needle) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "op: field required"),
            (br#"{"op":"ping","extra":1}"#, "unexpected top-level key"),
            (br#"{"op":1}"#, "op must be a string"),
            (br#"{"op":"ping","args":[]}"#, "args must be a JSON object"),
        ] {
            let e = Request::parse(line).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn response_lines_match_reference_bytes() {
        // Byte-for-byte the reference's unknown_op line from reference-samples/wire.log.
        let r = Response::err(ErrorBody::new("unknown_op", "unknown op: no_such_op"));
        assert_eq!(
            String::from_utf8(r.to_line()).unwrap(),
            "{\"v\": 1, \"ok\": false, \"result\": {}, \"error\": {\"code\": \"unknown_op\", \"message\": \"unknown op: no_such_op\", \"details\": {}}}\n"
        );
        let ok = Response::ok(json!({"group_id": "g_67a6cf96a190"}));
        assert_eq!(
            String::from_utf8(ok.to_line()).unwrap(),
            "{\"v\": 1, \"ok\": true, \"result\": {\"group_id\": \"g_67a6cf96a190\"}, \"error\": null}\n"
        );
    }
}
