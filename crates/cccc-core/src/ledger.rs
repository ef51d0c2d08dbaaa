//! The append-only ledger of one group: `groups/<id>/ledger.jsonl` (plus sealed segments).
//!
//! # Durability and group commit
//!
//! An append writes the line with one `write(2)` on an `O_APPEND` descriptor while the caller
//! holds the group's lock, then *returns without syncing*. The caller answers its client only
//! after [`Durability::wait_durable`] has seen an `fdatasync` that covers the line's end offset.
//! Many callers wait at once; the first one to take the sync lock runs one `fdatasync` that
//! covers everything written so far, and every caller whose bytes it covered returns without a
//! sync of its own. That is group commit: N concurrent appends cost one fsync, and no caller
//! hears `ok` before its line is on disk.
//!
//! Events are handed to the publish hook (live `events_stream` subscribers) by whoever runs
//! the sync, in file order, and only once durable, so no subscriber ever sees an event that a
//! crash could take back.
//!
//! # Repair on open
//!
//! A crash can leave an unterminated last line. If it parses as a JSON object it is kept and
//! terminated; otherwise (a torn write, which was never acknowledged) its bytes are copied to
//! `state/ledger/torn-<micros>.bin` and the file is truncated back to the last newline. Bytes
//! before it are never touched. Blank and unparsable lines elsewhere are skipped by readers, as
//! in the reference.
//!
//! # Reading
//!
//! Sealed segments listed in `state/ledger/manifest.json` (`.jsonl` or `.jsonl.gz`) are read
//! first, then the active file. The whole history is indexed at open ([`Index`]); full events
//! are read back by position (`pread`) only when a response needs them.

use crate::index::{Entry, Index, Loc};
use cccc_proto::Event;
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The reference refuses a serialized line above this size.
pub const MAX_LINE_BYTES: usize = 256_000;

/// An appended event waiting to be published once durable.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Position in the group's index.
    pub idx: u32,
    /// End offset of the line in the active file.
    pub end: u64,
    pub event: Arc<Event>,
    /// The ledger line as written (without newline).
    pub line: Arc<str>,
}

type PublishHook = Box<dyn Fn(&Appended) + Send + Sync>;

/// Group-commit durability for one active ledger file. Shared between the group's writer and
/// the callers waiting for their appends to become durable.
pub struct Durability {
    file: File,
    written: AtomicU64,
    synced: Mutex<u64>,
    pending: Mutex<VecDeque<Appended>>,
    publish: Mutex<Option<PublishHook>>,
}

impl Durability {
    fn new(file: File, len: u64) -> Durability {
        Durability {
            file,
            written: AtomicU64::new(len),
            synced: Mutex::new(len),
            pending: Mutex::new(VecDeque::new()),
            publish: Mutex::new(None),
        }
    }

    /// Install the hook that receives every event once it is durable, in file order.
    pub fn set_publish(&self, hook: PublishHook) {
        *self.publish.lock().unwrap() = Some(hook);
    }

    /// Block until the file is synced at least up to `end`, running the sync if nobody else is.
    pub fn wait_durable(&self, end: u64) -> io::Result<()> {
        let mut synced = self.synced.lock().unwrap();
        if *synced < end {
            let target = self.written.load(Ordering::Acquire);
            self.file.sync_data()?;
            *synced = target;
        }
        let upto = *synced;
        // Publish everything now durable, still under the sync lock so order is file order.
        let ready: Vec<Appended> = {
            let mut q = self.pending.lock().unwrap();
            let mut out = Vec::new();
            while q.front().is_some_and(|a| a.end <= upto) {
                out.push(q.pop_front().unwrap());
            }
            out
        };
        if !ready.is_empty()
            && let Some(hook) = self.publish.lock().unwrap().as_ref()
        {
            for a in &ready {
                hook(a);
            }
        }
        Ok(())
    }

