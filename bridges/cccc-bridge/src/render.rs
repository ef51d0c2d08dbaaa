//! Ledger event → [`Outbound`] → what a platform sends.
//!
//! Design decisions:
//!
//! * **One neutral value, three renderings.** [`Outbound::from_event`] extracts everything a
//!   chat needs from a `chat.message` or `system.notify` (sender, recipients, body, flags, the
//!   event id, attachments). [`to_telegram_html`], [`to_plain`] and [`to_discord_markdown`] turn
//!   it into text. The header always shows `sender → recipients` (Py432 showed it only for
//!   agent↔agent, RsHEAD dropped it; in verbose chats you cannot tell who was addressed without
//!   it). The sender is `data.sender_title` when present, else the actor title, else `by`.
//! * **Flags are visible.** `priority: attention` puts ⚠️ first in the header; `reply_required`
//!   adds `· ↩ reply requested`. `ackable` (attention *and* addressed to `user`, which is what
//!   the daemon's `chat_ack` accepts) tells the platform to attach an Ack button.
//! * **Telegram gets HTML, never Markdown.** Legacy Markdown fails the whole message with 400
//!   on one stray `*` or `_`. Here nothing is interpreted except code: fenced blocks become
//!   `<pre><code class="language-x">`, backtick spans become `<code>`, the header is `<b>`.
//!   Everything else is escaped (`&`, `<`, `>`; plus `"` inside the one attribute we write), so
//!   agent text cannot produce a parse error. [`to_plain`] is the fallback with the same visible
//!   text, for a platform that still gets "can't parse entities".
//! * **Discord gets Markdown verbatim**, with `@everyone` / `@here` defused by a zero-width
//!   joiner (`@\u{200D}everyone`) even though the platform crate also sends
//!   `allowed_mentions: {parse: []}`: two independent safeguards, because one forgotten flag in
//!   one code path would otherwise mass-ping a server. The header is bold with Markdown escaped.
//! * **Splitting happens here, with the exact rendered overhead.** [`Outbound::split`] renders
//!   an empty-bodied part with the widest `(k/n)` marker, measures it in the platform's unit and
//!   gives the rest to [`crate::chunk::split`], so every part *as sent* fits the limit (for
//!   Telegram the plain rendering is measured: it is an upper bound of the HTML's visible text).
//!   Each part repeats the header with `(k/n)`; the quote and the long-message note appear in the
//!   first part only; attachments and the Ack button go with the last part, so the button sits
//!   under the end of the message.
//! * **Spilled text.** The daemon stores a chat text over 32 000 bytes in
//!   `state/ledger/blobs/chat.<id>.txt` and writes `[cccc] (chat text stored at …)` plus a text
//!   attachment. Rendering shows a note that the full text follows as a file; a runner that reads
//!   the blob calls [`Outbound::expand_spill`] and the text is then delivered as parts instead.

use crate::chunk::{self, Measure, scan_fences};
use cccc_proto::Event;
use serde_json::Value;
use std::collections::HashMap;

/// What kind of ledger event an [`Outbound`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundKind {
    Chat,
    Notify,
}

/// A ledger attachment (`{kind, path, title, mime_type, bytes, sha256}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    pub kind: String,
    pub path: String,
    pub title: String,
    pub mime_type: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The full text of this message was spilled to a blob by the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spill {
    /// Group-relative path of the blob (`state/ledger/blobs/chat.<id>.txt`).
    pub path: String,
    /// The runner read the blob and the body now holds the full text.
    pub expanded: bool,
}

/// Position of a part in a split message, and the fence markers its body gained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub index: usize,
    pub total: usize,
    /// Bytes of fence-reopen text added at the start of `body`.
    pub reopen: usize,
    /// Bytes of fence-close text added at the end of `body`.
    pub close: usize,
}

