//! Text entity parsing like the real server: `parse_mode` HTML / MarkdownV2 / Markdown, input
//! cleaning and trimming, UTF-16 entity offsets, and entity auto-detection for human messages.
//!
//! Error texts follow TDLib's (`Bad Request: can't parse entities: …` is added by the caller).

use serde_json::{Value, json};

/// An entity over the plain text, offsets in Unicode scalar values (converted to UTF-16 later).
#[derive(Clone, Debug)]
struct Ent {
    kind: &'static str,
    start: usize,
    end: usize,
    url: Option<String>,
    language: Option<String>,
    custom_emoji_id: Option<String>,
    user_id: Option<i64>,
}

impl Ent {
    fn new(kind: &'static str, start: usize, end: usize) -> Ent {
        Ent {
            kind,
            start,
            end,
            url: None,
            language: None,
            custom_emoji_id: None,
            user_id: None,
        }
    }
}

/// Number of UTF-16 code units, which is how Telegram measures lengths and entity offsets.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Parse `text` with `parse_mode` (None = plain), then clean and trim it like the server does.
/// Returns the visible text and its entities (Bot API JSON, UTF-16 offsets), or the parse
/// error description *without* the `Bad Request: can't parse entities: ` prefix.
pub fn render(text: &str, parse_mode: Option<&str>) -> Result<(String, Vec<Value>), RenderError> {
    let cleaned: String = text.chars().filter(|c| *c != '\r').collect();
    let (chars, ents) = match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => (cleaned.chars().collect::<Vec<char>>(), Vec::new()),
        Some("html") => parse_html(&cleaned).map_err(RenderError::Parse)?,
        Some("markdownv2") => parse_markdown_v2(&cleaned).map_err(RenderError::Parse)?,
        Some("markdown") => parse_markdown(&cleaned).map_err(RenderError::Parse)?,
        Some(_) => return Err(RenderError::UnsupportedParseMode),
    };
    Ok(finish(chars, ents))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    Parse(String),
    UnsupportedParseMode,
}

/// Convert explicit `entities` given by the client (already UTF-16 based) after trimming: we
/// keep them as given, which is what matters for observation.
pub fn plain_with_entities(text: &str, entities: &[Value]) -> (String, Vec<Value>) {
    let cleaned: String = text.chars().filter(|c| *c != '\r').collect();
    let (t, _) = finish(cleaned.chars().collect(), Vec::new());
    (t, entities.to_vec())
}

fn is_trim_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\0')
}

/// Trim leading/trailing whitespace, fix entities, and convert offsets to UTF-16.
fn finish(chars: Vec<char>, ents: Vec<Ent>) -> (String, Vec<Value>) {
    let mut lo = 0;
    while lo < chars.len() && is_trim_space(chars[lo]) {
        lo += 1;
    }
    let mut hi = chars.len();
    while hi > lo && is_trim_space(chars[hi - 1]) {
        hi -= 1;
    }
    let kept: Vec<char> = chars[lo..hi].to_vec();
    // prefix sums of UTF-16 lengths
    let mut u16pos = Vec::with_capacity(kept.len() + 1);
    let mut acc = 0usize;
    u16pos.push(0);
    for c in &kept {
        acc += c.len_utf16();
        u16pos.push(acc);
    }
    let mut out = Vec::new();
    let mut ents = ents;
    ents.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    for e in ents {
        let s = e.start.clamp(lo, hi) - lo;
        let t = e.end.clamp(lo, hi) - lo;
        if t <= s {
            continue;
        }
        let mut o = serde_json::Map::new();
        o.insert("type".into(), json!(e.kind));
        o.insert("offset".into(), json!(u16pos[s]));
        o.insert("length".into(), json!(u16pos[t] - u16pos[s]));
        if let Some(u) = e.url {
            o.insert("url".into(), json!(u));
        }
        if let Some(l) = e.language {
            o.insert("language".into(), json!(l));
        }
        if let Some(id) = e.custom_emoji_id {
            o.insert("custom_emoji_id".into(), json!(id));
        }
        if let Some(uid) = e.user_id {
            o.insert(
                "user".into(),
                json!({"id": uid, "is_bot": false, "first_name": "User"}),
            );
        }
        out.push(Value::Object(o));
    }
    (kept.into_iter().collect(), out)
}