    /// Run `f` while no sync or publish can happen: lets a new subscriber take a consistent
    /// "everything up to here is published" snapshot.
    pub fn with_publish_paused<T>(&self, f: impl FnOnce(u64) -> T) -> T {
        let synced = self.synced.lock().unwrap();
        f(*synced)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

/// One group's ledger: the active file, sealed segments, and the index over both.
pub struct Ledger {
    path: PathBuf,
    /// `state/ledger/ledger.lock`, flocked around each write as the reference does, so a
    /// reference tool writing the same ledger (its CLI does when no daemon answers) interleaves
    /// whole lines with us, never torn ones.
    lock_file: File,
    file: File,
    len: u64,
    segments: Vec<Vec<u8>>,
    last_ts: i64,
    durable: Arc<Durability>,
    pub index: Index,
}

impl Ledger {
    /// Open (creating if needed) the ledger in `group_dir`, repairing a torn tail and indexing
    /// every event.
    pub fn open(group_dir: &Path) -> io::Result<Ledger> {
        let path = group_dir.join("ledger.jsonl");
        let state_ledger = group_dir.join("state").join("ledger");
        fs::create_dir_all(&state_ledger)?;
        let lock_file = OpenOptions::new().create(true).truncate(false).write(true).open(state_ledger.join("ledger.lock"))?;
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        repair_tail(&file, &state_ledger)?;

        let mut index = Index::default();
        let mut segments = Vec::new();
        for (seg_no, seg_path) in manifest_segments(&state_ledger).into_iter().enumerate() {
            let bytes = read_segment(&seg_path)?;
            index_bytes(&mut index, &bytes, Loc::segment(seg_no as u32))?;
            segments.push(bytes);
        }
        let len = file.metadata()?.len();
        {
            let mut reader = BufReader::with_capacity(1 << 20, file.try_clone()?);
            reader.seek(SeekFrom::Start(0))?;
            index_reader(&mut index, reader, Loc::ACTIVE)?;
        }
        let last_ts = index.entries.iter().map(|e| e.ts).max().unwrap_or(0);
        let durable = Arc::new(Durability::new(file.try_clone()?, len));
        Ok(Ledger { path, lock_file, file, len, segments, last_ts, durable, index })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn durability(&self) -> Arc<Durability> {
        self.durable.clone()
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// A timestamp for a new event: now, but strictly after every event already in the ledger,
    /// so that "read up to ts" is never ambiguous between two events.
    fn next_ts(&mut self) -> i64 {
        let t = cccc_proto::ts::now_micros().max(self.last_ts + 1);
        self.last_ts = t;
        t
    }

    /// Append one event. The line is written (not yet synced); the caller must
    /// [`Durability::wait_durable`] on the returned end offset before acknowledging.
    pub fn append(&mut self, kind: &str, group_id: &str, scope_key: &str, by: &str, data: Value) -> Result<Appended, AppendError> {
        self.append_with_id(cccc_proto::new_event_id(), kind, group_id, scope_key, by, data)
    }

    /// [`Ledger::append`] with an id chosen by the caller (needed when a side file is named
    /// after the event before the event is written).
    pub fn append_with_id(&mut self, id: String, kind: &str, group_id: &str, scope_key: &str, by: &str, data: Value) -> Result<Appended, AppendError> {
        self.lock_file.lock()?;
        let res = self.append_locked(id, kind, group_id, scope_key, by, data);
        let _ = self.lock_file.unlock();
        res
    }

    /// The append proper, under the ledger flock. The timestamp is taken here, after any
    /// foreign lines were indexed, so timestamps stay strictly increasing in file order.
    fn append_locked(&mut self, id: String, kind: &str, group_id: &str, scope_key: &str, by: &str, data: Value) -> Result<Appended, AppendError> {
        let start = self.catch_up()?;
        let ts = self.next_ts();
        let event = Event {
            v: 1,
            id,
            ts: cccc_proto::ts::format(ts),
            kind: kind.to_string(),
            group_id: group_id.to_string(),
            scope_key: scope_key.to_string(),
            by: by.to_string(),
            data,
        };
        let mut line = event.to_line();
        if line.len() > MAX_LINE_BYTES {
            return Err(AppendError::TooLarge(line.len()));
        }
        line.push('\n');
        if let Err(e) = (&self.file).write_all(line.as_bytes()) {
            // Take back a partial write so the file stays line-aligned.
            let _ = self.file.set_len(start);
            return Err(e.into());
        }
        let end = start + line.len() as u64;
        self.len = end;
        self.durable.written.store(end, Ordering::Release);
        let idx = self.index.add(&event, ts, Loc { seg: Loc::ACTIVE.seg, off: start, len: (line.len() - 1) as u32 });
        line.pop();
        let appended = Appended { idx, end, event: Arc::new(event), line: Arc::from(line) };
        self.durable.pending.lock().unwrap().push_back(appended.clone());
        Ok(appended)
    }

    /// Index lines another process appended since our last write (we hold the flock, so they
    /// are complete). Only the daemon should write, but the reference CLI writes directly when
    /// it cannot reach a daemon; this keeps our offsets right if that ever happens.
    fn catch_up(&mut self) -> io::Result<u64> {
        let cur = self.file.metadata()?.len();
        if cur == self.len {
            return Ok(cur);
        }
        if cur < self.len {
            return Err(io::Error::other(format!("ledger shrank under us ({} -> {cur} bytes); refusing to write", self.len)));
        }
        let mut buf = vec![0u8; (cur - self.len) as usize];
        self.file.read_exact_at(&mut buf, self.len)?;
        if buf.last() != Some(&b'\n') {
            (&self.file).write_all(b"\n")?;
            buf.push(b'\n');
        }
        tracing::warn!(bytes = buf.len(), "ledger was appended by another process; indexing its lines");
        let before = self.index.entries.len();
        let base = self.len;
        index_reader(&mut self.index, BufReader::new(&buf[..]), Loc::ACTIVE)?;
        for e in &mut self.index.entries[before..] {
            e.loc.off += base;
        }
        if let Some(t) = self.index.entries[before..].iter().map(|e| e.ts).max() {
            self.last_ts = self.last_ts.max(t);
        }
        self.len = base + buf.len() as u64;
        self.durable.written.store(self.len, Ordering::Release);
        Ok(self.len)
    }

    /// Read the full event at index position `idx`.
    pub fn read(&self, idx: u32) -> io::Result<Event> {
        let e = self.index.entries.get(idx as usize).ok_or_else(|| io::Error::other("no such event"))?;
        let bytes = self.read_raw(e)?;
        serde_json::from_slice(&bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    fn read_raw(&self, e: &Entry) -> io::Result<Vec<u8>> {
        let (off, len) = (e.loc.off as usize, e.loc.len as usize);
        if e.loc.seg == Loc::ACTIVE.seg {
            let mut buf = vec![0u8; len];
            self.file.read_exact_at(&mut buf, off as u64)?;
            Ok(buf)
        } else {
            let seg = self.segments.get(e.loc.seg as usize).ok_or_else(|| io::Error::other("missing segment"))?;
            Ok(seg.get(off..off + len).ok_or_else(|| io::Error::other("segment offset out of range"))?.to_vec())
        }
    }

    /// Is the event at `idx` durable, given the durability watermark `synced`?
    pub fn is_durable(&self, idx: u32, synced: u64) -> bool {
        let e = &self.index.entries[idx as usize];
        e.loc.seg != Loc::ACTIVE.seg || e.loc.off + (e.loc.len as u64) < synced
    }

    /// The raw ledger line at index position `idx` (as stored, without newline).
    pub fn read_line(&self, idx: u32) -> io::Result<String> {
        let e = self.index.entries.get(idx as usize).ok_or_else(|| io::Error::other("no such event"))?;
        String::from_utf8(self.read_raw(e)?).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("event too large: {0} bytes (limit {MAX_LINE_BYTES})")]
    TooLarge(usize),
    #[error("ledger write failed: {0}")]
    Io(#[from] io::Error),
}

/// Terminate or cut back an unterminated last line (see the module docs).
fn repair_tail(file: &File, state_ledger: &Path) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the start of the last line.
    let mut pos = len;
    let mut start = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    'outer: while pos > 0 {
        let n = (pos as usize).min(buf.len());
        let chunk_start = pos - n as u64;
        file.read_exact_at(&mut buf[..n], chunk_start)?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                start = chunk_start + i as u64 + 1;
                break 'outer;
            }
        }
        pos = chunk_start;
    }
    let mut tail = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    let parses = serde_json::from_slice::<Value>(&tail).is_ok_and(|v| v.is_object());
    if parses {
        tracing::warn!(bytes = tail.len(), "ledger ended without a newline; terminating the complete last line");
        (&*file).write_all(b"\n")?;
    } else {
        let aside = state_ledger.join(format!("torn-{}.bin", cccc_proto::ts::now_micros()));
        fs::write(&aside, &tail)?;
        tracing::warn!(bytes = tail.len(), kept = %aside.display(), "ledger had a torn last line; moved it aside");
        file.set_len(start)?;
    }
    file.sync_all()
}

/// Sealed segment paths from `manifest.json`, in sequence order.
fn manifest_segments(state_ledger: &Path) -> Vec<PathBuf> {
    let Ok(v) = crate::home::read_json(&state_ledger.join("manifest.json")) else {
        return Vec::new();
    };
    let mut segs: Vec<(i64, PathBuf)> = v
        .get("segments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let p = s.get("path").and_then(Value::as_str)?;
                    let seq = s.get("seq").and_then(Value::as_i64).unwrap_or(0);
                    let full = if Path::new(p).is_absolute() { PathBuf::from(p) } else { state_ledger.join(p) };
                    // Paths may be relative to the group dir or to state/ledger.
                    let full = if full.exists() {
                        full
                    } else {
                        state_ledger.parent().and_then(Path::parent).map(|g| g.join(p)).unwrap_or(full)
                    };
                    Some((seq, full))
                })
                .collect()
        })
        .unwrap_or_default();
    segs.sort_by_key(|(seq, _)| *seq);
    segs.into_iter().map(|(_, p)| p).collect()
}

