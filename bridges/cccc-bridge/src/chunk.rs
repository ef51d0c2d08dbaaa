//! Lossless splitting of outbound text into platform-sized pieces.
//!
//! Agents write long Markdown replies; Telegram caps a message at 4096 UTF-16 code units (after
//! entity parsing) and Discord at 2000 characters. Py432 truncated to 64 lines and dropped the
//! rest; PyHEAD/RsHEAD cut every N scalar values, mid-word and mid-code-fence (bridges.md §3.6).
//! This module is the replacement. Its guarantees, each checked by the tests below (including a
//! seeded generator over thousands of mixed texts):
//!
//! * **Limit.** Every chunk, *including the fence lines this module adds*, measures at most
//!   `limit` in the chosen [`Measure`]. Telegram is [`Measure::Utf16`] (its limits and entity
//!   offsets are UTF-16), Discord is [`Measure::Chars`].
//! * **Lossless.** Removing the added markers ([`Chunk::original`]) and concatenating gives the
//!   input byte for byte ([`join_chunks`]). Nothing is trimmed, normalised or duplicated.
//! * **Never inside a character.** Cuts land on `char` boundaries, so a UTF-16 surrogate pair is
//!   never split either. As a cheap grapheme heuristic a hard cut also avoids landing before a
//!   combining mark, variation selector, skin-tone modifier or zero-width joiner (and right after
//!   a ZWJ), and between `\r` and `\n`; it backs off a few characters at most.
//! * **Nice boundaries.** Within the window that fits, the cut prefers the last paragraph break
//!   (`\n\n`), then the last line break, then the last space, and only then a hard cut. A nicer
//!   boundary is taken only if it keeps the chunk reasonably full (at least ½, ⅓, ¼ of the window
//!   respectively), so one early blank line cannot produce a stream of tiny messages. The
//!   separator stays at the *end* of the earlier chunk, so each chunk starts with content (the
//!   platforms trim edge whitespace, which then only ever eats separators).
//! * **Code fences survive.** A fenced block (```` ```lang ```` or `~~~`, CommonMark rules: up to
//!   three spaces of indent, a closing run of the same character at least as long) that is cut
//!   is closed at the end of the chunk (`"\n```"`, or just the run when the chunk already ends at
//!   a line start) and reopened at the start of the next chunk with the *same opener line*, so
//!   the language tag carries over and every chunk renders on its own. The cut never lands inside
//!   an opener or closer line, nor right after an opener or right before a closer (which would
//!   produce an empty code block). Fences whose opener line is too long to repeat (more than a
//!   quarter of the limit) are left alone: they are split as plain text rather than risk
//!   breaking the limit.
//!
//! The added markers are recorded by *length* in each [`Chunk`] (`reopen` bytes at the start,
//! `close` bytes at the end) instead of being re-detected by parsing. Re-detection is ambiguous
//! (a chunk may legitimately end with a closing fence), a recorded length is not.
//!
//! This module adds no continuation markers like `(2/3)`; [`crate::render`] does, and reserves
//! room for them before calling [`split`].

/// How a platform measures message length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// UTF-16 code units (Telegram). A character outside the BMP (most emoji) counts 2.
    Utf16,
    /// Unicode scalar values (Discord).
    Chars,
}

impl Measure {
    /// The width of one character.
    pub fn of_char(self, c: char) -> usize {
        match self {
            Measure::Utf16 => c.len_utf16(),
            Measure::Chars => 1,
        }
    }

    /// The length of a string.
    pub fn len(self, s: &str) -> usize {
        match self {
            Measure::Utf16 => s.encode_utf16().count(),
            Measure::Chars => s.chars().count(),
        }
    }

    /// `self.len(s) <= max`, without measuring past `max`.
    pub fn fits(self, s: &str, max: usize) -> bool {
        let mut used = 0;
        s.chars().all(|c| {
            used += self.of_char(c);
            used <= max
        })
    }
}

/// One piece of split text: `text` is what is sent; its first `reopen` bytes and its last
/// `close` bytes were added by the splitter (fence reopen and close lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    pub reopen: usize,
    pub close: usize,
}

