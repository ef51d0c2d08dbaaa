//! Writing to the terminal: JSON the way the reference prints it, and the human formats.
//!
//! Everything on stdout goes through [`write_line`], which ends the process quietly when the
//! reader went away (`cccc tail -f | head`), instead of panicking like `println!` does.

use serde_json::Value;
use std::fmt;
use std::io::{self, Write};

/// `println!` that exits quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::output::write_line(format_args!("")) };
    ($($t:tt)*) => { $crate::output::write_line(format_args!($($t)*)) };
}
pub(crate) use outln;

pub fn write_line(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // stdout is gone some other way; nothing useful left to say on it.
        std::process::exit(1);
    }
}

/// Print `value` as `json.dumps(value, indent=2, ensure_ascii=False)` does.
pub fn print_json(value: &Value) {
    outln!("{}", cccc_proto::json::to_pretty_string(value));
}

/// The first 8 characters of an event id, enough to name it in commands (prefixes resolve).
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A timestamp without its fraction: `2026-11-25T10:11:43.097327Z` → `2026-11-25T10:11:43Z`.
pub fn short_ts(ts: &str) -> String {
    match ts.split_once('.') {
        Some((head, tail)) if tail.ends_with('Z') => format!("{head}Z"),
        Some((head, _)) => head.to_string(),
        None => ts.to_string(),
    }
}

/// `a`'s string member `key`, or "".
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A recipient list (`["peer-a","user"]`) as `peer-a, user`; empty = everyone.
pub fn recipients(to: Option<&Value>) -> String {
    let list: Vec<&str> = to.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() { "(everyone)".to_string() } else { list.join(", ") }
}

/// One inbox or ledger entry as a line (plus indented continuation lines for multi-line text):
///
/// `15e1b1fc  2026-11-25T10:11:43Z  user → peer-a  [ATTENTION] [REPLY REQUIRED] Please review`
pub fn event_line(ev: &Value) -> String {
    let data = ev.get("data").cloned().unwrap_or(Value::Null);
    let head = format!("{}  {}  ", short_id(str_of(ev, "id")), short_ts(str_of(ev, "ts")));
    let body = match str_of(ev, "kind") {
        "chat.message" => {
            let mut marks = String::new();
            if str_of(&data, "priority") == "attention" {
                marks.push_str("[ATTENTION] ");
            }
            if data.get("reply_required").and_then(Value::as_bool).unwrap_or(false) {
                marks.push_str("[REPLY REQUIRED] ");
            }
            let reply_to = str_of(&data, "reply_to");
            if !reply_to.is_empty() {
                marks.push_str(&format!("(re {}) ", short_id(reply_to)));
            }
            format!("{} → {}  {marks}{}", str_of(ev, "by"), recipients(data.get("to")), str_of(&data, "text"))
        }
        "system.notify" => {
            let target = match str_of(&data, "target_actor_id") {
                "" => "(everyone)",
                t => t,
            };
            let title = str_of(&data, "title");
            let message = str_of(&data, "message");
            let text = if title.is_empty() { message.to_string() } else { format!("{title}: {message}") };
            format!("{} → {target}  [{}/{}] {text}", str_of(ev, "by"), str_of(&data, "kind"), str_of(&data, "priority"))
        }
        other => format!("{} {other}", str_of(ev, "by")),
    };
    indent_continuation(&(head + &body), 4)
}

/// Indent every line after the first by `n` spaces, so multi-line text stays under its entry.
pub fn indent_continuation(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut lines = s.split('\n');
    let mut out = lines.next().unwrap_or("").to_string();
    for l in lines {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(l);
    }
    out
}

/// A left-aligned text table: a header row and rows, columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_and_notify_lines() {
        let chat = json!({"id": "15e1b1fcab1b40e88a7c1bf7bf4637a9", "ts": "2026-11-25T10:11:43.097327Z", "kind": "chat.message", "by": "user",
            "data": {"text": "Please review\nthe checklist", "to": ["peer-a"], "priority": "attention", "reply_required": true, "reply_to": null}});
        assert_eq!(
            event_line(&chat),
            "15e1b1fc  2026-11-25T10:11:43Z  user → peer-a  [ATTENTION] [REPLY REQUIRED] Please review\n    the checklist"
        );
        let notify = json!({"id": "a05f0bc9e784460c964deb2201a15e97", "ts": "2026-11-25T10:11:43Z", "kind": "system.notify", "by": "system",
            "data": {"kind": "info", "priority": "urgent", "title": "Need reply", "message": "New message from user.", "target_actor_id": "peer-a"}});
        assert_eq!(event_line(&notify), "a05f0bc9  2026-11-25T10:11:43Z  system → peer-a  [info/urgent] Need reply: New message from user.");
        let reply = json!({"id": "ab", "ts": "t", "kind": "chat.message", "by": "peer-a", "data": {"text": "ok", "to": [], "priority": "normal", "reply_to": "15e1b1fcab1b"}});
        assert_eq!(event_line(&reply), "ab  t  peer-a → (everyone)  (re 15e1b1fc) ok");
    }

    #[test]
    fn tables_align_and_trim() {
        let t = table(&["ID", "STATE", "TITLE"], &[vec!["g_1".into(), "active".into(), "démo".into()], vec!["g_22".into(), "".into(), "".into()]]);
        assert_eq!(t, "ID    STATE   TITLE\ng_1   active  démo\ng_22");
    }
}

/// Pretty JSON for human output.
pub fn pretty(v: &Value) -> String {
    cccc_proto::json::to_pretty_string(v)
}