// ---------------------------------------------------------------------------------------------
// HTML (TDLib parse_html)

const HTML_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
];

struct OpenTag {
    name: String,
    start: usize,
    attr: Option<String>,
    expandable: bool,
}

fn decode_html_entity(s: &str) -> Option<(char, usize)> {
    // s starts right after '&'; returns decoded char and bytes consumed including ';'
    let semi = s.find(';')?;
    if semi == 0 || semi > 10 {
        return None;
    }
    let name = &s[..semi];
    let c = if let Some(num) = name.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        char::from_u32(code)?
    } else {
        match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            _ => return None,
        }
    };
    Some((c, semi + 1))
}

fn is_tag_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn parse_html(text: &str) -> Result<(Vec<char>, Vec<Ent>), String> {
    let bytes = text.as_bytes();
    let mut out: Vec<char> = Vec::new();
    let mut ents = Vec::new();
    let mut stack: Vec<OpenTag> = Vec::new();
    let mut i = 0usize;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap();
        if c == '&' {
            if let Some((d, used)) = decode_html_entity(&text[i + 1..]) {
                out.push(d);
                i += 1 + used;
            } else {
                out.push('&');
                i += 1;
            }
            continue;
        }
        if c != '<' {
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let begin = i;
        i += 1;
        if i >= text.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        if bytes[i] == b'/' {
            i += 1;
            let name_start = i;
            while i < text.len() && is_tag_name_char(bytes[i] as char) {
                i += 1;
            }
            let name = text[name_start..i].to_ascii_lowercase();
            while i < text.len() && (bytes[i] as char).is_ascii_whitespace() {
                i += 1;
            }
            if i >= text.len() || bytes[i] != b'>' {
                return Err(format!("Unclosed end tag at byte offset {begin}"));
            }
            i += 1;
            let Some(top) = stack.pop() else {
                return Err(format!("Unexpected end tag at byte offset {begin}"));
            };
            if top.name != name {
                return Err(format!(
                    "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{}>\"",
                    top.name, name
                ));
            }
            let end = out.len();
            close_html_tag(&mut ents, &stack, top, end);
            continue;
        }
        let name_start = i;
        while i < text.len() && is_tag_name_char(bytes[i] as char) {
            i += 1;
        }
        let name = text[name_start..i].to_ascii_lowercase();
        if !HTML_TAGS.contains(&name.as_str()) {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {begin}"
            ));
        }
        let mut attr: Option<String> = None;
        let mut expandable = false;
        let mut span_class: Option<String> = None;
        loop {
            while i < text.len() && (bytes[i] as char).is_ascii_whitespace() {
                i += 1;
            }
            if i >= text.len() {
                return Err(format!("Unclosed start tag at byte offset {begin}"));
            }
            if bytes[i] == b'>' {
                i += 1;
                break;
            }
            let an_start = i;
            while i < text.len() && (is_tag_name_char(bytes[i] as char) || bytes[i] == b'_') {
                i += 1;
            }
            let attr_name = text[an_start..i].to_ascii_lowercase();
            if attr_name.is_empty() {
                return Err(format!(
                    "Empty attribute name in the tag \"{name}\" at byte offset {begin}"
                ));
            }
            while i < text.len() && (bytes[i] as char).is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < text.len() && bytes[i] == b'=' {
                i += 1;
                while i < text.len() && (bytes[i] as char).is_ascii_whitespace() {
                    i += 1;
                }
                if i >= text.len() {
                    return Err(format!("Unclosed start tag at byte offset {begin}"));
                }
                if bytes[i] == b'"' || bytes[i] == b'\'' {
                    let q = bytes[i];
                    i += 1;
                    let vs = i;
                    while i < text.len() && bytes[i] != q {
                        i += 1;
                    }
                    if i >= text.len() {
                        return Err(format!("Unclosed start tag at byte offset {begin}"));
                    }
                    value = decode_attr(&text[vs..i]);
                    i += 1;
                } else {
                    let vs = i;
                    while i < text.len()
                        && !(bytes[i] as char).is_ascii_whitespace()
                        && bytes[i] != b'>'
                    {
                        i += 1;
                    }
                    value = decode_attr(&text[vs..i]);
                }
            } else if name != "blockquote" {
                return Err(format!(
                    "Expected equal sign in declaration of an attribute of the tag \"{name}\" at byte offset {begin}"
                ));
            }
            match (name.as_str(), attr_name.as_str()) {
                ("a", "href") => attr = Some(value),
                ("code", "class") => attr = Some(value),
                ("tg-emoji", "emoji-id") => attr = Some(value),
                ("span", "class") => span_class = Some(value),
                ("blockquote", "expandable") => expandable = true,
                _ => {}
            }
        }
        if name == "span" && span_class.as_deref() != Some("tg-spoiler") {
            return Err(format!(
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
            ));
        }
        if name == "tg-emoji" && attr.is_none() {
            return Err(format!(
                "Custom emoji entity must contain a tg://emoji URL at byte offset {begin}"
            ));
        }
        stack.push(OpenTag {
            name,
            start: out.len(),
            attr,
            expandable,
        });
    }
    if let Some(top) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            top.name
        ));
    }
    Ok((out, ents))
}