/// One ledger event, ready to be rendered for a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub event_id: String,
    pub kind: OutboundKind,
    /// The raw `by` of the event.
    pub by: String,
    /// Display name of the sender.
    pub sender: String,
    /// Display names of the recipients (`@all` for a broadcast).
    pub recipients: Vec<String>,
    pub body: String,
    /// `priority == "attention"`: show a marker.
    pub attention: bool,
    /// Attention and addressed to `user`: show an Ack button (what `chat_ack` accepts).
    pub ackable: bool,
    pub reply_required: bool,
    /// The event this one replies to.
    pub reply_to: Option<String>,
    /// One-line quote of the replied-to text (`data.quote_text`).
    pub quote: Option<String>,
    pub attachments: Vec<Attachment>,
    pub spill: Option<Spill>,
    /// Set on the parts returned by [`Outbound::split`] when there is more than one.
    pub part: Option<Part>,
}

const SPILL_PREFIX: &str = "[cccc] (chat text stored at ";
const MAX_NAME_CHARS: usize = 64;
const MAX_RECIPIENTS_SHOWN: usize = 8;
const MAX_QUOTE_CHARS: usize = 200;

fn str_of<'a>(data: &'a Value, key: &str) -> &'a str {
    data.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

fn clamp(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max - 1).chain(['…']).collect() }
}

impl Outbound {
    /// Build from a `chat.message` or `system.notify`; `None` for other kinds or when there is
    /// nothing to show. `titles` maps actor ids to display titles.
    pub fn from_event(ev: &Event, titles: &HashMap<String, String>) -> Option<Outbound> {
        let d = &ev.data;
        let mut out = Outbound {
            event_id: ev.id.clone(),
            kind: OutboundKind::Chat,
            by: ev.by.clone(),
            sender: String::new(),
            recipients: Vec::new(),
            body: String::new(),
            attention: false,
            ackable: false,
            reply_required: false,
            reply_to: None,
            quote: None,
            attachments: Vec::new(),
            spill: None,
            part: None,
        };
        match ev.kind.as_str() {
            "chat.message" => {
                let title = |id: &str| titles.get(id).filter(|t| !t.trim().is_empty()).cloned();
                let sender = match str_of(d, "sender_title") {
                    "" => title(&ev.by).unwrap_or_else(|| ev.by.clone()),
                    t => t.to_string(),
                };
                out.sender = clamp(&sender, MAX_NAME_CHARS);
                let to: Vec<&str> = d.get("to").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let mut shown: Vec<String> = to
                    .iter()
                    .map(|t| match *t {
                        "user" | "@user" => "user".to_string(),
                        t if t.starts_with('@') => t.to_string(),
                        t => title(t).unwrap_or_else(|| t.to_string()),
                    })
                    .map(|t| clamp(&t, MAX_NAME_CHARS))
                    .collect();
                if shown.is_empty() {
                    shown.push("@all".into());
                }
                if shown.len() > MAX_RECIPIENTS_SHOWN {
                    let more = shown.len() - (MAX_RECIPIENTS_SHOWN - 1);
                    shown.truncate(MAX_RECIPIENTS_SHOWN - 1);
                    shown.push(format!("+{more}"));
                }
                out.recipients = shown;
                out.attention = str_of(d, "priority") == "attention";
                out.ackable = out.attention && ev.by != "user" && to.iter().any(|t| *t == "user" || *t == "@user");
                out.reply_required = d.get("reply_required").and_then(Value::as_bool).unwrap_or(false);
                out.reply_to = Some(str_of(d, "reply_to").to_string()).filter(|s| !s.is_empty());
                out.quote = Some(str_of(d, "quote_text")).filter(|s| !s.is_empty()).map(|q| clamp(&q.replace('\n', " "), MAX_QUOTE_CHARS));
                out.attachments = d.get("attachments").and_then(Value::as_array).map(|a| a.iter().map(attachment).collect()).unwrap_or_default();
                let text = d.get("text").and_then(Value::as_str).unwrap_or("");
                match spilled_path(text) {
                    Some(path) if out.attachments.iter().any(|a| a.path == path) => {
                        out.spill = Some(Spill { path: path.to_string(), expanded: false });
                    }
                    _ => out.body = text.to_string(),
                }
                let insight = str_of(d, "insight");
                if !insight.is_empty() {
                    if !out.body.is_empty() {
                        out.body.push_str("\n\n");
                    }
                    out.body.push_str("💭 ");
                    out.body.push_str(insight);
                }
            }
            "system.notify" => {
                out.kind = OutboundKind::Notify;
                out.sender = "system".into();
                let (title, message) = (str_of(d, "title"), str_of(d, "message"));
                out.body = match (title, message) {
                    ("", m) => m.to_string(),
                    (t, "") => t.to_string(),
                    (t, m) if t == m => t.to_string(),
                    (t, m) => format!("{t}\n{m}"),
                };
            }
            _ => return None,
        }
        if out.body.trim().is_empty() && out.attachments.is_empty() && out.spill.is_none() {
            return None;
        }
        Some(out)
    }

