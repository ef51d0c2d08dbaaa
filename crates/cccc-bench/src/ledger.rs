//! A synthetic ledger of N events appended to a group's ledger.jsonl, plus the read cursor of
//! `peer-a`, written in the on-disk format of the daemon under test:
//!
//! * `Format::Ref` — the 0.4.32 reference line format, byte for byte as the reference writes it
//!   (Python separators, the full `chat.message` data key set; see
//!   shared/spec/reference-samples/ledger.jsonl). Used for our daemon and for 0.4.32.
//! * `Format::Rs45` — the format cccc-pair 0.4.45 writes (compact JSON, `message_mode` in
//!   `chat.message` data, `mail.read` for read cursors). Its inbox only holds `message_mode: mail`
//!   messages, so every message addressed to an agent is written as mail; messages to `user`
//!   are `send` (mail cannot target the user).
//!
//! Mix (deterministic, seeded): 85 % `chat.message`, 10 % reads, 5 % acks (0.4.45 has no ack
//! event: reads instead). Of the messages ~9 % go to `peer-a`, ~2 % to `@all` from `lead`
//! (also visible to peer-a), the rest to `lead` or `user`. peer-a's read cursor is put at 90 % of
//! the synthetic events, so `inbox_list` must skip 90 % of the ledger and then find ~900 unread.

use anyhow::{Context, Result, bail};
use cccc_proto::event::{ChatMessageData, Event};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ref,
    Rs45,
}

/// What `inbox_list` for peer-a must return on this ledger.
#[derive(Clone, Debug)]
pub struct Expect {
    /// Unread messages for peer-a after its cursor.
    pub unread: usize,
    /// The oldest of them (what `inbox_list` must return first).
    pub first_id: String,
    /// Events written.
    pub events: usize,
    /// Size of the ledger file after writing.
    pub ledger_bytes: u64,
    /// Timestamp (µs) of the last synthetic event.
    pub last_ts: i64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "review", "the", "release", "checklist", "ledger", "inbox", "daemon", "patch", "tests", "green", "deploy", "rollback", "socket", "cursor",
    "actor", "please", "done", "blocked", "on", "fix", "merge", "branch", "profile", "latency",
];