fn decode_attr(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap();
        if c == '&'
            && let Some((d, used)) = decode_html_entity(&s[i + 1..])
        {
            out.push(d);
            i += 1 + used;
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn close_html_tag(ents: &mut Vec<Ent>, stack: &[OpenTag], top: OpenTag, end: usize) {
    if end <= top.start {
        return; // empty entities are dropped
    }
    let kind: &'static str = match top.name.as_str() {
        "b" | "strong" => "bold",
        "i" | "em" => "italic",
        "u" | "ins" => "underline",
        "s" | "strike" | "del" => "strikethrough",
        "tg-spoiler" | "span" => "spoiler",
        "blockquote" => {
            if top.expandable {
                "expandable_blockquote"
            } else {
                "blockquote"
            }
        }
        "tg-emoji" => "custom_emoji",
        "pre" => "pre",
        "code" => {
            // <pre><code class="language-x"> sets the language of the enclosing pre
            if stack.last().is_some_and(|p| p.name == "pre") {
                if let Some(lang) = top
                    .attr
                    .as_deref()
                    .and_then(|c| c.strip_prefix("language-"))
                {
                    // attach to the pre once it closes: remember it on a pseudo entity
                    let mut e = Ent::new("__pre_lang", top.start, end);
                    e.language = Some(lang.to_string());
                    ents.push(e);
                }
                return;
            }
            "code"
        }
        "a" => {
            let Some(href) = top.attr.filter(|h| !h.is_empty()) else {
                return;
            };
            if let Some(id) = href
                .strip_prefix("tg://user?id=")
                .and_then(|s| s.parse::<i64>().ok())
            {
                let mut e = Ent::new("text_mention", top.start, end);
                e.user_id = Some(id);
                ents.push(e);
                return;
            }
            let mut e = Ent::new("text_link", top.start, end);
            e.url = Some(href);
            ents.push(e);
            return;
        }
        _ => return,
    };
    let mut e = Ent::new(kind, top.start, end);
    if kind == "custom_emoji" {
        e.custom_emoji_id = top.attr;
    }
    if kind == "pre"
        && let Some(pos) = ents
            .iter()
            .position(|x| x.kind == "__pre_lang" && x.start >= top.start && x.end <= end)
    {
        e.language = ents.remove(pos).language;
    }
    ents.push(e);
}

// ---------------------------------------------------------------------------------------------
// MarkdownV2 (TDLib parse_markdown_v2), strict about reserved characters.

const MDV2_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MdKind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre,
    TextUrl,
    CustomEmoji,
}

impl MdKind {
    fn tdlib_name(self) -> &'static str {
        match self {
            MdKind::Bold => "Bold",
            MdKind::Italic => "Italic",
            MdKind::Underline => "Underline",
            MdKind::Strikethrough => "Strikethrough",
            MdKind::Spoiler => "Spoiler",
            MdKind::Code => "Code",
            MdKind::Pre => "Pre",
            MdKind::TextUrl => "TextUrl",
            MdKind::CustomEmoji => "CustomEmoji",
        }
    }
    fn api(self) -> &'static str {
        match self {
            MdKind::Bold => "bold",
            MdKind::Italic => "italic",
            MdKind::Underline => "underline",
            MdKind::Strikethrough => "strikethrough",
            MdKind::Spoiler => "spoiler",
            MdKind::Code => "code",
            MdKind::Pre => "pre",
            MdKind::TextUrl => "text_link",
            MdKind::CustomEmoji => "custom_emoji",
        }
    }
}