    /// A note from the bridge itself (e.g. the backlog summary of [`crate::outbox`]), rendered
    /// like a system notice: header `cccc`, the text as body. `id` is what the outbox tracks.
    pub fn bridge_note(id: &str, text: &str) -> Outbound {
        Outbound {
            event_id: id.to_string(),
            kind: OutboundKind::Notify,
            by: "system".into(),
            sender: "cccc".into(),
            recipients: Vec::new(),
            body: text.to_string(),
            attention: false,
            ackable: false,
            reply_required: false,
            reply_to: None,
            quote: None,
            attachments: Vec::new(),
            spill: None,
            part: None,
        }
    }

    /// Replace the spill placeholder with the full text read from the blob: the text is then
    /// delivered as parts and the blob is no longer sent as a file.
    pub fn expand_spill(&mut self, full_text: String) {
        if let Some(spill) = &mut self.spill {
            let path = spill.path.clone();
            spill.expanded = true;
            self.attachments.retain(|a| a.path != path);
            self.body = if self.body.is_empty() { full_text } else { format!("{full_text}\n\n{}", self.body) };
        }
    }

    /// The header line: `⚠️ sender → a, b · ↩ reply requested (2/3)`.
    pub fn header(&self) -> String {
        let mut h = String::new();
        if self.attention {
            h.push_str("⚠️ ");
        }
        h.push_str(&self.sender);
        if self.kind == OutboundKind::Chat {
            h.push_str(" → ");
            h.push_str(&self.recipients.join(", "));
        }
        if self.reply_required {
            h.push_str(" · ↩ reply requested");
        }
        if let Some(p) = self.part {
            h.push_str(&format!(" ({}/{})", p.index, p.total));
        }
        h
    }

    fn first_part(&self) -> bool {
        self.part.is_none_or(|p| p.index == 1)
    }

    /// The note shown for a spilled message (first part only).
    fn spill_note(&self) -> Option<String> {
        let spill = self.spill.as_ref().filter(|_| self.first_part())?;
        Some(if spill.expanded {
            match self.part {
                Some(p) => format!("📄 Long message: the full text follows in {} parts.", p.total),
                None => "📄 Long message: the full text follows.".to_string(),
            }
        } else {
            let name = spill.path.rsplit('/').next().unwrap_or(&spill.path);
            format!("📄 Long message: the full text follows as a file ({name}).")
        })
    }

    fn quote_line(&self) -> Option<&str> {
        self.quote.as_deref().filter(|_| self.first_part())
    }

    /// The body without the fence markers added by splitting (the original text of this part).
    pub fn original_body(&self) -> &str {
        match self.part {
            Some(p) => &self.body[p.reopen..self.body.len() - p.close],
            None => &self.body,
        }
    }