impl Chunk {
    /// The part of the input this chunk carries (the text without the added markers).
    pub fn original(&self) -> &str {
        &self.text[self.reopen..self.text.len() - self.close]
    }

    /// Did the splitter add fence lines to this chunk?
    pub fn is_repaired(&self) -> bool {
        self.reopen > 0 || self.close > 0
    }
}

/// The input text back from its chunks (the added markers removed).
pub fn join_chunks(chunks: &[Chunk]) -> String {
    chunks.iter().map(Chunk::original).collect()
}

// Minimum fill before a nicer boundary is preferred over a fuller chunk (numerator, denominator).
const PARAGRAPH_MIN_FILL: (usize, usize) = (1, 2);
const LINE_MIN_FILL: (usize, usize) = (1, 3);
const WORD_MIN_FILL: (usize, usize) = (1, 4);
// How far a hard cut may back off to avoid splitting a grapheme-ish cluster.
const GRAPHEME_BACKOFF_CHARS: usize = 8;

/// Split `text` into chunks of at most `limit` (in `measure` units). Empty text gives no chunks;
/// text that fits gives one chunk equal to the input.
///
/// # Panics
/// If `limit < 2` (a supplementary-plane character needs two UTF-16 units).
pub fn split(text: &str, measure: Measure, limit: usize) -> Vec<Chunk> {
    assert!(limit >= 2, "chunk limit must be at least 2, got {limit}");
    if text.is_empty() {
        return Vec::new();
    }
    if measure.fits(text, limit) {
        return vec![Chunk { text: text.to_string(), reopen: 0, close: 0 }];
    }
    let fences: Vec<Fence> = scan_fences(text).into_iter().filter(|f| f.repairable(measure, limit)).collect();
    let mut out = Vec::new();
    let mut p = 0;
    while p < text.len() {
        let prefix = fence_at(&fences, text, p).map(|f| format!("{}\n", f.opener)).unwrap_or_default();
        let prefix_len = measure.len(&prefix);
        let rest = &text[p..];
        if measure.fits(rest, limit - prefix_len) {
            out.push(Chunk { reopen: prefix.len(), close: 0, text: prefix + rest });
            break;
        }
        let mut budget = limit - prefix_len;
        loop {
            let e = choose_cut(text, p, budget, measure, &fences);
            let suffix = match fence_at(&fences, text, e) {
                Some(f) if text[..e].ends_with('\n') => f.marker.clone(),
                Some(f) => format!("\n{}", f.marker),
                None => String::new(),
            };
            let total = prefix_len + measure.len(&text[p..e]) + measure.len(&suffix);
            if total <= limit || budget <= 2 {
                debug_assert!(total <= limit, "chunk of {total} exceeds limit {limit}");
                out.push(Chunk { reopen: prefix.len(), close: suffix.len(), text: format!("{prefix}{}{suffix}", &text[p..e]) });
                p = e;
                break;
            }
            budget = budget.saturating_sub(total - limit).max(2);
        }
    }
    out
}

/// The cut position for a chunk that starts at `p` and may hold `budget` units of original text.
/// Always `> p`.
fn choose_cut(text: &str, p: usize, budget: usize, measure: Measure, fences: &[Fence]) -> usize {
    let mut used = 0;
    let mut hard = p;
    for (i, c) in text[p..].char_indices() {
        let w = measure.of_char(c);
        if used + w > budget {
            break;
        }
        used += w;
        hard = p + i + c.len_utf8();
    }
    if hard >= text.len() {
        return text.len();
    }
    if hard == p {
        // Unreachable with budget >= 2; still, always make progress.
        return p + text[p..].chars().next().map_or(1, char::len_utf8);
    }
    let allowed = |e: usize| fences.iter().all(|f| f.allows_cut(e));
    let fill = |e: usize| measure.len(&text[p..e]);
    let window = &text[p..hard];
    let boundaries: [(&str, (usize, usize)); 3] =
        [("\n\n", PARAGRAPH_MIN_FILL), ("\n", LINE_MIN_FILL), (" ", WORD_MIN_FILL)];
    for (sep, (num, den)) in boundaries {
        let min = budget * num / den;
        let mut end = window.len();
        while let Some(i) = window[..end].rfind(sep) {
            let e = p + i + sep.len();
            if fill(e) < min.max(1) {
                break;
            }
            if allowed(e) {
                return e;
            }
            end = i;
        }
    }
    // Hard cut: back off over grapheme joins and fence lines, but never to the chunk start.
    let mut e = hard;
    let mut steps = 0;
    while e > p && (!allowed(e) || (steps < GRAPHEME_BACKOFF_CHARS && bad_grapheme_cut(text, e))) {
        e = text[..e].char_indices().next_back().map_or(p, |(i, _)| i);
        steps += 1;
    }
    if e > p { e } else { hard }
}

