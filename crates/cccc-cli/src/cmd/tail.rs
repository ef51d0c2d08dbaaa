//! `cccc tail [-n N] [-f]`: the last ledger lines, raw, straight from the files (no daemon).
//!
//! Only complete lines are printed: a line is complete once its `\n` is written, so a line
//! being appended right now shows up on the next poll instead of half now, half later.

use crate::cli::TailArgs;
use crate::ctx::{CmdResult, Ctx, Fail};
use serde_json::Value;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(200);

pub fn run(ctx: &Ctx, a: &TailArgs) -> CmdResult {
    let gid = ctx.group_id(&a.group.group)?;
    let dir = ctx.home.group_dir(&gid);
    if !dir.join("group.yaml").exists() {
        return Err(Fail::reject("group_not_found", format!("group not found: {gid}")));
    }
    let path = dir.join("ledger.jsonl");
    let (mut lines, end) = match File::open(&path) {
        Ok(mut f) => last_lines(&mut f, a.lines)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => return Err(e.into()),
    };
    if lines.len() < a.lines {
        let mut older = from_segments(&dir, a.lines - lines.len())?;
        older.append(&mut lines);
        lines = older;
    }
    let mut out = io::stdout().lock();
    for l in &lines {
        if !emit(&mut out, l)? {
            return Ok(0);
        }
    }
    if flush(&mut out)? && a.follow {
        follow(&path, end, &mut out)?;
    }
    Ok(0)
}

/// Print the last `n` lines of any log file, then follow it if asked (`cccc im logs`).
pub fn print_file(path: &Path, n: usize, follow_it: bool) -> CmdResult {
    let (lines, end) = match File::open(path) {
        Ok(mut f) => last_lines(&mut f, n)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => return Err(e.into()),
    };
    let mut out = io::stdout().lock();
    for l in &lines {
        if !emit(&mut out, l)? {
            return Ok(0);
        }
    }
    if flush(&mut out)? && follow_it {
        follow(path, end, &mut out)?;
    }
    Ok(0)
}

/// Write one line; `false` when the reader has gone away (a closed pipe ends us quietly).
fn emit(out: &mut impl Write, line: &[u8]) -> io::Result<bool> {
    match out.write_all(line).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

fn flush(out: &mut impl Write) -> io::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The last `n` non-blank complete lines of `f`, and the offset just past the last `\n`
/// (where following starts). Reads backwards, so a big ledger costs only its tail.
fn last_lines(f: &mut File, n: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let len = f.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk: u64 = 64 * 1024;
    loop {
        if let Some(cut) = buf.iter().rposition(|&b| b == b'\n') {
            let complete = &buf[..cut];
            let mut pieces: Vec<&[u8]> = complete.split(|&b| b == b'\n').collect();
            // Unless we reached the file start, the first piece may be the tail of a longer line.
            if start > 0 {
                pieces.remove(0);
            }
            let full: Vec<&[u8]> = pieces.into_iter().filter(|l| !is_blank(l)).collect();
            if full.len() >= n || start == 0 {
                let lines = full[full.len().saturating_sub(n)..].iter().map(|l| l.to_vec()).collect();
                return Ok((lines, start + cut as u64 + 1));
            }
        } else if start == 0 {
            return Ok((Vec::new(), 0));
        }
        let from = start.saturating_sub(chunk);
        let mut more = vec![0u8; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut more)?;
        more.extend_from_slice(&buf);
        buf = more;
        start = from;
        chunk = chunk.saturating_mul(2);
    }
}

/// Up to `n` last lines from the sealed segments listed in `state/ledger/manifest.json`
/// (oldest first in the result), for when the active file alone is too short.
fn from_segments(group_dir: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for seg in segment_paths(group_dir).iter().rev() {
        if out.len() >= n {
            break;
        }
        let bytes = read_segment(seg)?;
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !is_blank(l)).collect();
        let take = (n - out.len()).min(lines.len());
        let mut chunk: Vec<Vec<u8>> = lines[lines.len() - take..].iter().map(|l| l.to_vec()).collect();
        chunk.append(&mut out);
        out = chunk;
    }
    Ok(out)
}

/// Segment files in sequence order. Manifest paths are relative to `state/ledger` (or, in
/// some homes, to the group directory).
fn segment_paths(group_dir: &Path) -> Vec<PathBuf> {
    let state_ledger = group_dir.join("state").join("ledger");
    let Ok(manifest) = cccc_core::home::read_json(&state_ledger.join("manifest.json")) else { return Vec::new() };
    let mut segs: Vec<(i64, PathBuf)> = manifest
        .get("segments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|s| {
            let p = s.get("path").and_then(Value::as_str)?;
            let seq = s.get("seq").and_then(Value::as_i64).unwrap_or(0);
            let in_state = state_ledger.join(p);
            Some((seq, if in_state.exists() { in_state } else { group_dir.join(p) }))
        })
        .collect();
    segs.sort_by_key(|(seq, _)| *seq);
    segs.into_iter().map(|(_, p)| p).collect()
}