    /// Split into parts whose rendering for `profile` fits its limit. One part (without a
    /// `(k/n)` marker) when it already fits. For Discord the body is defused first, so the
    /// parts are what is sent and their lengths are exact.
    pub fn split(&self, profile: Profile) -> Vec<Outbound> {
        let mut base = self.clone();
        base.part = None;
        if profile.flavor == Flavor::DiscordMarkdown {
            base.body = defuse_mass_mentions(&base.body);
        }
        if profile.measure.fits(&profile.render_measured(&base), profile.limit) {
            return vec![base];
        }
        let mut widest = 9;
        loop {
            let overhead = [1, widest]
                .into_iter()
                .map(|index| {
                    let mut probe = base.clone();
                    probe.body = String::new();
                    probe.part = Some(Part { index, total: widest, reopen: 0, close: 0 });
                    profile.measure.len(&profile.render_measured(&probe))
                })
                .max()
                .unwrap_or(0);
            let budget = profile.limit.saturating_sub(overhead).max(2);
            let chunks = chunk::split(&base.body, profile.measure, budget);
            if chunks.len() <= widest {
                let total = chunks.len().max(1);
                let last_attachments = std::mem::take(&mut base.attachments);
                let ackable = base.ackable;
                let mut parts: Vec<Outbound> = chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let mut p = base.clone();
                        p.ackable = false;
                        p.part = Some(Part { index: i + 1, total, reopen: c.reopen, close: c.close });
                        p.body = c.text;
                        p
                    })
                    .collect();
                if parts.is_empty() {
                    // A header-only message too long for one part cannot happen (names are
                    // clamped); keep the message rather than lose it.
                    parts.push(base.clone());
                }
                if let Some(last) = parts.last_mut() {
                    last.attachments = last_attachments;
                    last.ackable = ackable;
                }
                return parts;
            }
            widest = widest * 10 + 9;
        }
    }
}

fn attachment(v: &Value) -> Attachment {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Attachment {
        kind: s("kind"),
        path: s("path"),
        title: s("title"),
        mime_type: s("mime_type"),
        bytes: v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
        sha256: s("sha256"),
    }
}

/// The blob path of a spill placeholder text, if `text` is one.
fn spilled_path(text: &str) -> Option<&str> {
    text.trim().strip_prefix(SPILL_PREFIX)?.strip_suffix(')').filter(|p| p.starts_with("state/"))
}

/// The output format of a platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Telegram `parse_mode: HTML` (with [`to_plain`] as the fallback).
    TelegramHtml,
    /// Discord message content (Markdown).
    DiscordMarkdown,
}

/// A platform's output format and length limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub flavor: Flavor,
    pub measure: Measure,
    pub limit: usize,
}

impl Profile {
    /// 4096 UTF-16 code units of visible text (Telegram counts after entity parsing).
    pub const TELEGRAM: Profile = Profile { flavor: Flavor::TelegramHtml, measure: Measure::Utf16, limit: 4096 };
    /// 2000 characters of content.
    pub const DISCORD: Profile = Profile { flavor: Flavor::DiscordMarkdown, measure: Measure::Chars, limit: 2000 };

    /// The rendering whose length the platform checks (an upper bound for Telegram HTML).
    fn render_measured(&self, out: &Outbound) -> String {
        match self.flavor {
            Flavor::TelegramHtml => to_plain(out),
            Flavor::DiscordMarkdown => to_discord_markdown(out),
        }
    }
}

/// Plain text: header line, optional quote and note lines, body. The Telegram fallback.
pub fn to_plain(out: &Outbound) -> String {
    let mut s = out.header();
    s.push('\n');
    if let Some(q) = out.quote_line() {
        s.push_str("> ");
        s.push_str(q);
        s.push('\n');
    }
    if let Some(n) = out.spill_note() {
        s.push_str(&n);
        s.push('\n');
    }
    s.push_str(&out.body);
    s
}

/// Telegram HTML (`parse_mode: "HTML"`): bold header, blockquote, escaped body with code
/// blocks and inline code. No other markup is produced, whatever the text contains.
pub fn to_telegram_html(out: &Outbound) -> String {
    let mut s = format!("<b>{}</b>\n", escape_html(&out.header()));
    if let Some(q) = out.quote_line() {
        s.push_str(&format!("<blockquote>{}</blockquote>\n", escape_html(q)));
    }
    if let Some(n) = out.spill_note() {
        s.push_str(&escape_html(&n));
        s.push('\n');
    }
    s.push_str(&markdown_code_to_html(&out.body));
    s
}

/// Discord content: bold escaped header, `> quote`, the body verbatim; mass mentions defused.
pub fn to_discord_markdown(out: &Outbound) -> String {
    let mut s = format!("**{}**\n", escape_markdown(&out.header()));
    if let Some(q) = out.quote_line() {
        s.push_str("> ");
        s.push_str(&escape_markdown(q));
        s.push('\n');
    }
    if let Some(n) = out.spill_note() {
        s.push_str(&escape_markdown(&n));
        s.push('\n');
    }
    s.push_str(&out.body);
    defuse_mass_mentions(&s)
}