struct MdOpen {
    kind: MdKind,
    start: usize,
    byte: usize,
    language: Option<String>,
}

fn reserved_err(c: char) -> String {
    format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
}

fn parse_markdown_v2(text: &str) -> Result<(Vec<char>, Vec<Ent>), String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |k: usize| chars.get(k).map(|x| x.1);
    let mut out: Vec<char> = Vec::new();
    let mut ents = Vec::new();
    let mut stack: Vec<MdOpen> = Vec::new();
    let mut quote_start: Option<usize> = None; // blockquote currently open (line based)
    let mut k = 0usize;
    while k < n {
        let (byte, c) = chars[k];
        let line_start = k == 0 || at(k - 1) == Some('\n');
        let in_code = stack
            .last()
            .is_some_and(|o| matches!(o.kind, MdKind::Code | MdKind::Pre));
        if c == '\\'
            && let Some(next) = at(k + 1)
            && (next as u32) > 0
            && (next as u32) < 127
        {
            out.push(next);
            k += 2;
            continue;
        }
        if in_code {
            let top = stack.last().unwrap();
            let closes = match top.kind {
                MdKind::Code => c == '`',
                _ => c == '`' && at(k + 1) == Some('`') && at(k + 2) == Some('`'),
            };
            if closes {
                let top = stack.pop().unwrap();
                k += if top.kind == MdKind::Pre { 3 } else { 1 };
                if out.len() > top.start {
                    let mut e = Ent::new(top.kind.api(), top.start, out.len());
                    e.language = top.language;
                    ents.push(e);
                }
            } else {
                out.push(c);
                k += 1;
            }
            continue;
        }
        // blockquote handling at line starts
        if line_start {
            if c == '>' {
                if quote_start.is_none() {
                    quote_start = Some(out.len());
                }
                k += 1;
                continue;
            }
            if c == '*' && at(k + 1) == Some('*') && at(k + 2) == Some('>') {
                if quote_start.is_none() {
                    quote_start = Some(out.len());
                }
                k += 3;
                continue;
            }
            if let Some(qs) = quote_start.take() {
                // the quote ended with the previous line (exclude its trailing newline)
                let end = out.len().saturating_sub(1);
                if end > qs {
                    ents.push(Ent::new("blockquote", qs, end));
                }
            }
        }
        if !MDV2_RESERVED.contains(c) {
            out.push(c);
            k += 1;
            continue;
        }
        // does c close the innermost open entity?
        if let Some(top) = stack.last() {
            let close_len = match top.kind {
                MdKind::Bold if c == '*' => Some(1),
                MdKind::Italic if c == '_' && at(k + 1) != Some('_') => Some(1),
                MdKind::Italic
                    if c == '_'
                        && at(k + 1) == Some('_')
                        && !stack_has(&stack, MdKind::Underline) =>
                {
                    Some(1)
                }
                MdKind::Underline if c == '_' && at(k + 1) == Some('_') => Some(2),
                MdKind::Strikethrough if c == '~' => Some(1),
                MdKind::Spoiler if c == '|' && at(k + 1) == Some('|') => Some(2),
                MdKind::TextUrl | MdKind::CustomEmoji if c == ']' => Some(1),
                _ => None,
            };
            if let Some(len) = close_len {
                let top = stack.pop().unwrap();
                k += len;
                if matches!(top.kind, MdKind::TextUrl | MdKind::CustomEmoji) {
                    let mut url = String::new();
                    if at(k) == Some('(') {
                        k += 1;
                        loop {
                            match at(k) {
                                None => {
                                    return Err(format!(
                                        "Can't find end of a url at byte offset {}",
                                        chars[k - 1].0
                                    ));
                                }
                                Some(')') => {
                                    k += 1;
                                    break;
                                }
                                Some('\\') if at(k + 1).is_some() => {
                                    url.push(at(k + 1).unwrap());
                                    k += 2;
                                }
                                Some(ch) => {
                                    url.push(ch);
                                    k += 1;
                                }
                            }
                        }
                    }
                    if out.len() > top.start && !url.is_empty() {
                        if top.kind == MdKind::CustomEmoji {
                            let mut e = Ent::new("custom_emoji", top.start, out.len());
                            e.custom_emoji_id =
                                url.strip_prefix("tg://emoji?id=").map(str::to_string);
                            ents.push(e);
                        } else if let Some(id) = url
                            .strip_prefix("tg://user?id=")
                            .and_then(|s| s.parse::<i64>().ok())
                        {
                            let mut e = Ent::new("text_mention", top.start, out.len());
                            e.user_id = Some(id);
                            ents.push(e);
                        } else {
                            let mut e = Ent::new("text_link", top.start, out.len());
                            e.url = Some(url);
                            ents.push(e);
                        }
                    }
                } else if out.len() > top.start {
                    ents.push(Ent::new(top.kind.api(), top.start, out.len()));
                }
                continue;
            }
        }
        // otherwise it opens a new entity, or is an unescaped reserved character
        let (kind, len) = match c {
            '*' => (MdKind::Bold, 1),
            '_' if at(k + 1) == Some('_') => (MdKind::Underline, 2),
            '_' => (MdKind::Italic, 1),
            '~' => (MdKind::Strikethrough, 1),
            '|' if at(k + 1) == Some('|') => (MdKind::Spoiler, 2),
            '[' => (MdKind::TextUrl, 1),
            '!' if at(k + 1) == Some('[') => (MdKind::CustomEmoji, 2),
            '`' if at(k + 1) == Some('`') && at(k + 2) == Some('`') => (MdKind::Pre, 3),
            '`' => (MdKind::Code, 1),
            _ => return Err(reserved_err(c)),
        };
        k += len;
        let mut language = None;
        if kind == MdKind::Pre {
            // optional language up to the first newline
            let mut lang = String::new();
            let mut j = k;
            while let Some(ch) = at(j) {
                if ch == '\n' || ch == '`' || ch.is_whitespace() {
                    break;
                }
                lang.push(ch);
                j += 1;
            }
            if at(j) == Some('\n') {
                k = j + 1;
                if !lang.is_empty() {
                    language = Some(lang);
                }
            }
        }
        stack.push(MdOpen {
            kind,
            start: out.len(),
            byte,
            language,
        });
    }
    if let Some(top) = stack.first() {
        return Err(format!(
            "Can't find end of {} entity at byte offset {}",
            top.kind.tdlib_name(),
            top.byte
        ));
    }
    if let Some(qs) = quote_start
        && out.len() > qs
    {
        ents.push(Ent::new("blockquote", qs, out.len()));
    }
    Ok((out, ents))
}