/// Would cutting at byte `e` visibly break a character cluster?
fn bad_grapheme_cut(text: &str, e: usize) -> bool {
    let before = text[..e].chars().next_back();
    let after = text[e..].chars().next();
    match (before, after) {
        (Some('\r'), Some('\n')) => true,
        (Some('\u{200D}'), Some(_)) => true,
        (Some(b), Some(a)) if is_regional_indicator(b) && is_regional_indicator(a) => true,
        (_, Some(a)) => is_extend(a),
        _ => false,
    }
}

fn is_extend(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'     // combining diacritics
        | '\u{200D}'                // zero-width joiner
        | '\u{20D0}'..='\u{20FF}'   // combining marks for symbols (keycaps)
        | '\u{FE00}'..='\u{FE0F}'   // variation selectors
        | '\u{1F3FB}'..='\u{1F3FF}' // skin-tone modifiers
        | '\u{E0020}'..='\u{E007F}' // tag characters (subdivision flags)
    )
}

fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

/// The repairable fence whose body contains byte position `pos` (a chunk cut there ends inside
/// the fence and the next chunk starts inside it).
fn fence_at<'f>(fences: &'f [Fence], text: &str, pos: usize) -> Option<&'f Fence> {
    if pos >= text.len() {
        return None;
    }
    fences.iter().find(|f| f.body_start <= pos && pos <= f.close_start.unwrap_or(text.len()))
}

/// A fenced code block found by [`scan_fences`]. Byte offsets into the scanned text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fence {
    /// Start of the opener line.
    pub open_start: usize,
    /// Just after the opener line's newline (start of the code).
    pub body_start: usize,
    /// Start of the closer line, if the fence is closed.
    pub close_start: Option<usize>,
    /// Just after the closer line (its newline included), or the end of the text if unclosed.
    pub end: usize,
    /// The opener line without its line terminator (indent and info string included).
    pub opener: String,
    /// The fence run of the opener, e.g. "```" or "~~~~": what closes the block.
    pub marker: String,
    /// The trimmed info string ("rust", "python title=x", or "").
    pub info: String,
}

impl Fence {
    fn repairable(&self, measure: Measure, limit: usize) -> bool {
        let cost = measure.len(&self.opener) + 1 + measure.len(&self.marker) + 1;
        cost <= limit / 4
    }

    fn allows_cut(&self, e: usize) -> bool {
        let in_opener = self.open_start < e && e <= self.body_start;
        let in_closer = self.close_start.is_some_and(|c| c <= e && e < self.end);
        !(in_opener || in_closer)
    }
}

/// One line of `text`: (start, end of content without `\r?\n`, end including the newline).
fn lines(text: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let start = pos;
        let (content_end, end) = match text[start..].find('\n') {
            Some(i) => (start + i, start + i + 1),
            None => (text.len(), text.len()),
        };
        let content_end = if text[start..content_end].ends_with('\r') { content_end - 1 } else { content_end };
        pos = end;
        Some((start, content_end, end))
    })
}

/// Up to three spaces of indent, then a run of one fence character: (char, run length, rest).
fn fence_run(line: &str) -> Option<(char, usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let body = &line[indent..];
    let c = body.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = body.len() - body.trim_start_matches(c).len();
    (n >= 3).then(|| (c, n, &body[n..]))
}