fn text(rng: &mut Rng, i: usize) -> String {
    let n = 6 + rng.below(14) as usize;
    let mut s = format!("synthetic #{i}:");
    for _ in 0..n {
        s.push(' ');
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

fn ref_line(id: &str, ts: &str, kind: &str, group: &str, scope: &str, by: &str, data: Value) -> String {
    Event { v: 1, id: id.into(), ts: ts.into(), kind: kind.into(), group_id: group.into(), scope_key: scope.into(), by: by.into(), data }.to_line()
}

fn rs45_line(id: &str, ts: &str, kind: &str, group: &str, by: &str, data: Value) -> String {
    // Top-level key order as 0.4.45 writes it; `data` keys sorted (as it writes them).
    let v = json!({"v": 1, "id": id, "ts": ts, "kind": kind, "group_id": group, "scope_key": "", "by": by, "data": data});
    serde_json::to_string(&v).expect("to string")
}

/// Timestamp of the last line of `ledger`.
fn last_ts(ledger: &Path) -> Result<i64> {
    let s = std::fs::read_to_string(ledger).with_context(|| format!("read {}", ledger.display()))?;
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).context("empty ledger")?;
    let v: Value = serde_json::from_str(line)?;
    let ts = v.get("ts").and_then(Value::as_str).context("last ledger line has no ts")?;
    cccc_proto::ts::parse(ts).context("bad ts in ledger")
}

/// Append `n` synthetic events to `home/groups/<group>/ledger.jsonl` and write peer-a's cursor.
pub fn write(fmt: Format, home: &Path, group: &str, scope: &str, n: usize, seed: u64) -> Result<Expect> {
    let gdir = home.join("groups").join(group);
    let ledger = gdir.join("ledger.jsonl");
    let base = last_ts(&ledger)? + 1000;
    const STEP_US: i64 = 10;
    let mut rng = Rng(seed | 1);
    let cursor_at = n * 9 / 10;
    let mut out = Vec::with_capacity(n * 900);

    let mut last_to_lead: Option<String> = None;
    let mut last_peer_a: Option<(String, String)> = None; // (id, ts) of the last message peer-a sees
    let mut cursor: Option<(String, String)> = None;
    let mut unread = 0usize;
    let mut first_unread = String::new();
    let mut last = base;

    for i in 0..n {
        let us = base + (i as i64 + 1) * STEP_US;
        last = us;
        let ts = cccc_proto::ts::format(us);
        let id = cccc_proto::new_event_id();
        if i == cursor_at {
            // peer-a read everything up to here.
            let (eid, ets) = last_peer_a.clone().unwrap_or_default();
            let data = json!({"actor_id": "peer-a", "event_id": eid});
            let line = match fmt {
                Format::Ref => ref_line(&id, &ts, "chat.read", group, "", "peer-a", data),
                Format::Rs45 => rs45_line(&id, &ts, "mail.read", group, "peer-a", data),
            };
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            cursor = Some((eid, ets));
            continue;
        }
        let slot = i % 20;
        if slot < 3
            && let Some(target) = last_to_lead.clone()
        {
            let data = json!({"actor_id": "lead", "event_id": target});
            let kind = match (fmt, slot) {
                (Format::Rs45, _) => "mail.read",
                (Format::Ref, 2) => "chat.ack",
                (Format::Ref, _) => "chat.read",
            };
            let line = match fmt {
                Format::Ref => ref_line(&id, &ts, kind, group, "", "lead", data),
                Format::Rs45 => rs45_line(&id, &ts, kind, group, "lead", data),
            };
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            continue;
        }
        // A chat.message.
        let p = rng.below(1000);
        let (by, to, peer_a_sees, lead_sees): (&str, &str, bool, bool) = if p < 90 {
            (if rng.below(2) == 0 { "user" } else { "lead" }, "peer-a", true, false)
        } else if p < 110 {
            ("lead", "@all", true, false)
        } else if p < 550 {
            (if rng.below(2) == 0 { "user" } else { "peer-a" }, "lead", false, true)
        } else {
            (if rng.below(2) == 0 { "lead" } else { "peer-a" }, "user", false, false)
        };
        let body = text(&mut rng, i);
        let attention = rng.below(20) == 0 && to != "user";
        let line = match fmt {
            Format::Ref => {
                let d = ChatMessageData {
                    text: body,
                    priority: if attention { "attention".into() } else { "normal".into() },
                    to: vec![to.into()],
                    sender_runtime: if by == "user" { None } else { Some("custom".into()) },
                    ..Default::default()
                };
                ref_line(&id, &ts, "chat.message", group, scope, by, serde_json::to_value(&d)?)
            }
            Format::Rs45 => {
                let mode = if to == "user" { "send" } else { "mail" };
                let data = if by == "user" {
                    json!({"format": "plain", "message_mode": mode, "text": body, "to": [to]})
                } else {
                    json!({"format": "plain", "message_mode": mode, "sender_runtime": "custom", "text": body, "to": [to]})
                };
                rs45_line(&id, &ts, "chat.message", group, by, data)
            }
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        if lead_sees {
            last_to_lead = Some(id.clone());
        }
        if peer_a_sees {
            if cursor.is_some() {
                if unread == 0 {
                    first_unread = id.clone();
                }
                unread += 1;
            } else {
                last_peer_a = Some((id.clone(), ts.clone()));
            }
        }
    }
    if cursor.is_none() || unread == 0 {
        bail!("synthetic ledger too small ({n} events) to have a cursor and unread messages");
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&ledger)?;
    f.write_all(&out)?;
    f.sync_all()?;
    drop(f);

    let (eid, ets) = cursor.expect("cursor");
    let now = cccc_proto::ts::format(last);
    let entry = json!({"event_id": eid, "ts": ets, "updated_at": now});
    let doc = match fmt {
        Format::Ref => json!({"peer-a": entry}),
        Format::Rs45 => json!({"cursors": {"peer-a": entry}, "schema": 1}),
    };
    let state = gdir.join("state");
    std::fs::create_dir_all(&state)?;
    std::fs::write(state.join("read_cursors.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    let ledger_bytes = std::fs::metadata(&ledger)?.len();
    Ok(Expect { unread, first_id: first_unread, events: n, ledger_bytes, last_ts: last })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key order of a reference `chat.message` line (shared/spec/reference-samples/ledger.jsonl).
    const REF_MESSAGE: &str = r#"{"v": 1, "id": "15e1b1fcab1b40e88a7c1bf7bf4637a9", "ts": "2026-11-25T10:11:43.097327Z", "kind": "chat.message", "group_id": "g_67a6cf96a190", "scope_key": "s_37b1b8029e86", "by": "user", "data": {"text": "Please review the release checklist", "format": "plain", "insight": null, "priority": "attention", "reply_required": true, "to": ["peer-a"], "reply_to": null, "quote_text": null, "source_platform": null, "source_user_name": null, "source_user_id": null, "mention_user_ids": null, "sender_title": null, "sender_runtime": null, "sender_avatar_path": null, "src_group_id": null, "src_event_id": null, "src_by": null, "remote_reply_to": null, "dst_group_id": null, "dst_to": null, "refs": [], "attachments": [], "thread": "", "stream_id": null, "pending_event_id": null, "client_id": null, "suggested_user_message": null}}"#;

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    fn home_with_group(fmt: Format) -> (std::path::PathBuf, String) {
        let home = std::env::temp_dir().join(format!("cccc-bench-test-{:?}-{}", fmt, cccc_proto::new_event_id()));
        let g = "g_0123456789ab".to_string();
        std::fs::create_dir_all(home.join("groups").join(&g)).unwrap();
        let first = r#"{"v": 1, "id": "7018c531978241b387e8f1a7b5a74398", "ts": "2026-11-25T10:11:33.472902Z", "kind": "group.create", "group_id": "g_0123456789ab", "scope_key": "", "by": "user", "data": {"title": "t", "topic": ""}}"#;
        std::fs::write(home.join("groups").join(&g).join("ledger.jsonl"), format!("{first}\n")).unwrap();
        (home, g)
    }

    #[test]
    fn ref_lines_have_the_reference_shape_and_the_cursor_is_consistent() {
        let (home, g) = home_with_group(Format::Ref);
        let exp = write(Format::Ref, &home, &g, "s_1", 2000, 7).unwrap();
        let text = std::fs::read_to_string(home.join("groups").join(&g).join("ledger.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2001);
        let sample: Value = serde_json::from_str(REF_MESSAGE).unwrap();
        let mut seen_first = false;
        let mut prev_ts = 0;
        let mut unread = 0;
        let cursors: Value = serde_json::from_str(&std::fs::read_to_string(home.join("groups").join(&g).join("state/read_cursors.json")).unwrap()).unwrap();
        let cursor_ts = cccc_proto::ts::parse(cursors["peer-a"]["ts"].as_str().unwrap()).unwrap();
        for l in &lines[1..] {
            let v: Value = serde_json::from_str(l).unwrap();
            // Python separators, and what we write re-serializes to itself.
            assert_eq!(cccc_proto::json::to_py_string(&v), *l);
            assert_eq!(keys(&v), keys(&sample));
            let ts = cccc_proto::ts::parse(v["ts"].as_str().unwrap()).unwrap();
            assert!(ts > prev_ts);
            prev_ts = ts;
            if v["kind"] == "chat.message" {
                assert_eq!(keys(&v["data"]), keys(&sample["data"]));
                let to = v["data"]["to"][0].as_str().unwrap();
                if (to == "peer-a" || to == "@all") && ts > cursor_ts {
                    if !seen_first {
                        assert_eq!(v["id"], exp.first_id.as_str());
                        seen_first = true;
                    }
                    unread += 1;
                }
            } else {
                assert!(["chat.read", "chat.ack"].contains(&v["kind"].as_str().unwrap()));
            }
        }
        assert_eq!(unread, exp.unread);
        assert!(unread > 0 && seen_first);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn rs45_lines_are_compact_mail_for_agents() {
        let (home, g) = home_with_group(Format::Rs45);
        let exp = write(Format::Rs45, &home, &g, "", 1000, 7).unwrap();
        let text = std::fs::read_to_string(home.join("groups").join(&g).join("ledger.jsonl")).unwrap();
        let mut found = false;
        for l in text.lines().skip(1) {
            assert!(!l.contains("\": "), "compact JSON: {l}");
            let v: Value = serde_json::from_str(l).unwrap();
            if v["id"] == exp.first_id.as_str() {
                assert_eq!(v["data"]["message_mode"], "mail");
                found = true;
            }
            if v["kind"] == "chat.message" && v["data"]["to"][0] == "user" {
                assert_eq!(v["data"]["message_mode"], "send");
            }
        }
        assert!(found);
        let cursors: Value = serde_json::from_str(&std::fs::read_to_string(home.join("groups").join(&g).join("state/read_cursors.json")).unwrap()).unwrap();
        assert_eq!(cursors["schema"], 1);
        assert!(cursors["cursors"]["peer-a"]["event_id"].as_str().is_some_and(|s| s.len() == 32));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