fn read_segment(path: &Path) -> io::Result<Vec<u8>> {
    let raw = fs::read(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn index_bytes(index: &mut Index, bytes: &[u8], base: Loc) -> io::Result<()> {
    index_reader(index, BufReader::new(bytes), base)
}

fn index_reader<R: BufRead>(index: &mut Index, mut reader: R, base: Loc) -> io::Result<()> {
    let mut off: u64 = 0;
    let mut line = Vec::with_capacity(4096);
    let mut skipped = 0usize;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let content = if line.last() == Some(&b'\n') { &line[..n - 1] } else { &line[..] };
        if !content.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Event>(content) {
                Ok(ev) => {
                    let ts = cccc_proto::ts::parse(&ev.ts).unwrap_or(0);
                    index.add(&ev, ts, Loc { seg: base.seg, off, len: content.len() as u32 });
                }
                Err(_) => skipped += 1,
            }
        }
        off += n as u64;
    }
    if skipped > 0 {
        tracing::warn!(skipped, "skipped unparsable ledger lines");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn append_msg(l: &mut Ledger, by: &str, to: &[&str]) -> Appended {
        let data = json!({"text": "hi", "priority": "normal", "reply_required": false, "to": to});
        l.append("chat.message", "g_1", "", by, data).unwrap()
    }

    #[test]
    fn append_is_durable_and_reopens_identically() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        let a = append_msg(&mut l, "user", &["peer-a"]);
        let b = append_msg(&mut l, "peer-a", &["user"]);
        l.durability().wait_durable(b.end).unwrap();
        assert_eq!(l.read(a.idx).unwrap(), *a.event);
        drop(l);
        let l2 = Ledger::open(dir.path()).unwrap();
        assert_eq!(l2.index.entries.len(), 2);
        assert_eq!(l2.read(1).unwrap(), *b.event);
        assert!(l2.index.entries[0].ts < l2.index.entries[1].ts);
    }

    #[test]
    fn torn_tail_is_moved_aside_and_complete_tail_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        append_msg(&mut l, "user", &["a"]);
        drop(l);
        let p = dir.path().join("ledger.jsonl");
        let good = fs::read(&p).unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"v\": 1, \"id\": \"abc").unwrap();
        drop(f);
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.index.entries.len(), 1);
        assert_eq!(fs::read(&p).unwrap(), good, "bytes before the torn line are untouched");
        let torn: Vec<_> = fs::read_dir(dir.path().join("state/ledger"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("torn-"))
            .collect();
        assert_eq!(fs::read(torn[0].path()).unwrap(), b"{\"v\": 1, \"id\": \"abc");
        drop(l);

        // A complete but unterminated line is kept and terminated.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        let ev = Event { id: cccc_proto::new_event_id(), ts: "2030-01-01T00:00:00Z".into(), kind: "x.y".into(), ..serde_json::from_str("{}").unwrap() };
        f.write_all(ev.to_line().as_bytes()).unwrap();
        drop(f);
        let mut l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.index.entries.len(), 2);
        let c = append_msg(&mut l, "user", &["a"]);
        let newest = cccc_proto::ts::parse("2030-01-01T00:00:00Z").unwrap();
        assert!(cccc_proto::ts::parse(&c.event.ts).unwrap() > newest, "new ts stays after the newest event");
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    }

    #[test]
    fn lines_appended_by_another_process_are_indexed_before_our_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        append_msg(&mut l, "user", &["a"]);
        let foreign = Event { id: cccc_proto::new_event_id(), ts: "2031-01-01T00:00:00Z".into(), kind: "chat.message".into(), by: "cli".into(), ..serde_json::from_str("{}").unwrap() };
        let mut f = OpenOptions::new().append(true).open(dir.path().join("ledger.jsonl")).unwrap();
        f.write_all(format!("{}\n", foreign.to_line()).as_bytes()).unwrap();
        let c = append_msg(&mut l, "user", &["a"]);
        assert_eq!(l.index.entries.len(), 3);
        assert_eq!(l.read(1).unwrap().id, foreign.id);
        assert_eq!(l.read(2).unwrap(), *c.event);
        assert!(cccc_proto::ts::parse(&c.event.ts).unwrap() > cccc_proto::ts::parse("2031-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn oversized_event_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        let err = l.append("chat.message", "g", "", "user", json!({"text": "x".repeat(MAX_LINE_BYTES)})).unwrap_err();
        assert!(matches!(err, AppendError::TooLarge(_)));
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn group_commit_publishes_in_order_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path()).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        l.durability().set_publish(Box::new(move |a| s2.lock().unwrap().push(a.idx)));
        let a = append_msg(&mut l, "user", &["x"]);
        let b = append_msg(&mut l, "user", &["x"]);
        assert!(seen.lock().unwrap().is_empty(), "nothing published before it is durable");
        l.durability().wait_durable(b.end).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![a.idx, b.idx]);
        l.durability().wait_durable(a.end).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2, "published once");
    }
}