/// Find the fenced code blocks of `text` (CommonMark-style, top level only).
pub(crate) fn scan_fences(text: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut open: Option<Fence> = None;
    let mut open_run: (char, usize) = (' ', 0);
    for (start, content_end, end) in lines(text) {
        let line = &text[start..content_end];
        match open.take() {
            None => {
                if let Some((c, n, rest)) = fence_run(line)
                    && !(c == '`' && rest.contains('`'))
                {
                    open_run = (c, n);
                    open = Some(Fence {
                        open_start: start,
                        body_start: end,
                        close_start: None,
                        end: text.len(),
                        opener: line.to_string(),
                        marker: c.to_string().repeat(n),
                        info: rest.trim().to_string(),
                    });
                }
            }
            Some(mut f) => match fence_run(line) {
                Some((c, n, rest)) if c == open_run.0 && n >= open_run.1 && rest.trim().is_empty() => {
                    f.close_start = Some(start);
                    f.end = end;
                    out.push(f);
                }
                _ => open = Some(f),
            },
        }
    }
    out.extend(open);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64*: a tiny deterministic generator so failures reproduce from the seed.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// A random text mixing prose, CJK, emoji (incl. ZWJ sequences and flags), long unbroken
    /// runs, CRLF, blank lines and code fences (closed, unclosed, tilde, long info strings).
    pub(crate) fn random_text(rng: &mut Rng, target_len: usize) -> String {
        const WORDS: &[&str] = &["alpha", "beta", "gamma", "the", "agent", "said", "ok", "x", "<b>", "&amp;", "*bold*", "_u_", "`tick`", "@everyone", "@here"];
        const CJK: &[&str] = &["你好", "世界", "日本語", "한국어", "漢字テキスト"];
        const EMOJI: &[&str] = &["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🏳️‍🌈", "❤️", "1️⃣", "𝕏", "é", "e\u{301}"];
        const FENCES: &[&str] = &["```", "```rust", "```python title=\"x\"", "~~~", "````", "  ```js", "```a-very-long-info-string-that-goes-on-and-on-and-on-for-a-while-longer-than-usual"];
        let mut s = String::new();
        let mut open_fence: Option<&str> = None;
        while s.len() < target_len {
            match rng.below(12) {
                0..=3 => {
                    s.push_str(rng.pick::<&str>(WORDS));
                    s.push(' ');
                }
                4 => s.push_str(rng.pick::<&str>(CJK)),
                5 => s.push_str(rng.pick::<&str>(EMOJI)),
                6 => s.push('\n'),
                7 => s.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n\n" }),
                8 => {
                    let n = rng.below(300);
                    let c = *rng.pick(&['a', '漢', '😀', '-']);
                    s.extend(std::iter::repeat_n(c, n));
                }
                9 => match open_fence {
                    None => {
                        let f = *rng.pick(FENCES);
                        if !s.is_empty() && !s.ends_with('\n') {
                            s.push('\n');
                        }
                        s.push_str(f);
                        s.push('\n');
                        open_fence = Some(f);
                    }
                    Some(f) => {
                        if !s.ends_with('\n') {
                            s.push('\n');
                        }
                        let run: String = f.trim_start().chars().take_while(|c| *c == '`' || *c == '~').collect();
                        s.push_str(&run);
                        s.push('\n');
                        open_fence = None;
                    }
                },
                10 => s.push_str("    let x = vec![1, 2, 3]; // code-ish line\n"),
                _ => s.push_str("``"),
            }
        }
        s
    }

    fn check(text: &str, measure: Measure, limit: usize) -> Vec<Chunk> {
        let chunks = split(text, measure, limit);
        // Balance is promised only when every fence can be repaired (an unrepairable fence is
        // split as plain text, and its stray closer can then look like an opener).
        let all_repairable = scan_fences(text).iter().all(|f| f.repairable(measure, limit));
        for (i, c) in chunks.iter().enumerate() {
            assert!(measure.len(&c.text) <= limit, "chunk {i} is {} > {limit}: {:?}", measure.len(&c.text), c.text);
            assert!(!c.original().is_empty(), "chunk {i} carries no input");
            if c.close > 0 && all_repairable {
                assert!(scan_fences(&c.text).iter().all(|f| f.close_start.is_some()), "chunk {i} not balanced: {:?}", c.text);
            }
        }
        assert_eq!(join_chunks(&chunks), text, "round trip");
        chunks
    }

    #[test]
    fn short_text_is_one_chunk_and_empty_is_none() {
        assert!(split("", Measure::Utf16, 10).is_empty());
        let c = split("hello", Measure::Utf16, 10);
        assert_eq!(c, vec![Chunk { text: "hello".into(), reopen: 0, close: 0 }]);
        assert!(!c[0].is_repaired());
    }

    #[test]
    fn measures_utf16_and_chars() {
        assert_eq!(Measure::Utf16.len("a😀漢"), 4);
        assert_eq!(Measure::Chars.len("a😀漢"), 3);
        // Exactly at the limit in UTF-16 but over in bytes: still one chunk.
        assert_eq!(split("😀😀", Measure::Utf16, 4).len(), 1);
        assert_eq!(split("😀😀", Measure::Chars, 2).len(), 1);
        assert_eq!(split("😀😀😀", Measure::Utf16, 4).len(), 2);
    }

    #[test]
    fn prefers_paragraph_then_line_then_word() {
        let para = format!("{}\n\n{}", "a".repeat(60), "b".repeat(60));
        let c = check(&para, Measure::Chars, 100);
        assert_eq!(c[0].text, format!("{}\n\n", "a".repeat(60)));

        let line = format!("{}\n{}", "a ".repeat(30), "b".repeat(60));
        let c = check(&line, Measure::Chars, 100);
        assert_eq!(c[0].text, format!("{}\n", "a ".repeat(30)));

        let words = "word ".repeat(40);
        let c = check(&words, Measure::Chars, 52);
        assert_eq!(c[0].text, "word ".repeat(10));
        assert!(c.iter().all(|c| c.text.starts_with("word")));
    }

    #[test]
    fn early_paragraph_break_does_not_make_a_tiny_chunk() {
        let text = format!("hi\n\n{}", "word ".repeat(50));
        let c = check(&text, Measure::Chars, 100);
        assert!(c[0].text.len() > 50, "first chunk too small: {:?}", c[0].text);
    }

    #[test]
    fn never_splits_a_surrogate_pair_or_a_zwj_sequence() {
        let text = "😀".repeat(50);
        for limit in [2, 3, 5, 7, 11] {
            let c = check(&text, Measure::Utf16, limit);
            assert!(c.iter().all(|c| c.text.chars().all(|ch| ch == '😀')));
        }
        let family = "👨‍👩‍👧‍👦".repeat(10); // 7 scalars, 11 UTF-16 units each
        let c = check(&family, Measure::Utf16, 30);
        for ch in &c {
            assert!(!ch.text.starts_with('\u{200D}') && !ch.text.ends_with('\u{200D}'), "{:?}", ch.text);
        }
    }

    #[test]
    fn long_line_without_spaces_is_hard_cut() {
        let text = "x".repeat(10_000);
        let c = check(&text, Measure::Chars, 2000);
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|c| c.text.len() == 2000));
    }

    #[test]
    fn code_fence_is_closed_and_reopened_with_its_info_string() {
        let body: String = (0..40).map(|i| format!("let v{i} = {i};\n")).collect();
        let text = format!("Intro.\n```rust\n{body}```\nOutro.");
        let c = check(&text, Measure::Chars, 200);
        assert!(c.len() >= 3);
        assert!(c[0].text.ends_with("```"), "{:?}", c[0].text);
        assert!(c[1].text.starts_with("```rust\n"), "{:?}", c[1].text);
        assert_eq!(c[1].reopen, "```rust\n".len());
        for ch in &c {
            let fences = scan_fences(&ch.text);
            assert!(fences.iter().all(|f| f.close_start.is_some()), "{:?}", ch.text);
            assert!(fences.iter().all(|f| f.info == "rust"));
            // Never an empty code block.
            assert!(fences.iter().all(|f| f.close_start != Some(f.body_start)), "{:?}", ch.text);
        }
        assert!(c.last().unwrap().text.ends_with("Outro."));
    }

    #[test]
    fn fence_cut_mid_line_gets_a_newline_before_the_closer() {
        let text = format!("```\n{}\n```\n", "y".repeat(300));
        let c = check(&text, Measure::Chars, 100);
        assert!(c[0].text.ends_with("\n```") && c[0].close == 4);
        assert!(c[1].text.starts_with("```\n") && c[1].reopen == 4);
    }

    #[test]
    fn tilde_and_long_backtick_fences_close_with_their_own_run() {
        let text = format!("~~~~ txt\n{}~~~~\n", "line\n".repeat(60));
        let c = check(&text, Measure::Chars, 80);
        assert!(c[0].text.ends_with("~~~~"));
        assert!(c[1].text.starts_with("~~~~ txt\n"));
    }

    #[test]
    fn unclosed_fence_is_repaired_between_chunks_but_not_closed_at_the_end() {
        let text = format!("```py\n{}", "print(1)\n".repeat(40));
        let c = check(&text, Measure::Chars, 120);
        assert!(c.len() > 2);
        assert_eq!(c.last().unwrap().close, 0);
        assert!(c[..c.len() - 1].iter().all(|c| c.close > 0));
    }

    #[test]
    fn text_that_only_looks_like_a_marker_is_not_mistaken_for_one() {
        // A chunk that legitimately ends with a closing fence: nothing is added, nothing lost.
        let text = format!("```\n{}```\n{}", "a\n".repeat(20), "tail ".repeat(30));
        let c = check(&text, Measure::Chars, 60);
        assert!(c.iter().all(|c| c.original().len() + c.reopen + c.close == c.text.len()));
    }

    #[test]
    fn unrepairable_fence_with_a_huge_info_string_is_split_as_plain_text() {
        let text = format!("```{}\n{}```\n", "i".repeat(40), "code\n".repeat(30));
        let c = check(&text, Measure::Chars, 60);
        assert!(c.iter().all(|c| !c.is_repaired()));
    }

    #[test]
    fn ten_thousand_chars_arrive_as_at_least_three_telegram_messages() {
        let mut rng = Rng::new(30);
        let mut text = String::new();
        while text.chars().count() < 10_000 {
            text.push_str(&random_text(&mut rng, 500));
        }
        let c = check(&text, Measure::Utf16, 4096);
        assert!(c.len() >= 3, "{} chunks", c.len());
        let c = check(&text, Measure::Chars, 2000);
        assert!(c.len() >= 5);
    }

    #[test]
    fn seeded_fuzz_respects_the_limit_and_round_trips() {
        let limits = [2, 3, 7, 16, 17, 40, 64, 100, 257, 1000, 2000, 4096];
        let mut rng = Rng::new(0xC0DE);
        let mut total_chunks = 0;
        let mut repaired = 0;
        for case in 0..1500 {
            let len = 1 + rng.below(if case % 10 == 0 { 20_000 } else { 3000 });
            let text = random_text(&mut rng, len);
            let measure = if rng.below(2) == 0 { Measure::Utf16 } else { Measure::Chars };
            let limit = *rng.pick(&limits);
            let chunks = check(&text, measure, limit);
            total_chunks += chunks.len();
            repaired += chunks.iter().filter(|c| c.is_repaired()).count();
        }
        assert!(total_chunks > 10_000, "the fuzz should exercise splitting ({total_chunks})");
        assert!(repaired > 500, "the fuzz should exercise fence repair ({repaired})");
    }

    #[test]
    fn scan_fences_follows_commonmark_basics() {
        let t = "a\n```rust\nx\n```\n    ```\nnot a fence (4 spaces)\n~~~\n```\nstill inside\n~~~~\nz";
        let f = scan_fences(t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].info, "rust");
        assert_eq!(&t[f[0].body_start..f[0].close_start.unwrap()], "x\n");
        assert_eq!(f[1].marker, "~~~");
        assert_eq!(&t[f[1].body_start..f[1].close_start.unwrap()], "```\nstill inside\n");
        // Backticks in a backtick info string: not an opener.
        assert!(scan_fences("``` a`b\ncode\n").is_empty());
        // A closer must be at least as long as the opener.
        let f = scan_fences("````\n```\n````\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].close_start, Some(9));
    }
}