/// `@everyone` / `@here` → `@\u{200D}everyone` / `@\u{200D}here`. Idempotent.
pub fn defuse_mass_mentions(s: &str) -> String {
    s.replace("@everyone", "@\u{200D}everyone").replace("@here", "@\u{200D}here")
}

/// Escape text for Telegram HTML content (`&`, `<`, `>`).
pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

/// Escape text for a double-quoted HTML attribute value.
fn escape_attr(s: &str) -> String {
    escape_html(s).replace('"', "&quot;")
}

/// Backslash-escape Discord Markdown metacharacters.
pub fn escape_markdown(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '#' | '[' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Body → Telegram HTML: fenced code blocks → `<pre><code>`, backtick spans → `<code>`,
/// everything else escaped.
fn markdown_code_to_html(body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 32);
    let mut pos = 0;
    for f in scan_fences(body) {
        o.push_str(&inline_code_to_html(&body[pos..f.open_start]));
        let code_end = f.close_start.unwrap_or(body.len()).max(f.body_start);
        let code = body[f.body_start..code_end].strip_suffix('\n').unwrap_or(&body[f.body_start..code_end]);
        let code = code.strip_suffix('\r').unwrap_or(code);
        let lang: String = f.info.split_whitespace().next().unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric() || "_+#.-".contains(*c)).collect();
        if code.is_empty() {
            // An empty entity is at best dropped by Telegram; show nothing for an empty block.
        } else if lang.is_empty() {
            o.push_str(&format!("<pre>{}</pre>", escape_html(code)));
        } else {
            o.push_str(&format!("<pre><code class=\"language-{}\">{}</code></pre>", escape_attr(&lang), escape_html(code)));
        }
        if f.close_start.is_some() && body[..f.end].ends_with('\n') {
            o.push('\n');
        }
        pos = f.end;
    }
    o.push_str(&inline_code_to_html(&body[pos..]));
    o
}