fn stack_has(stack: &[MdOpen], kind: MdKind) -> bool {
    stack.iter().any(|o| o.kind == kind)
}

// ---------------------------------------------------------------------------------------------
// Legacy Markdown (TDLib parse_markdown): *bold* _italic_ `code` ```pre``` [text](url), no nesting.

fn parse_markdown(text: &str) -> Result<(Vec<char>, Vec<Ent>), String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |k: usize| chars.get(k).map(|x| x.1);
    let mut out: Vec<char> = Vec::new();
    let mut ents = Vec::new();
    let mut k = 0;
    while k < n {
        let (byte, c) = chars[k];
        if c == '\\' && matches!(at(k + 1), Some('_' | '*' | '`' | '[')) {
            out.push(at(k + 1).unwrap());
            k += 2;
            continue;
        }
        if !matches!(c, '_' | '*' | '`' | '[') {
            out.push(c);
            k += 1;
            continue;
        }
        let start = out.len();
        let err = || format!("Can't find end of the entity starting at byte offset {byte}");
        match c {
            '[' => {
                k += 1;
                while k < n && at(k) != Some(']') {
                    out.push(at(k).unwrap());
                    k += 1;
                }
                if k >= n {
                    return Err(err());
                }
                k += 1;
                if at(k) == Some('(') {
                    let mut url = String::new();
                    k += 1;
                    while k < n && at(k) != Some(')') {
                        url.push(at(k).unwrap());
                        k += 1;
                    }
                    if k >= n {
                        return Err(err());
                    }
                    k += 1;
                    if out.len() > start && !url.is_empty() {
                        let mut e = Ent::new("text_link", start, out.len());
                        e.url = Some(url);
                        ents.push(e);
                    }
                }
            }
            '`' if at(k + 1) == Some('`') && at(k + 2) == Some('`') => {
                k += 3;
                let mut language = None;
                let mut lang = String::new();
                let mut j = k;
                while let Some(ch) = at(j) {
                    if ch == '\n' || ch == '`' || ch.is_whitespace() {
                        break;
                    }
                    lang.push(ch);
                    j += 1;
                }
                if at(j) == Some('\n') {
                    k = j + 1;
                    if !lang.is_empty() {
                        language = Some(lang);
                    }
                }
                loop {
                    if k >= n {
                        return Err(err());
                    }
                    if at(k) == Some('`') && at(k + 1) == Some('`') && at(k + 2) == Some('`') {
                        k += 3;
                        break;
                    }
                    out.push(at(k).unwrap());
                    k += 1;
                }
                if out.len() > start {
                    let mut e = Ent::new("pre", start, out.len());
                    e.language = language;
                    ents.push(e);
                }
            }
            _ => {
                let kind = match c {
                    '*' => "bold",
                    '_' => "italic",
                    _ => "code",
                };
                k += 1;
                loop {
                    if k >= n {
                        return Err(err());
                    }
                    if at(k) == Some(c) {
                        k += 1;
                        break;
                    }
                    out.push(at(k).unwrap());
                    k += 1;
                }
                if out.len() > start {
                    ents.push(Ent::new(kind, start, out.len()));
                }
            }
        }
    }
    Ok((out, ents))
}

