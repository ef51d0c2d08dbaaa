//! JSON written the way the reference writes it.
//!
//! Python's `json.dumps(obj, ensure_ascii=False)` separates items with `", "` and keys from
//! values with `": "`; string escaping is the same as serde_json's (short escapes for
//! `\b \f \n \r \t`, `\u00XX` for other control characters, everything else raw UTF-8).
//! Ledger lines and IPC responses use this form so a byte-level diff against the reference only
//! shows real differences.

use serde::Serialize;
use serde_json::ser::Formatter;
use std::io;

/// A serde_json formatter with Python's default separators.
#[derive(Clone, Copy, Debug, Default)]
pub struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Serialize `value` into `buf` in the reference's compact form.
pub fn write_py<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), serde_json::Error> {
    let mut ser = serde_json::Serializer::with_formatter(buf, PyFormatter);
    value.serialize(&mut ser)
}

/// Serialize `value` to a `String` in the reference's compact form.
pub fn to_py_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut buf = Vec::with_capacity(256);
    // Serializing a Value or a derived struct into a Vec cannot fail.
    write_py(&mut buf, value).expect("serialize to memory");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Pretty JSON with 2-space indent, as `json.dumps(obj, indent=2, ensure_ascii=False)`.
pub fn to_pretty_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("serialize to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators_and_raw_unicode() {
        let v = json!({"a": [1, "é\n\u{1}"], "b": {}, "c": [], "d": null});
        assert_eq!(to_py_string(&v), r#"{"a": [1, "é\n\u0001"], "b": {}, "c": [], "d": null}"#);
    }
}