/// Escape a text segment, turning `` `code` `` spans (matching backtick runs on one line) into
/// `<code>`. Unmatched backticks stay literal.
fn inline_code_to_html(text: &str) -> String {
    let mut o = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('`') {
        o.push_str(&escape_html(&rest[..i]));
        let run = rest[i..].len() - rest[i..].trim_start_matches('`').len();
        let after = &rest[i + run..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let mut close = None;
        let mut search = 0;
        while let Some(j) = after[search..line_end].find('`') {
            let at = search + j;
            let n = after[at..].len() - after[at..].trim_start_matches('`').len();
            if n == run {
                close = Some(at);
                break;
            }
            search = at + n;
        }
        match close {
            Some(at) if !after[..at].trim().is_empty() => {
                o.push_str(&format!("<code>{}</code>", escape_html(&after[..at])));
                rest = &after[at + run..];
            }
            _ => {
                o.push_str(&rest[i..i + run]);
                rest = after;
            }
        }
    }
    o.push_str(&escape_html(rest));
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::tests::{Rng, random_text};
    use serde_json::json;

    fn event(kind: &str, by: &str, data: Value) -> Event {
        Event {
            v: 1,
            id: "15e1b1fcab1b40e88a7c1bf7bf4637a9".into(),
            ts: "2026-11-25T10:11:43.097327Z".into(),
            kind: kind.into(),
            group_id: "g_67a6cf96a190".into(),
            scope_key: String::new(),
            by: by.into(),
            data,
        }
    }

    fn chat(by: &str, text: &str, to: &[&str]) -> Event {
        let data = cccc_proto::ChatMessageData { text: text.into(), to: to.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        event("chat.message", by, serde_json::to_value(data).unwrap())
    }

    fn titles() -> HashMap<String, String> {
        HashMap::from([("lead".to_string(), "Lead".to_string()), ("peer-a".to_string(), "Reviewer".to_string())])
    }

    /// Strip tags and decode the entities we produce: the text Telegram displays.
    fn visible(html: &str) -> String {
        let mut o = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => in_tag = false,
                c if !in_tag => o.push(c),
                _ => {}
            }
        }
        o.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
    }

    /// Every tag in `html` is one we mean to produce.
    fn assert_only_known_tags(html: &str) {
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            let end = rest[i..].find('>').expect("unclosed tag") + i;
            let tag = &rest[i + 1..end];
            let ok = matches!(tag, "b" | "/b" | "pre" | "/pre" | "code" | "/code" | "blockquote" | "/blockquote")
                || (tag.starts_with("code class=\"language-") && tag.ends_with('"'));
            assert!(ok, "unexpected tag <{tag}> in {html}");
            rest = &rest[end + 1..];
        }
    }

    #[test]
    fn chat_message_renders_sender_recipients_and_flags() {
        let mut ev = chat("lead", "Please ack", &["user", "peer-a"]);
        ev.data["priority"] = json!("attention");
        ev.data["reply_required"] = json!(true);
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.event_id, "15e1b1fcab1b40e88a7c1bf7bf4637a9");
        assert_eq!(out.header(), "⚠️ Lead → user, Reviewer · ↩ reply requested");
        assert!(out.attention && out.ackable && out.reply_required);
        assert_eq!(to_plain(&out), "⚠️ Lead → user, Reviewer · ↩ reply requested\nPlease ack");
    }

    #[test]
    fn sender_title_wins_and_broadcast_shows_all() {
        let mut ev = chat("lead", "hi", &[]);
        ev.data["sender_title"] = json!("Boss");
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.header(), "Boss → @all");
        let out = Outbound::from_event(&chat("ghost", "hi", &["@peers", "@user"]), &titles()).unwrap();
        assert_eq!(out.header(), "ghost → @peers, user");
    }

    #[test]
    fn attention_is_ackable_only_when_addressed_to_user() {
        let mut ev = chat("lead", "x", &["peer-a"]);
        ev.data["priority"] = json!("attention");
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert!(out.attention && !out.ackable);
        let mut ev = chat("user", "x", &["user"]);
        ev.data["priority"] = json!("attention");
        assert!(!Outbound::from_event(&ev, &titles()).unwrap().ackable);
    }

    #[test]
    fn notify_is_title_and_message() {
        let ev = event("system.notify", "system", json!({"kind": "info", "title": "Build", "message": "green", "target_actor_id": null}));
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.kind, OutboundKind::Notify);
        assert_eq!(to_plain(&out), "system\nBuild\ngreen");
        let ev = event("system.notify", "system", json!({"title": "Same", "message": "Same"}));
        assert_eq!(Outbound::from_event(&ev, &titles()).unwrap().body, "Same");
    }

    #[test]
    fn bridge_notes_render_like_notices() {
        let note = Outbound::bridge_note("backlog:e9", &crate::outbox::backlog_notice(3));
        assert_eq!(to_plain(&note), format!("cccc\n{}", crate::outbox::backlog_notice(3)));
        assert_eq!(note.split(Profile::TELEGRAM).len(), 1);
        assert!(to_telegram_html(&note).starts_with("<b>cccc</b>\n⏭ 3 earlier messages"));
    }

    #[test]
    fn nothing_to_show_gives_none() {
        assert!(Outbound::from_event(&chat("lead", "  ", &["user"]), &titles()).is_none());
        assert!(Outbound::from_event(&event("chat.ack", "user", json!({})), &titles()).is_none());
        let mut ev = chat("lead", "", &["user"]);
        ev.data["attachments"] = json!([{"kind": "file", "path": "state/blobs/a_b.txt", "title": "b.txt", "mime_type": "text/plain", "bytes": 3, "sha256": "x"}]);
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.attachments[0].title, "b.txt");
    }

    #[test]
    fn reply_quote_and_insight_are_shown() {
        let mut ev = chat("peer-a", "done", &["user"]);
        ev.data["reply_to"] = json!("aa");
        ev.data["quote_text"] = json!("can you\nfix it?");
        ev.data["insight"] = json!("risky");
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.reply_to.as_deref(), Some("aa"));
        assert_eq!(to_plain(&out), "Reviewer → user\n> can you fix it?\ndone\n\n💭 risky");
        assert!(to_telegram_html(&out).contains("<blockquote>can you fix it?</blockquote>"));
    }

    #[test]
    fn html_escapes_everything_but_code() {
        let out = Outbound::from_event(&chat("lead", "a < b && c > d \"q\" *bold _it **x", &["user"]), &titles()).unwrap();
        let html = to_telegram_html(&out);
        assert_eq!(html, "<b>Lead → user</b>\na &lt; b &amp;&amp; c &gt; d \"q\" *bold _it **x");
        assert_only_known_tags(&html);
    }

    #[test]
    fn html_converts_fences_and_inline_code() {
        let text = "Run `cargo test` then:\n```rust\nfn main() { if a < b {} }\n```\nand ``a`b`` or `unclosed";
        let out = Outbound::from_event(&chat("lead", text, &["user"]), &titles()).unwrap();
        let html = to_telegram_html(&out);
        assert!(html.contains("Run <code>cargo test</code> then:\n<pre><code class=\"language-rust\">fn main() { if a &lt; b {} }</code></pre>\nand <code>a`b</code> or `unclosed"), "{html}");
        assert_only_known_tags(&html);
        let out = Outbound::from_event(&chat("lead", "a\n```\n```\nb", &["user"]), &titles()).unwrap();
        assert_eq!(to_telegram_html(&out), "<b>Lead → user</b>\na\n\nb");
        // Hostile info strings cannot break out of the attribute.
        let out = Outbound::from_event(&chat("lead", "```\"><script>\nx\n```", &["user"]), &titles()).unwrap();
        let html = to_telegram_html(&out);
        assert_eq!(html, "<b>Lead → user</b>\n<pre><code class=\"language-script\">x</code></pre>");
        assert_only_known_tags(&html);
    }

    #[test]
    fn html_visible_text_never_exceeds_the_plain_rendering() {
        let mut rng = Rng::new(7);
        for _ in 0..300 {
            let len = 1 + rng.below(800);
            let text = random_text(&mut rng, len);
            let out = Outbound::from_event(&chat("lead", &text, &["user"]), &titles()).unwrap();
            let html = to_telegram_html(&out);
            assert_only_known_tags(&html);
            assert!(Measure::Utf16.len(&visible(&html)) <= Measure::Utf16.len(&to_plain(&out)), "{text:?}");
        }
    }

    #[test]
    fn discord_defuses_mass_mentions_and_escapes_the_header() {
        let mut ev = chat("lead", "hey @everyone and @here, see `@everyone`", &["user"]);
        ev.data["sender_title"] = json!("*Lead*_");
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        let md = to_discord_markdown(&out);
        assert_eq!(md, "**\\*Lead\\*\\_ → user**\nhey @\u{200D}everyone and @\u{200D}here, see `@\u{200D}everyone`");
        assert!(!md.contains("@everyone") && !md.contains("@here"));
        assert_eq!(defuse_mass_mentions(&md), md, "idempotent");
    }

    #[test]
    fn spilled_message_notes_the_file_and_can_be_expanded() {
        let path = "state/ledger/blobs/chat.15e1b1fcab1b40e88a7c1bf7bf4637a9.txt";
        let mut ev = chat("lead", &format!("[cccc] (chat text stored at {path})"), &["user"]);
        ev.data["attachments"] = json!([{"kind": "text", "path": path, "bytes": 40000, "sha256": "s"}]);
        let mut out = Outbound::from_event(&ev, &titles()).unwrap();
        assert_eq!(out.spill, Some(Spill { path: path.into(), expanded: false }));
        assert_eq!(to_plain(&out), format!("Lead → user\n📄 Long message: the full text follows as a file (chat.15e1b1fcab1b40e88a7c1bf7bf4637a9.txt).\n"));
        assert_eq!(out.attachments.len(), 1);

        let full = "paragraph of words. ".repeat(2000);
        out.expand_spill(full.clone());
        assert!(out.attachments.is_empty());
        let parts = out.split(Profile::TELEGRAM);
        assert!(parts.len() >= 10);
        assert!(to_plain(&parts[0]).contains(&format!("full text follows in {} parts", parts.len())));
        assert!(!to_plain(&parts[1]).contains("Long message"));
        let joined: String = parts.iter().map(Outbound::original_body).collect();
        assert_eq!(joined, full);
    }

    #[test]
    fn a_text_that_merely_looks_spilled_is_shown_as_is() {
        let text = "[cccc] (chat text stored at state/ledger/blobs/chat.x.txt)";
        let out = Outbound::from_event(&chat("lead", text, &["user"]), &titles()).unwrap();
        assert!(out.spill.is_none());
        assert_eq!(out.body, text);
    }

    fn check_parts(out: &Outbound, profile: Profile) -> Vec<Outbound> {
        let parts = out.split(profile);
        let expected = match profile.flavor {
            Flavor::DiscordMarkdown => defuse_mass_mentions(&out.body),
            Flavor::TelegramHtml => out.body.clone(),
        };
        let joined: String = parts.iter().map(Outbound::original_body).collect();
        assert_eq!(joined, expected, "round trip");
        for (i, p) in parts.iter().enumerate() {
            let sent = match profile.flavor {
                Flavor::TelegramHtml => {
                    let html = to_telegram_html(p);
                    assert_only_known_tags(&html);
                    assert!(profile.measure.len(&visible(&html)) <= profile.limit);
                    to_plain(p)
                }
                Flavor::DiscordMarkdown => to_discord_markdown(p),
            };
            assert!(profile.measure.len(&sent) <= profile.limit, "part {i}: {} > {}", profile.measure.len(&sent), profile.limit);
            if parts.len() > 1 {
                assert_eq!(p.part.map(|p| (p.index, p.total)), Some((i + 1, parts.len())));
                assert!(p.header().ends_with(&format!("({}/{})", i + 1, parts.len())));
            }
            let last = i + 1 == parts.len();
            assert_eq!(p.ackable, out.ackable && last);
            assert_eq!(p.attachments.len(), if last { out.attachments.len() } else { 0 });
        }
        parts
    }

    #[test]
    fn a_ten_thousand_char_reply_becomes_ordered_parts_within_the_limits() {
        let mut rng = Rng::new(10_000);
        let mut text = String::new();
        while text.chars().count() < 10_000 {
            text.push_str(&random_text(&mut rng, 400));
        }
        let mut ev = chat("lead", &text, &["user"]);
        ev.data["priority"] = json!("attention");
        ev.data["attachments"] = json!([{"kind": "file", "path": "state/blobs/a_b.txt"}]);
        let out = Outbound::from_event(&ev, &titles()).unwrap();
        assert!(check_parts(&out, Profile::TELEGRAM).len() >= 3);
        assert!(check_parts(&out, Profile::DISCORD).len() >= 5);
    }

    #[test]
    fn discord_parts_close_and_reopen_a_split_fence() {
        let code: String = (0..200).map(|i| format!("print({i})  # @everyone\n")).collect();
        let text = format!("Here:\n```python\n{code}```\nDone.");
        let out = Outbound::from_event(&chat("lead", &text, &["user"]), &titles()).unwrap();
        let parts = check_parts(&out, Profile::DISCORD);
        assert!(parts.len() >= 3);
        for w in parts.windows(2) {
            assert!(w[0].body.ends_with("```"));
            assert!(w[1].body.starts_with("```python\n"));
        }
        assert!(parts.iter().all(|p| !to_discord_markdown(p).contains("@everyone")));
    }

    #[test]
    fn seeded_parts_always_fit() {
        let mut rng = Rng::new(99);
        for case in 0..200 {
            let len = 1 + rng.below(if case % 5 == 0 { 30_000 } else { 6000 });
            let text = random_text(&mut rng, len);
            let mut ev = chat("lead", &text, &["user", "peer-a", "@peers"]);
            if case % 3 == 0 {
                ev.data["quote_text"] = json!("q".repeat(500));
                ev.data["reply_required"] = json!(true);
            }
            let out = Outbound::from_event(&ev, &titles()).unwrap();
            check_parts(&out, Profile::TELEGRAM);
            check_parts(&out, Profile::DISCORD);
            check_parts(&out, Profile { flavor: Flavor::DiscordMarkdown, measure: Measure::Chars, limit: 300 });
        }
    }
}