// ---------------------------------------------------------------------------------------------
// Auto-detected entities in messages typed by humans: bot_command, mention, url, hashtag.

pub fn detect_entities(text: &str) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut ents = Vec::new();
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut k = 0;
    while k < n {
        let c = chars[k];
        let boundary =
            k == 0 || !(word_char(chars[k - 1]) || chars[k - 1] == '/' || chars[k - 1] == '@');
        if boundary && c == '/' {
            let mut j = k + 1;
            while j < n && word_char(chars[j]) && j - k <= 64 {
                j += 1;
            }
            if j > k + 1 {
                if j < n && chars[j] == '@' {
                    let mut m = j + 1;
                    while m < n && word_char(chars[m]) {
                        m += 1;
                    }
                    if m - j > 3 {
                        j = m;
                    }
                }
                if j >= n || !word_char(chars[j]) {
                    ents.push(Ent::new("bot_command", k, j));
                    k = j;
                    continue;
                }
            }
        }
        if boundary && c == '@' {
            let mut j = k + 1;
            while j < n && word_char(chars[j]) {
                j += 1;
            }
            let len = j - k - 1;
            if (5..=32).contains(&len) {
                ents.push(Ent::new("mention", k, j));
                k = j;
                continue;
            }
        }
        if boundary && c == '#' {
            let mut j = k + 1;
            while j < n && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j > k + 1 && chars[k + 1..j].iter().any(|c| !c.is_ascii_digit()) {
                ents.push(Ent::new("hashtag", k, j));
                k = j;
                continue;
            }
        }
        if (k == 0 || !chars[k - 1].is_alphanumeric())
            && (starts_with(&chars[k..], "https://") || starts_with(&chars[k..], "http://"))
        {
            let mut j = k;
            while j < n && !chars[j].is_whitespace() {
                j += 1;
            }
            while j > k && matches!(chars[j - 1], '.' | ',' | ')' | '!' | '?' | ';' | ':') {
                j -= 1;
            }
            ents.push(Ent::new("url", k, j));
            k = j;
            continue;
        }
        k += 1;
    }
    // offsets: text is not trimmed here (the caller trims first)
    let (_, out) = finish(chars, ents);
    out
}

