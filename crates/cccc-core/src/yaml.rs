//! `group.yaml` reading and writing.
//!
//! Reading uses `serde-saphyr` into a `serde_json::Value`, which keeps key order, so fields we
//! do not model (the reference has many) survive a rewrite untouched.
//!
//! Writing uses a small emitter of our own rather than a serializer's defaults, because the
//! reference reads the file back with PyYAML (YAML 1.1): an unquoted `2026-11-25T10:11:33Z`
//! would become a `datetime`, `yes`/`on` a bool, `0123` an int. The emitter writes PyYAML's block
//! style (`sort_keys=False`, indentless sequences, `[]`/`{}` for empties) and quotes every string
//! that a YAML 1.1 or 1.2 reader could take for anything other than that string.

use serde_json::Value;

/// Parse YAML text into a JSON value.
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Err("document is empty".into());
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// Emit `value` as block-style YAML (a trailing newline included).
pub fn emit(value: &Value) -> String {
    let mut out = String::with_capacity(4096);
    match value {
        Value::Object(m) if !m.is_empty() => emit_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => emit_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn emit_map(out: &mut String, m: &serde_json::Map<String, Value>, ind: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            indent(out, ind);
        }
        first = false;
        out.push_str(&quote_str(k));
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                indent(out, ind + 2);
                emit_map(out, inner, ind + 2);
            }
            Value::Array(inner) if !inner.is_empty() => {
                // PyYAML writes sequences inside a mapping without extra indentation.
                out.push('\n');
                indent(out, ind);
                emit_seq(out, inner, ind);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn emit_seq(out: &mut String, a: &[Value], ind: usize) {
    let mut first = true;
    for v in a {
        if !first {
            indent(out, ind);
        }
        first = false;
        out.push_str("- ");
        match v {
            Value::Object(inner) if !inner.is_empty() => emit_map(out, inner, ind + 2),
            Value::Array(inner) if !inner.is_empty() => emit_seq(out, inner, ind + 2),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
    debug_assert!(a.iter().all(|v| !is_block(v) || !v.is_null()));
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote_str(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words a YAML 1.1 reader (PyYAML) resolves to something other than a string.
const RESERVED: &[&str] = &[
    "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No",
    "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF",
    "-.inf", "-.Inf", "-.INF", "+.inf", "=", "<<",
];

fn plain_ok(s: &str) -> bool {
    if s.is_empty() || RESERVED.contains(&s) || s.trim() != s {
        return false;
    }
    let first = s.chars().next().unwrap();
    // Anything that starts like a number, date or sign could resolve to int/float/timestamp.
    if first.is_ascii_digit() || matches!(first, '+' | '.') {
        return false;
    }
    if first == '-' {
        // "-" followed by anything: a sequence indicator or a negative number; quote it.
        return false;
    }
    if "?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains('\t') {
        return false;
    }
    !s.chars().any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}')
}

/// A string as a YAML scalar: plain when unambiguous, else single- or double-quoted.
pub fn quote_str(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    let needs_double = s.chars().any(|c| c.is_control() || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}'));
    if !needs_double {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 8);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_group_yaml_round_trips_through_parse_and_emit() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/spec/reference-samples/group.yaml");
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipping: {path} not present");
            return;
        };
        let v = parse(&text).unwrap();
        assert_eq!(v["group_id"], json!("g_67a6cf96a190"));
        assert_eq!(v["created_at"], json!("2026-11-25T10:11:33.468114Z"));
        assert_eq!(v["actors"][2]["command"], json!(["cat"]));
        assert_eq!(v["automation"]["rules"][0]["owner_actor_id"], Value::Null);
        assert_eq!(v["automation"]["rules"][0]["to"], json!(["@foreman"]));
        assert_eq!(v["actors"][0]["env"], json!({}));
        let emitted = emit(&v);
        let back = parse(&emitted).unwrap();
        assert_eq!(back, v);
        // Key order survives.
        let keys: Vec<_> = back.as_object().unwrap().keys().cloned().collect();
        let orig: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, orig);
    }

    #[test]
    fn ambiguous_strings_are_quoted_and_survive() {
        let tricky = [
            "", "yes", "no", "on", "null", "~", "true", "0123", "1e3", "2026-11-25T10:11:33Z", "-x", "@foreman", "a: b",
            "a #b", "trail:", " lead", "multi\nline", "tab\there", "quote'd", "back\\slash \"dq\"", "ünï 漢字", "*ref",
            "!tag", "%pct", ".5", "+1", "- item", "[x]", "{y}", "bell\u{7}",
        ];
        let doc = Value::Object(tricky.iter().enumerate().map(|(i, s)| (format!("k{i}"), json!(s))).collect());
        let mut doc = doc;
        doc["nested"] = json!({"list": tricky, "empty_list": [], "empty_map": {}, "n": 3, "b": false, "z": null});
        doc["list_of_maps"] = json!([{"a": 1, "b": ["x", {"c": "2026-01-01"}]}, {}]);
        let text = emit(&doc);
        assert_eq!(parse(&text).unwrap(), doc, "emitted:\n{text}");
        assert!(text.contains("k9: '2026-11-25T10:11:33Z'"), "{text}");
    }
}