fn read_segment(path: &Path) -> io::Result<Vec<u8>> {
    let raw = match fs::read(path) {
        Ok(r) => r,
        // A segment listed but gone (pruned by hand) only shortens history.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Print lines appended to `path` from `offset` on, forever. A replaced file (new inode) is
/// read to its end and then followed from the start of the new one; a truncated file is
/// followed from its start.
fn follow(path: &Path, mut offset: u64, out: &mut impl Write) -> io::Result<()> {
    let mut file = File::open(path).ok();
    let mut ino = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if let Some(f) = file.as_mut() {
            offset += drain(f, offset, &mut pending)?;
            if !print_complete(&mut pending, out)? {
                return Ok(());
            }
        }
        std::thread::sleep(POLL);
        if stdout_closed() {
            return Ok(());
        }
        match fs::metadata(path) {
            Ok(m) if Some(m.ino()) != ino => {
                // Rotated: whatever the old file got last was printed above; start the new one.
                file = File::open(path).ok();
                ino = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
                offset = 0;
                pending.clear();
            }
            Ok(m) if m.len() < offset => {
                offset = 0;
                pending.clear();
            }
            _ => {}
        }
    }
}

/// Has the reader of our stdout gone away? Checked while idle, so `cccc tail -f | head -1`
/// ends when `head` does instead of at the next ledger write.
fn stdout_closed() -> bool {
    let mut pfd = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

/// Append everything from `offset` to the end of `f` to `pending`; the number of bytes read.
fn drain(f: &mut File, offset: u64, pending: &mut Vec<u8>) -> io::Result<u64> {
    f.seek(SeekFrom::Start(offset))?;
    let n = f.read_to_end(pending)?;
    Ok(n as u64)
}

/// Print the complete lines in `pending` and keep the unterminated rest. `false` = pipe closed.
fn print_complete(pending: &mut Vec<u8>, out: &mut impl Write) -> io::Result<bool> {
    let Some(cut) = pending.iter().rposition(|&b| b == b'\n') else { return Ok(true) };
    let rest = pending.split_off(cut + 1);
    for line in pending.split(|&b| b == b'\n').filter(|l| !is_blank(l)) {
        if !emit(out, line)? {
            return Ok(false);
        }
    }
    *pending = rest;
    flush(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(v: &[Vec<u8>]) -> Vec<String> {
        v.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }

    #[test]
    fn last_n_complete_lines_and_where_to_follow_from() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        // Long lines so the backwards reader needs several chunks.
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("{{\"i\": {i}, \"pad\": \"{}\"}}\n", "x".repeat(100)));
            if i % 500 == 0 {
                text.push('\n');
            }
        }
        let complete_len = text.len() as u64;
        text.push_str("{\"torn\": ");
        fs::write(&p, &text).unwrap();
        let (lines, end) = last_lines(&mut File::open(&p).unwrap(), 3).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines_of(&lines)[0].starts_with("{\"i\": 1997,"));
        assert!(lines_of(&lines)[2].starts_with("{\"i\": 1999,"));
        assert_eq!(end, complete_len);
        let (all, _) = last_lines(&mut File::open(&p).unwrap(), 5000).unwrap();
        assert_eq!(all.len(), 2000);
        let (none, end0) = last_lines(&mut File::open(&p).unwrap(), 0).unwrap();
        assert!(none.is_empty());
        assert_eq!(end0, complete_len);
    }

    #[test]
    fn short_and_unterminated_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::write(&p, "").unwrap();
        assert_eq!(last_lines(&mut File::open(&p).unwrap(), 10).unwrap(), (vec![], 0));
        fs::write(&p, "partial").unwrap();
        assert_eq!(last_lines(&mut File::open(&p).unwrap(), 10).unwrap(), (vec![], 0));
        fs::write(&p, "a\n\nb\n").unwrap();
        let (l, end) = last_lines(&mut File::open(&p).unwrap(), 10).unwrap();
        assert_eq!((lines_of(&l), end), (vec!["a".to_string(), "b".to_string()], 5));
    }

    #[test]
    fn segments_fill_in_older_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sl = dir.path().join("state/ledger/segments");
        fs::create_dir_all(&sl).unwrap();
        fs::write(sl.join("ledger.a.000001.jsonl"), "s1\ns2\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"s3\ns4\n").unwrap();
        fs::write(sl.join("ledger.b.000002.jsonl.gz"), gz.finish().unwrap()).unwrap();
        fs::write(
            dir.path().join("state/ledger/manifest.json"),
            r#"{"schema":1,"segments":[{"seq":2,"path":"segments/ledger.b.000002.jsonl.gz"},{"seq":1,"path":"segments/ledger.a.000001.jsonl"}]}"#,
        )
        .unwrap();
        assert_eq!(lines_of(&from_segments(dir.path(), 3).unwrap()), vec!["s2", "s3", "s4"]);
        assert_eq!(lines_of(&from_segments(dir.path(), 10).unwrap()), vec!["s1", "s2", "s3", "s4"]);
    }

    #[test]
    fn pending_keeps_the_unterminated_rest() {
        let mut pending = b"a\nb\nhalf".to_vec();
        let mut out = Vec::new();
        assert!(print_complete(&mut pending, &mut out).unwrap());
        assert_eq!((out.as_slice(), pending.as_slice()), (&b"a\nb\n"[..], &b"half"[..]));
    }
}