fn starts_with(chars: &[char], prefix: &str) -> bool {
    let mut it = chars.iter();
    prefix.chars().all(|p| it.next() == Some(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str, pm: &str) -> (String, Vec<Value>) {
        render(t, Some(pm)).unwrap()
    }
    fn err(t: &str, pm: &str) -> String {
        match render(t, Some(pm)).unwrap_err() {
            RenderError::Parse(e) => e,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn html_basic_and_errors() {
        let (t, e) = ok(
            "<b>bold</b> &lt;x&gt; <a href=\"https://e.com\">link</a> <pre><code class=\"language-rust\">fn</code></pre>",
            "HTML",
        );
        assert_eq!(t, "bold <x> link fn");
        assert_eq!(e[0], json!({"type":"bold","offset":0,"length":4}));
        assert_eq!(e[1]["type"], "text_link");
        assert_eq!(e[1]["url"], "https://e.com");
        assert_eq!(
            e[2],
            json!({"type":"pre","offset":14,"length":2,"language":"rust"})
        );
        assert_eq!(
            err("<b>x", "HTML"),
            "Can't find end tag corresponding to start tag \"b\""
        );
        assert_eq!(
            err("a <foo>x</foo>", "HTML"),
            "Unsupported start tag \"foo\" at byte offset 2"
        );
        assert_eq!(
            err("<b><i>x</b></i>", "HTML"),
            "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""
        );
        assert_eq!(err("x</b>", "HTML"), "Unexpected end tag at byte offset 1");
        assert_eq!(
            err("1 < 2", "HTML"),
            "Unsupported start tag \"\" at byte offset 2"
        );
        assert!(err("<br/>", "HTML").starts_with("Unsupported start tag \"br\""));
        // unknown &entities pass through literally
        assert_eq!(ok("a &nbsp; b & c", "HTML").0, "a &nbsp; b & c");
    }

    #[test]
    fn utf16_offsets_and_trim() {
        let (t, e) = ok("  😀 <b>x</b>\n\n", "HTML");
        assert_eq!(t, "😀 x");
        assert_eq!(e[0], json!({"type":"bold","offset":3,"length":1}));
        assert_eq!(render("a\r\nb", None).unwrap().0, "a\nb");
    }

    #[test]
    fn markdown_v2() {
        let (t, e) = ok(
            "*bold* _it_ __u__ ~s~ ||sp|| `c\\`` [l](https://x.y/\\)) 1\\.5",
            "MarkdownV2",
        );
        assert_eq!(t, "bold it u s sp c` l 1.5");
        let kinds: Vec<_> = e
            .iter()
            .map(|x| x["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "bold",
                "italic",
                "underline",
                "strikethrough",
                "spoiler",
                "code",
                "text_link"
            ]
        );
        assert_eq!(e[6]["url"], "https://x.y/)");
        assert_eq!(
            err("1.5", "MarkdownV2"),
            "Character '.' is reserved and must be escaped with the preceding '\\'"
        );
        assert_eq!(
            err("a *b", "MarkdownV2"),
            "Can't find end of Bold entity at byte offset 2"
        );
        let (t, e) = ok("```rust\nfn main() {}\n```", "MarkdownV2");
        assert_eq!(t, "fn main() {}");
        assert_eq!(e[0]["language"], "rust");
        let (t, e) = ok(">quoted\n>more\nafter", "MarkdownV2");
        assert_eq!(t, "quoted\nmore\nafter");
        assert_eq!(e[0], json!({"type":"blockquote","offset":0,"length":11}));
    }

    #[test]
    fn legacy_markdown() {
        let (t, e) = ok("*b* _i_ `c` [l](http://x)", "Markdown");
        assert_eq!(t, "b i c l");
        assert_eq!(e.len(), 4);
        assert_eq!(
            err("a *b", "Markdown"),
            "Can't find end of the entity starting at byte offset 2"
        );
    }

    #[test]
    fn detection() {
        let e = detect_entities("/status@cccc_test_bot hi @someone see https://x.y/z. #tag");
        let kinds: Vec<_> = e
            .iter()
            .map(|x| x["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["bot_command", "mention", "url", "hashtag"]);
        assert_eq!(e[0]["length"], 21);
        assert_eq!(e[2]["length"], 13); // trailing "." is not part of the URL
    }
}
