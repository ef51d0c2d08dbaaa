//! The bridge process core: one bot credential, every group that uses it.
//!
//! A platform crate builds its [`Platform`], a [`RunnerConfig`] and calls [`run`]. Everything
//! else is here, so Telegram and Discord behave alike:
//!
//! * **Discovery.** Every [`RunnerConfig::scan_every`] (5 s) the daemon is asked for its groups
//!   (`groups`, `group_show`). A group is served when its `im` block names this platform, is
//!   enabled, and its token (the env var named by `bot_token_env`, or a literal `bot_token`
//!   read from group.yaml, since `group_show` redacts it) hashes to this credential. Groups
//!   come and go without a restart.
//! * **Chats.** Every [`RunnerConfig::pass_every`] (1 s) each served group's
//!   `im_authorized_chats.json` / `im_subscribers.json` are re-read ([`crate::binding`]); a
//!   chat that is authorized and subscribed gets a delivery task, one that is not any more loses
//!   it and its outbox entry. A chat new to the outbox starts at the ledger position of its
//!   authorization (so a message written right after `cccc im bind` is not missed).
//! * **Outbound, per chat.** The task follows its own `events_stream` from the chat's outbox
//!   cursor and drives [`Outbox`]: [`mirror`] decides, [`render`] + [`Outbound::split`] +
//!   [`Platform::render`] make the pieces, the [`Platform::pacer`] spaces them, and the outbox
//!   persists the event before the first piece and each confirmation before the next piece.
//!   On (re)opening the stream the burst of already durable events is capped with
//!   [`outbox::plan_backlog`] (one summary line instead of a flood). `chat.ack` events by the
//!   user flip this chat's Ack buttons through the message map, whoever acked.
//! * **Inbound.** One loop reads [`Platform::next_updates`]. A message from a chat is routed to
//!   the group that authorizes that chat; unbound chats only get pairing answers (`/subscribe`
//!   writes a key at credential scope, `state/im/<platform>_<cred>/im_pending_keys.json`,
//!   for `cccc im bind --key K --group G`). Sends carry `client_id` so a replayed update
//!   writes nothing twice; a native reply to a mirrored message becomes `reply`.
//! * **Status.** `state/im/<platform>_<cred>/status.json` is rewritten every few seconds and
//!   soon after a change.
//!
//! A `CredentialRejected` from the platform (verify, poll or send) stops everything with
//! [`RunnerError::CredentialRejected`]; the process maps it to its exit code.

use crate::binding::Bindings;
use crate::command::{self, Command, Context, DefaultRoute, Roster};
use crate::ipc::{Daemon, GroupLink};
use crate::mirror::{self, Audience, ChatView};
use crate::outbox::{self, MapEntry, Next, Outbox, Progress, Verdict};
use crate::render::Outbound;
use crate::{AckOutcome, BlobRef, BotIdentity, ChatTarget, EventId, FetchError, CoreError, CoreLink, CoreMessage, DeliverOpts, GroupHome, InboundMessage, Marker, Platform, PlatformRef, RemoteFile, SendFailure, SystemClock, Update};
use cccc_proto::Event;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// Pending `/subscribe` keys at credential scope.
pub const PENDING_KEYS_FILE: &str = "im_pending_keys.json";
/// Bridge-wide status.
pub const STATUS_FILE: &str = "status.json";
/// Channels made for groups (channel-per-group platforms), in the credential's state dir.
pub const CHANNELS_FILE: &str = "channels.json";
/// Processing markers not resolved yet (event id → inbound message), in the credential's
/// state dir, so a restarted bridge still resolves them.
pub const MARKERS_FILE: &str = "markers.json";
/// How long a processing marker may stay without a reply (bridges.md §4.7).
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one marker request may take.
const MARKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pairing key lives (seconds).
pub const KEY_TTL_SECS: i64 = 600;
/// Button data of an Ack button after the ack (pressing it answers "Already acked").
pub const ACKED_BUTTON_DATA: &str = "acked";

/// Why the runner stopped by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    /// The platform rejected the credential (401).
    #[error("credential rejected: {0}")]
    CredentialRejected(String),
    #[error("{0}")]
    Fatal(String),
}

/// A clonable stop signal.
#[derive(Clone)]
pub struct StopToken {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for StopToken {
    fn default() -> Self {
        StopToken { tx: Arc::new(watch::channel(false).0) }
    }
}

impl StopToken {
    pub fn new() -> StopToken {
        StopToken::default()
    }
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }
    pub fn is_stopped(&self) -> bool {
        *self.tx.borrow()
    }
    /// Resolves once [`StopToken::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
    /// Sleep `d`, or less if stopped; returns whether it was stopped.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_stopped(),
            _ = self.stopped() => true,
        }
    }
}

/// Looks up an environment variable by name (injectable for tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the runner needs to know besides the platform.
#[derive(Clone)]
pub struct RunnerConfig {
    /// `CCCC_HOME`.
    pub home: PathBuf,
    /// This process's credential key ([`credential_key`]).
    pub cred: String,
    /// Resolves `bot_token_env` names of group configs.
    pub env: EnvLookup,
    pub scan_every: Duration,
    pub pass_every: Duration,
    pub status_every: Duration,
    /// More mirrored events than this waiting when a chat's stream opens: summarise.
    pub backlog_max: usize,
    /// … keeping this many of the newest.
    pub backlog_keep: usize,
    /// How long an inbound message is retried while the daemon is unavailable.
    pub inbound_retry_for: Duration,
    /// A processing marker without a reply is resolved after this long ([`MARKER_TIMEOUT`]);
    /// the sweep runs every `min(marker_timeout, 60 s)`.
    pub marker_timeout: Duration,
}

impl RunnerConfig {
    pub fn new(home: impl Into<PathBuf>, cred: impl Into<String>) -> RunnerConfig {
        RunnerConfig {
            home: home.into(),
            cred: cred.into(),
            env: Arc::new(|name: &str| std::env::var(name).ok()),
            scan_every: Duration::from_secs(5),
            pass_every: Duration::from_secs(1),
            status_every: Duration::from_secs(3),
            backlog_max: 50,
            backlog_keep: 10,
            inbound_retry_for: Duration::from_secs(30),
            marker_timeout: MARKER_TIMEOUT,
        }
    }

    /// `$CCCC_HOME/state/im/<platform>_<cred>`.
    pub fn cred_dir(&self, platform: &str) -> PathBuf {
        credential_dir(&self.home, platform, &self.cred)
    }
}

/// `sha256("<platform>|token=<token>")`, first 12 hex digits: names the credential's lock and
/// state directory without revealing the token (the daemon computes the same).
pub fn credential_key(platform: &str, token: &str) -> String {
    let d = Sha256::digest(format!("{platform}|token={token}").as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `$CCCC_HOME/state/im/<platform>_<cred>`.
pub fn credential_dir(home: &Path, platform: &str, cred: &str) -> PathBuf {
    home.join("state").join("im").join(format!("{platform}_{cred}"))
}

fn now_ms() -> i64 {
    crate::Clock::now_ms(&SystemClock)
}

// ---------------------------------------------------------------------------------------------
// Processing markers
// ---------------------------------------------------------------------------------------------

/// One pending processing marker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingMarker {
    pub at: PlatformRef,
    /// When it was placed (wall clock, ms).
    pub created_ms: i64,
    /// Answered (or timed out): the platform is being told to clear it. Kept until that call
    /// returned, so a crash in between clears it at the next start instead of leaving it.
    #[serde(default)]
    pub resolving: bool,
}

/// The processing markers of one credential that wait for a reply ([`MARKERS_FILE`]).
///
/// Every change is saved at once: a marker must outlive a restart, or its 👀 stays forever.
#[derive(Debug)]
pub struct Markers {
    path: PathBuf,
    pending: BTreeMap<EventId, PendingMarker>,
}

impl Markers {
    /// Load `path` (a missing or unreadable file is an empty store).
    pub fn load(path: PathBuf) -> Markers {
        let pending = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Markers { path, pending }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn save(&self) {
        let v = serde_json::to_value(&self.pending).unwrap_or(Value::Null);
        if let Err(e) = cccc_core::home::write_json_pretty(&self.path, &v) {
            tracing::warn!(error = %e, "cannot save the processing markers");
        }
    }

    /// `at` shows the marker for ledger event `event_id` since `now_ms`.
    pub fn add(&mut self, event_id: &str, at: PlatformRef, now_ms: i64) {
        self.pending.insert(event_id.to_string(), PendingMarker { at, created_ms: now_ms, resolving: false });
        self.save();
    }

    /// The marker waiting for a reply to `event_id`, now resolving (see [`Markers::resolved`]).
    pub fn take(&mut self, event_id: &str) -> Option<PlatformRef> {
        let m = self.pending.get_mut(event_id).filter(|m| !m.resolving)?;
        m.resolving = true;
        let at = m.at.clone();
        self.save();
        Some(at)
    }

    /// The platform was told to clear `at`: forget it.
    pub fn resolved(&mut self, at: &PlatformRef) {
        let before = self.pending.len();
        self.pending.retain(|_, m| !(m.resolving && m.at == *at));
        if self.pending.len() != before {
            self.save();
        }
    }

    /// Markers a previous run was clearing when it stopped (to clear again).
    pub fn unfinished(&self) -> Vec<PlatformRef> {
        self.pending.values().filter(|m| m.resolving).map(|m| m.at.clone()).collect()
    }

    /// The only marker pending in `target`, if it was placed no later than `before_ms`
    /// (an answer without `reply_to` can only be for it when there is exactly one), now
    /// resolving.
    pub fn take_only(&mut self, target: &ChatTarget, before_ms: i64) -> Option<PlatformRef> {
        let mut mine = self.pending.iter().filter(|(_, m)| m.at.target == *target && !m.resolving);
        let (id, m) = mine.next()?;
        if mine.next().is_some() || m.created_ms > before_ms {
            return None;
        }
        let id = id.clone();
        self.take(&id)
    }

    /// Every marker older than `timeout_ms` at `now_ms`, now resolving.
    pub fn expire(&mut self, now_ms: i64, timeout_ms: i64) -> Vec<PlatformRef> {
        let mut out = Vec::new();
        for m in self.pending.values_mut().filter(|m| !m.resolving && now_ms - m.created_ms >= timeout_ms) {
            m.resolving = true;
            out.push(m.at.clone());
        }
        if !out.is_empty() {
            self.save();
        }
        out
    }
}

struct DecOnDrop<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Applies marker changes one at a time, in the order they were asked for (so a quick answer's
/// "done" never overtakes its "processing"). A failure is logged, never fatal.
async fn marker_worker<P: Platform>(
    platform: Arc<P>,
    markers: Arc<Mutex<Markers>>,
    mut rx: mpsc::UnboundedReceiver<(PlatformRef, Marker)>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some((at, marker)) = rx.recv().await {
        let _done = DecOnDrop(&queued);
        match tokio::time::timeout(MARKER_REQUEST_TIMEOUT, platform.set_marker(&at, marker)).await {
            Ok(Ok(())) => tracing::debug!(chat = %at.target.chat_key(), message = %at.message_id, ?marker, "marker set"),
            Ok(Err(e)) => tracing::warn!(chat = %at.target.chat_key(), message = %at.message_id, ?marker, error = %e, "cannot set the processing marker"),
            Err(_) => tracing::warn!(chat = %at.target.chat_key(), message = %at.message_id, ?marker, "setting the processing marker timed out"),
        }
        // Tried (a failure here is not retried: a message that is gone cannot keep a marker).
        if marker != Marker::Processing {
            markers.lock().unwrap().resolved(&at);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
struct ChatStatus {
    group_id: String,
    last_delivered_event_id: Option<String>,
    backlog: usize,
    last_error: Option<String>,
    blocked: Option<String>,
}

#[derive(Default)]
struct Board {
    bot_username: String,
    credential_state: &'static str,
    last_error: Option<String>,
    chats: HashMap<String, ChatStatus>,
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

/// What the runner knows about a served group (refreshed every scan).
#[derive(Clone, Default)]
struct GroupInfo {
    title: String,
    state: String,
    titles: HashMap<String, String>,
    roster: Roster,
    default_route: DefaultRoute,
    allowed_user_ids: Option<Vec<String>>,
    skip_pending_on_start: bool,
    im: Map<String, Value>,
}

impl GroupInfo {
    fn from_doc(doc: &Map<String, Value>, im: &Map<String, Value>) -> GroupInfo {
        let g = cccc_core::group::GroupDoc { doc: doc.clone() };
        let actors: Vec<(String, String)> = g.actor_views().filter(|a| !a.internal).map(|a| (a.id.to_string(), a.title.to_string())).collect();
        let allowed = im.get("allowed_user_ids").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect::<Vec<String>>()
        });
        GroupInfo {
            title: g.title().to_string(),
            state: g.state().to_string(),
            titles: actors.iter().filter(|(_, t)| !t.is_empty()).cloned().collect(),
            roster: Roster::new(actors),
            default_route: if g.default_send_to() == "foreman" { DefaultRoute::Foreman } else { DefaultRoute::Broadcast },
            allowed_user_ids: allowed,
            skip_pending_on_start: im.get("skip_pending_on_start").and_then(Value::as_bool).unwrap_or(false),
            im: im.clone(),
        }
    }

    fn user_allowed(&self, user_id: &str) -> bool {
        self.allowed_user_ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == user_id.trim()))
    }
}

struct ChatTask {
    stop: StopToken,
    handle: tokio::task::JoinHandle<()>,
}

struct GroupState<P: Platform> {
    id: String,
    state_dir: PathBuf,
    core: Arc<dyn CoreLink>,
    outbox: Mutex<Outbox<P::Piece>>,
    info: RwLock<GroupInfo>,
    views: RwLock<HashMap<ChatTarget, ChatView>>,
    tasks: Mutex<HashMap<ChatTarget, ChatTask>>,
    /// Ack buttons already flipped: (scoped chat key, message id).
    flipped: Mutex<HashSet<(String, String)>>,
    first_pass_done: Mutex<bool>,
}

impl<P: Platform> GroupState<P> {
    fn bindings(&self) -> Bindings {
        Bindings::open(&self.state_dir, Arc::new(SystemClock))
    }

    /// Run `f` holding the group's `state/im_state.lock` (the daemon's `im_*` ops take it too).
    fn with_state_lock<T>(&self, f: impl FnOnce(&mut Bindings) -> T) -> T {
        let _ = std::fs::create_dir_all(&self.state_dir);
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.state_dir.join("im_state.lock"));
        if let Ok(l) = &lock {
            let _ = l.lock();
        }
        let mut b = self.bindings();
        let out = f(&mut b);
        if let Ok(l) = &lock {
            let _ = l.unlock();
        }
        out
    }
}

struct Shared<P: Platform> {
    platform: Arc<P>,
    daemon: Arc<Daemon>,
    cfg: RunnerConfig,
    cred_dir: PathBuf,
    me: BotIdentity,
    pacer: Option<Mutex<outbox::pacing::Pacer>>,
    board: Mutex<Board>,
    board_changed: Notify,
    stop: StopToken,
    fatal: Mutex<Option<RunnerError>>,
    groups: RwLock<HashMap<String, Arc<GroupState<P>>>>,
    /// Channels this bridge made for its groups (channel-per-group platforms): group id →
    /// (chat, title it was named after). Persisted in [`CHANNELS_FILE`].
    channels: Mutex<HashMap<String, (ChatTarget, String)>>,
    /// Processing markers waiting for a reply (shared with the marker worker).
    markers: Arc<Mutex<Markers>>,
    /// To [`marker_worker`].
    marker_tx: mpsc::UnboundedSender<(PlatformRef, Marker)>,
    /// Marker changes sent to the worker and not applied yet.
    markers_queued: Arc<std::sync::atomic::AtomicUsize>,
    /// The previous run's last heartbeat (µs), if there was one.
    alive_until: Option<i64>,
    /// When this run started (µs).
    started_at: i64,
}

impl<P: Platform> Shared<P> {
    /// Is `target` a channel this bridge made for a group (every message in it is for us)?
    fn is_group_channel(&self, target: &ChatTarget) -> bool {
        self.channels.lock().unwrap().values().any(|(t, _)| t == target)
    }

    fn save_channels(&self) {
        let map: Map<String, Value> = self
            .channels
            .lock()
            .unwrap()
            .iter()
            .map(|(g, (t, title))| (g.clone(), json!({"platform": t.platform, "chat_id": t.chat_id, "thread_id": t.thread_id, "title": title})))
            .collect();
        if let Err(e) = cccc_core::home::write_json_pretty(&self.cred_dir.join(CHANNELS_FILE), &Value::Object(map)) {
            tracing::warn!(error = %e, "cannot save the group channels");
        }
    }

    /// Show `marker` on `at` (queued; never waits for the platform).
    fn mark(&self, at: PlatformRef, marker: Marker) {
        self.markers_queued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.marker_tx.send((at, marker)).is_err() {
            self.markers_queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// An event as the chats see it: resolve the marker it answers, if any. A user-facing
    /// message replying to a marked inbound event resolves that marker; one without
    /// `reply_to` resolves the only marker pending in `target` (placed before it was written).
    fn resolve_marker(&self, ev: &Event, target: &ChatTarget) {
        if ev.kind != "chat.message" || mirror::audience(ev) != Ok(Audience::UserFacing) {
            return;
        }
        let at = {
            let mut m = self.markers.lock().unwrap();
            if m.is_empty() {
                return;
            }
            match ev.data.get("reply_to").and_then(Value::as_str).filter(|r| !r.is_empty()) {
                Some(r) => m.take(r),
                None => cccc_proto::ts::parse(&ev.ts).and_then(|t| m.take_only(target, t / 1000)),
            }
        };
        if let Some(at) = at {
            self.mark(at, Marker::Done);
        }
    }

    /// Resolve the markers older than the timeout.
    fn sweep_markers(&self) {
        let old = self.markers.lock().unwrap().expire(now_ms(), self.cfg.marker_timeout.as_millis() as i64);
        for at in old {
            tracing::info!(chat = %at.target.chat_key(), message = %at.message_id, "processing marker timed out");
            self.mark(at, Marker::Done);
        }
    }

    fn fail(&self, e: RunnerError) {
        if let RunnerError::CredentialRejected(_) = &e {
            let mut b = self.board.lock().unwrap();
            b.credential_state = "rejected";
            b.last_error = Some(e.to_string());
        }
        self.fatal.lock().unwrap().get_or_insert(e);
        self.board_changed.notify_one();
        self.stop.stop();
    }

    fn set_error(&self, e: Option<String>) {
        let mut b = self.board.lock().unwrap();
        if b.last_error != e {
            b.last_error = e;
            drop(b);
            self.board_changed.notify_one();
        }
    }

    fn update_chat(&self, target: &ChatTarget, f: impl FnOnce(&mut ChatStatus)) {
        let mut b = self.board.lock().unwrap();
        let entry = b.chats.entry(target.chat_key()).or_default();
        let before = entry.clone();
        f(entry);
        if *entry != before {
            drop(b);
            self.board_changed.notify_one();
        }
    }

    fn group(&self, id: &str) -> Option<Arc<GroupState<P>>> {
        self.groups.read().unwrap().get(id).cloned()
    }

    fn all_groups(&self) -> Vec<Arc<GroupState<P>>> {
        self.groups.read().unwrap().values().cloned().collect()
    }

    /// The served group that authorizes `target` (fresh from disk).
    fn group_of(&self, target: &ChatTarget) -> Option<Arc<GroupState<P>>> {
        let mut gs = self.all_groups();
        gs.sort_by(|a, b| a.id.cmp(&b.id));
        gs.into_iter().find(|g| g.bindings().is_authorized(target))
    }
}

// ---------------------------------------------------------------------------------------------
// Entry
// ---------------------------------------------------------------------------------------------

/// Run the bridge for `platform` until `stop` (or a credential rejection).
pub async fn run<P: Platform>(platform: Arc<P>, cfg: RunnerConfig, stop: StopToken) -> Result<(), RunnerError> {
    let cred_dir = cfg.cred_dir(platform.name());
    std::fs::create_dir_all(&cred_dir).map_err(|e| RunnerError::Fatal(format!("cannot create {}: {e}", cred_dir.display())))?;
    let daemon = Arc::new(Daemon::for_home(&cfg.home));
    let status_path = cred_dir.join(STATUS_FILE);
    let mut board = Board { credential_state: "unknown", ..Default::default() };
    let prev_status = cccc_core::home::read_json(&status_path).ok();
    // When the previous run was last seen alive (its status heartbeat): events up to then were
    // produced while a bridge ran, so a restart resumes them in full instead of summarizing.
    let alive_until = prev_status.as_ref().and_then(|p| ts_micros(p.get("updated_at")));
    // Keep what the previous run knew of each chat (last delivered event), until refreshed.
    if let Some(prev) = &prev_status
        && let Some(chats) = prev.get("chats").and_then(Value::as_object)
    {
        for (k, v) in chats {
            board.chats.insert(
                k.clone(),
                ChatStatus {
                    group_id: v.get("group_id").and_then(Value::as_str).unwrap_or("").to_string(),
                    last_delivered_event_id: v.get("last_delivered_event_id").and_then(Value::as_str).map(str::to_string),
                    ..Default::default()
                },
            );
        }
    }
    write_status_file(&status_path, &cfg.cred, &board);

    // Verify the credential: fail fast on a rejection, retry network trouble.
    let mut attempt = 0u32;
    let me = loop {
        match platform.verify().await {
            Ok(me) => break me,
            Err(SendFailure::CredentialRejected(m)) => {
                board.credential_state = "rejected";
                board.last_error = Some(format!("credential rejected: {m}"));
                write_status_file(&status_path, &cfg.cred, &board);
                return Err(RunnerError::CredentialRejected(m));
            }
            Err(e) => {
                attempt += 1;
                board.last_error = Some(format!("credential check failed: {e}"));
                write_status_file(&status_path, &cfg.cred, &board);
                tracing::warn!(error = %e, "credential check failed; retrying");
                if stop.sleep(Duration::from_millis(outbox::backoff_ms(attempt, "verify") as u64)).await {
                    return Ok(());
                }
            }
        }
    };
    board.bot_username = me.username.clone();
    board.credential_state = "ok";
    board.last_error = None;
    tracing::info!(bot = %me.username, cred = %cfg.cred, "bridge started");

    let cred_dir_for_channels = cred_dir.clone();
    let markers = Arc::new(Mutex::new(Markers::load(cred_dir.join(MARKERS_FILE))));
    let (marker_tx, marker_rx) = mpsc::unbounded_channel();
    let markers_queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let marker_task = tokio::spawn(marker_worker(platform.clone(), markers.clone(), marker_rx, markers_queued.clone()));
    let unfinished = markers.lock().unwrap().unfinished();
    let shared = Arc::new(Shared {
        markers_queued,
        markers,
        marker_tx,
        pacer: platform.pacer().map(Mutex::new),
        platform,
        daemon,
        cred_dir,
        me,
        board: Mutex::new(board),
        board_changed: Notify::new(),
        stop: stop.clone(),
        fatal: Mutex::new(None),
        groups: RwLock::new(HashMap::new()),
        channels: Mutex::new(load_channels(&cred_dir_for_channels)),
        alive_until,
        started_at: cccc_proto::ts::now_micros(),
        cfg,
    });
    // Markers the previous run was clearing when it stopped: clear them now.
    for at in unfinished {
        shared.mark(at, Marker::Done);
    }

    // Know the served groups before the first update is read: a `/subscribe` that arrives
    // at once then names the group (when there is one) instead of a placeholder.
    let scanned = match scan(&shared).await {
        Ok(served) => {
            apply_scan(&shared, served);
            provision(&shared, true).await;
            Some(tokio::time::Instant::now())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list groups yet; retrying in the background");
            None
        }
    };

    let status = tokio::spawn(status_loop(shared.clone()));
    let inbound = tokio::spawn(inbound_loop(shared.clone()));
    let groups = tokio::spawn(groups_loop(shared.clone(), scanned));

    stop.stopped().await;
    // Graceful: chat tasks finish the piece they are sending (it is then confirmed), others stop.
    let _ = groups.await;
    let mut handles = Vec::new();
    for g in shared.all_groups() {
        for (_, t) in g.tasks.lock().unwrap().drain() {
            t.stop.stop();
            handles.push(t.handle);
        }
    }
    for h in handles {
        let abort = h.abort_handle();
        if tokio::time::timeout(Duration::from_secs(20), h).await.is_err() {
            abort.abort();
        }
    }
    for g in shared.all_groups() {
        let _ = g.outbox.lock().unwrap().flush();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), inbound).await;
    shared.platform.updates_handled();
    // Let queued marker changes finish (briefly): a marker resolved but not shown is gone.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while shared.markers_queued.load(std::sync::atomic::Ordering::SeqCst) > 0 && !marker_task.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    marker_task.abort();
    status.abort();
    write_status(&shared);
    match shared.fatal.lock().unwrap().take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_status<P: Platform>(shared: &Shared<P>) {
    let b = shared.board.lock().unwrap();
    write_status_file(&shared.cred_dir.join(STATUS_FILE), &shared.cfg.cred, &b);
}

fn write_status_file(path: &Path, cred: &str, b: &Board) {
    let mut chats = Map::new();
    let mut keys: Vec<&String> = b.chats.keys().collect();
    keys.sort();
    for k in keys {
        let c = &b.chats[k];
        chats.insert(
            k.clone(),
            json!({
                "group_id": c.group_id,
                "last_delivered_event_id": c.last_delivered_event_id,
                "backlog": c.backlog,
                "last_error": c.last_error,
                "blocked": c.blocked.is_some(),
                "blocked_reason": c.blocked,
            }),
        );
    }
    let v = json!({
        "pid": std::process::id(),
        "cred": cred,
        "bot_username": b.bot_username,
        "credential_state": b.credential_state,
        "last_error": b.last_error,
        "updated_at": cccc_proto::ts::now(),
        "chats": chats,
    });
    if let Err(e) = cccc_core::home::write_json_pretty(path, &v) {
        tracing::warn!(error = %e, "cannot write bridge status");
    }
}

async fn status_loop<P: Platform>(shared: Arc<Shared<P>>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.cfg.status_every) => {}
            _ = shared.board_changed.notified() => {
                // Coalesce bursts of changes.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        write_status(&shared);
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery and chat passes
// ---------------------------------------------------------------------------------------------

/// The served groups: `(group_id, doc, canonical im)`.
async fn scan<P: Platform>(shared: &Shared<P>) -> Result<Vec<(String, Map<String, Value>, Map<String, Value>)>, CoreError> {
    let list = shared.daemon.call("groups", json!({})).await?;
    let mut out = Vec::new();
    let ids: Vec<String> = list
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|g| g.get("registry_health").and_then(Value::as_str).unwrap_or("ok") == "ok")
                .filter_map(|g| g.get("group_id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for gid in ids {
        let doc = match shared.daemon.call("group_show", json!({"group_id": gid})).await {
            Ok(v) => v.get("group").and_then(Value::as_object).cloned().unwrap_or_default(),
            Err(e) if e.code == "daemon_unavailable" => return Err(e),
            Err(_) => continue,
        };
        let Some(im) = cccc_core::ops::im::canonical_for(&doc, shared.platform.name()) else { continue };
        if im.get("platform").and_then(Value::as_str) != Some(shared.platform.name()) || im.get("enabled").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let token = match im.get("bot_token_env").and_then(Value::as_str) {
            Some(var) => (shared.cfg.env)(var).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            // A literal token: group_show redacts it, read group.yaml.
            None => literal_token(&shared.cfg.home.join("groups").join(&gid).join("group.yaml"), shared.platform.name()),
        };
        let Some(token) = token else { continue };
        if credential_key(shared.platform.name(), &token) == shared.cfg.cred {
            out.push((gid, doc, im));
        }
    }
    Ok(out)
}

fn literal_token(yaml: &Path, platform: &str) -> Option<String> {
    let doc = cccc_core::group::GroupDoc::load(yaml).ok()?;
    let im = cccc_core::ops::im::canonical_for(&doc.doc, platform)?;
    im.get("bot_token").and_then(Value::as_str).map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// `last_scan`: when the start-up scan ran (the loop's first scan then waits its turn).
async fn groups_loop<P: Platform>(shared: Arc<Shared<P>>, mut last_scan: Option<tokio::time::Instant>) {
    let sweep_every = shared.cfg.marker_timeout.min(Duration::from_secs(60));
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if shared.stop.is_stopped() {
            return;
        }
        if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
            last_sweep = Some(tokio::time::Instant::now());
            shared.sweep_markers();
        }
        if last_scan.is_none_or(|t| t.elapsed() >= shared.cfg.scan_every) {
            match scan(&shared).await {
                Ok(served) => {
                    last_scan = Some(tokio::time::Instant::now());
                    apply_scan(&shared, served);
                    provision(&shared, false).await;
                    let err = shared.board.lock().unwrap().last_error.clone();
                    if err.as_deref().is_some_and(|e| e.starts_with("daemon")) {
                        shared.set_error(None);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list groups");
                    shared.set_error(Some(e.message.clone()));
                    last_scan = Some(tokio::time::Instant::now() - shared.cfg.scan_every + Duration::from_secs(1));
                }
            }
        }
        for g in shared.all_groups() {
            chat_pass(&shared, &g).await;
        }
        if shared.stop.sleep(shared.cfg.pass_every).await {
            return;
        }
    }
}

fn apply_scan<P: Platform>(shared: &Arc<Shared<P>>, served: Vec<(String, Map<String, Value>, Map<String, Value>)>) {
    let wanted: HashSet<String> = served.iter().map(|(g, _, _)| g.clone()).collect();
    let gone: Vec<Arc<GroupState<P>>> = {
        let mut groups = shared.groups.write().unwrap();
        let ids: Vec<String> = groups.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
        ids.iter().filter_map(|k| groups.remove(k)).collect()
    };
    for g in gone {
        tracing::info!(group = %g.id, "group no longer served");
        for (t, task) in g.tasks.lock().unwrap().drain() {
            task.stop.stop();
            task.handle.abort();
            shared.board.lock().unwrap().chats.remove(&t.chat_key());
        }
        let _ = g.outbox.lock().unwrap().flush();
        shared.board_changed.notify_one();
    }
    for (gid, doc, im) in served {
        let info = GroupInfo::from_doc(&doc, &im);
        if let Some(g) = shared.group(&gid) {
            *g.info.write().unwrap() = info;
            continue;
        }
        let state_dir = shared.cfg.home.join("groups").join(&gid).join("state");
        let _ = std::fs::create_dir_all(&state_dir);
        let outbox = match Outbox::open(&state_dir) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(group = %gid, error = %e, "cannot open the outbox");
                continue;
            }
        };
        tracing::info!(group = %gid, "serving group");
        let core: Arc<dyn CoreLink> = Arc::new(GroupLink { daemon: shared.daemon.clone(), group_id: gid.clone() });
        let g = Arc::new(GroupState {
            id: gid.clone(),
            state_dir,
            core,
            outbox: Mutex::new(outbox),
            info: RwLock::new(info),
            views: RwLock::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            flipped: Mutex::new(HashSet::new()),
            first_pass_done: Mutex::new(false),
        });
        shared.groups.write().unwrap().insert(gid, g);
    }
}

fn load_channels(cred_dir: &Path) -> HashMap<String, (ChatTarget, String)> {
    let Ok(Value::Object(m)) = cccc_core::home::read_json(&cred_dir.join(CHANNELS_FILE)) else { return HashMap::new() };
    m.into_iter()
        .filter_map(|(g, v)| {
            let t = ChatTarget::new(v.get("platform")?.as_str()?, v.get("chat_id")?.as_str()?, v.get("thread_id").and_then(Value::as_i64).unwrap_or(0));
            Some((g, (t, v.get("title").and_then(Value::as_str).unwrap_or("").to_string())))
        })
        .collect()
}

/// Channel per group: ask the platform for each served group's channel when the group has
/// none yet or its title changed, and authorize what it returns. A platform without channels
/// answers `None` at once, so this costs nothing there.
///
/// `recheck`: ask even for unchanged groups (at start: a channel deleted while the bridge was
/// down is noticed and replaced).
async fn provision<P: Platform>(shared: &Arc<Shared<P>>, recheck: bool) {
    let mut changed = false;
    for g in shared.all_groups() {
        let (title, im) = {
            let info = g.info.read().unwrap();
            (if info.title.trim().is_empty() { g.id.clone() } else { info.title.clone() }, info.im.clone())
        };
        let known = shared.channels.lock().unwrap().get(&g.id).cloned();
        if !recheck && known.as_ref().is_some_and(|(_, t)| *t == title) {
            continue;
        }
        let home = GroupHome { group_id: g.id.clone(), title: title.clone(), im, known: known.as_ref().map(|(t, _)| t.clone()) };
        match shared.platform.group_channel(&home).await {
            Ok(Some(target)) => {
                if known.as_ref().is_some_and(|(t, old)| *t == target && *old == title) {
                    continue;
                }
                if let Some((old, _)) = known.as_ref().filter(|(t, _)| *t != target) {
                    // Replaced (the old one is gone): the new channel continues from where the
                    // old one stood, so nothing is lost and nothing is sent twice.
                    let _ = g.with_state_lock(|b| b.revoke(old));
                    let mut o = g.outbox.lock().unwrap();
                    if let Some(cursor) = o.cursor(old).map(str::to_string) {
                        let _ = o.forget(old);
                        if o.chat(&target).is_none() {
                            let _ = o.track(&target, Some(cursor));
                        }
                    }
                }
                let r = g.with_state_lock(|b| b.authorize_provisioned(&target, &title));
                if let Err(e) = r {
                    tracing::warn!(group = %g.id, error = %e, "cannot authorize the group channel");
                    continue;
                }
                tracing::info!(group = %g.id, chat = %target.chat_key(), "group channel ready");
                shared.channels.lock().unwrap().insert(g.id.clone(), (target, title));
                changed = true;
            }
            Ok(None) => {}
            Err(SendFailure::CredentialRejected(m)) => return shared.fail(RunnerError::CredentialRejected(m)),
            Err(e) => {
                tracing::warn!(group = %g.id, error = %e, "cannot provision the group channel; retrying at the next scan");
                shared.set_error(Some(format!("group channel for {}: {e}", g.id)));
            }
        }
    }
    if changed {
        shared.save_channels();
    }
}

/// Microseconds of a reference timestamp: ISO text or float Unix seconds.
fn ts_micros(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => cccc_proto::ts::parse(s).or_else(|| s.trim().parse::<f64>().ok().map(|f| (f * 1e6) as i64)),
        Value::Number(n) => n.as_f64().map(|f| (f * 1e6) as i64),
        _ => None,
    }
}

/// When `target` was authorized (or subscribed), if the state files say.
fn bound_at(state_dir: &Path, target: &ChatTarget) -> Option<i64> {
    let key = target.chat_key();
    let read = |name: &str| cccc_core::home::read_json(&state_dir.join(name)).ok();
    let auth = read(crate::binding::AUTHORIZED_FILE).and_then(|v| ts_micros(v.get(&key).and_then(|e| e.get("authorized_at"))));
    let sub = read(crate::binding::SUBSCRIBERS_FILE).and_then(|v| ts_micros(v.get(&key).and_then(|e| e.get("subscribed_at"))));
    match (auth, sub) {
        (Some(a), Some(s)) => Some(a.max(s)),
        (a, s) => a.or(s),
    }
}

/// The ledger id to start a new chat after: the last event not newer than `since` (µs), else
/// the ledger end; `None` for an empty ledger.
async fn start_cursor(core: &dyn CoreLink, since: Option<i64>) -> Result<Option<String>, CoreError> {
    let tail = core.call("ledger_tail", json!({"limit": 200})).await?;
    let events = tail.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
    let id_of = |e: &Value| e.get("id").and_then(Value::as_str).map(str::to_string);
    if let Some(since) = since {
        let before: Vec<&Value> = events.iter().filter(|e| ts_micros(e.get("ts")).is_some_and(|t| t <= since)).collect();
        if let Some(e) = before.last()
            && before.len() < events.len()
        {
            return Ok(id_of(e));
        }
    }
    Ok(events.last().and_then(id_of))
}

/// Re-read the group's chat switches; returns the chats that should receive deliveries.
fn refresh_views<P: Platform>(name: &str, g: &GroupState<P>) -> HashSet<ChatTarget> {
    let views: HashMap<ChatTarget, ChatView> = g.bindings().chats(name).into_iter().collect();
    let live = views.iter().filter(|(_, v)| v.authorized && v.subscribed).map(|(t, _)| t.clone()).collect();
    *g.views.write().unwrap() = views;
    live
}

async fn chat_pass<P: Platform>(shared: &Arc<Shared<P>>, g: &Arc<GroupState<P>>) {
    let name = shared.platform.name();
    let live = refresh_views(name, g);

    // Chats no longer live: stop and forget (a later pairing starts fresh).
    let dropped: Vec<(ChatTarget, ChatTask)> = {
        let mut tasks = g.tasks.lock().unwrap();
        let keys: Vec<ChatTarget> = tasks.keys().filter(|t| !live.contains(*t)).cloned().collect();
        keys.into_iter().filter_map(|k| tasks.remove(&k).map(|t| (k, t))).collect()
    };
    for (t, task) in dropped {
        task.stop.stop();
        task.handle.abort();
        shared.board.lock().unwrap().chats.remove(&t.chat_key());
        shared.board_changed.notify_one();
        tracing::info!(group = %g.id, chat = %t.chat_key(), "chat unsubscribed");
    }
    let stale: Vec<ChatTarget> =
        g.outbox.lock().unwrap().chats().map(|q| q.target.clone()).filter(|t| t.platform == name && !live.contains(t)).collect();
    for t in stale {
        let _ = g.outbox.lock().unwrap().forget(&t);
    }

    let first = !std::mem::replace(&mut *g.first_pass_done.lock().unwrap(), true);
    let mut end: Option<Option<String>> = None;
    if first && g.info.read().unwrap().skip_pending_on_start {
        // skip_pending_on_start: what happened while the bridge was down is not replayed.
        match start_cursor(g.core.as_ref(), None).await {
            Ok(Some(e)) => {
                let mut o = g.outbox.lock().unwrap();
                let idle: Vec<ChatTarget> = o.chats().filter(|q| q.inflight.is_none() && live.contains(&q.target)).map(|q| q.target.clone()).collect();
                for t in idle {
                    let _ = o.skip(&t, &e);
                }
                let _ = o.flush();
                end = Some(Some(e));
            }
            Ok(None) => end = Some(None),
            Err(e) => tracing::warn!(group = %g.id, error = %e, "cannot read the ledger end"),
        }
    }

    for t in live {
        if g.tasks.lock().unwrap().contains_key(&t) {
            continue;
        }
        let tracked = g.outbox.lock().unwrap().chat(&t).is_some();
        if !tracked {
            let cursor = match &end {
                Some(e) => Ok(e.clone()),
                None => start_cursor(g.core.as_ref(), bound_at(&g.state_dir, &t)).await,
            };
            let cursor = match cursor {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(group = %g.id, error = %e, "cannot read the ledger end; retrying");
                    continue;
                }
            };
            if let Err(e) = g.outbox.lock().unwrap().track(&t, cursor) {
                tracing::warn!(group = %g.id, error = %e, "cannot track chat");
                continue;
            }
        }
        shared.update_chat(&t, |c| c.group_id = g.id.clone());
        let stop = StopToken::new();
        let handle = tokio::spawn(chat_task(shared.clone(), g.clone(), t.clone(), stop.clone()));
        tracing::info!(group = %g.id, chat = %t.chat_key(), "delivering to chat");
        g.tasks.lock().unwrap().insert(t, ChatTask { stop, handle });
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound, one task per chat
// ---------------------------------------------------------------------------------------------

enum Step<Pc> {
    Send { event_id: String, index: usize, piece: Pc, nonce: String },
    Wait(i64),
    Blocked,
    Idle,
}

struct ChatRun<P: Platform> {
    shared: Arc<Shared<P>>,
    g: Arc<GroupState<P>>,
    target: ChatTarget,
    stop: StopToken,
    feed: Option<Box<dyn crate::EventFeed>>,
    queue: VecDeque<Event>,
    /// Per in-flight event: (silent, thread under this message).
    meta: HashMap<String, (bool, Option<String>)>,
    feed_failures: u32,
    dirty_skips: bool,
}

async fn chat_task<P: Platform>(shared: Arc<Shared<P>>, g: Arc<GroupState<P>>, target: ChatTarget, stop: StopToken) {
    let mut run = ChatRun { shared, g, target, stop, feed: None, queue: VecDeque::new(), meta: HashMap::new(), feed_failures: 0, dirty_skips: false };
    run.run().await;
}

impl<P: Platform> ChatRun<P> {
    fn stopped(&self) -> bool {
        self.stop.is_stopped() || self.shared.stop.is_stopped()
    }

    /// Sleep `d` unless stopped (the future borrows nothing of `self`); true when stopped.
    fn sleep(&self, d: Duration) -> impl std::future::Future<Output = bool> + Send + 'static {
        let (mine, all) = (self.stop.clone(), self.shared.stop.clone());
        async move {
            tokio::select! {
                s = mine.sleep(d) => s,
                _ = all.stopped() => true,
            }
        }
    }

    fn step(&self) -> Step<P::Piece> {
        let o = self.g.outbox.lock().unwrap();
        match o.next(&self.target, now_ms()) {
            Next::Send { event_id, index, piece, nonce } => Step::Send { event_id: event_id.to_string(), index, piece: piece.clone(), nonce },
            Next::Wait { until_ms } => Step::Wait(until_ms),
            Next::Blocked(_) => Step::Blocked,
            Next::Idle => Step::Idle,
        }
    }

    fn report(&self) {
        let o = self.g.outbox.lock().unwrap();
        let q = o.chat(&self.target);
        let inflight = q.and_then(|q| q.inflight.as_ref()).is_some();
        let last_error = q.and_then(|q| q.retry.last_error.clone());
        let blocked = q.and_then(|q| q.blocked.clone());
        drop(o);
        let backlog = self.queue.len() + usize::from(inflight);
        self.shared.update_chat(&self.target, |c| {
            c.backlog = backlog;
            c.last_error = last_error;
            c.blocked = blocked;
        });
    }

    async fn run(&mut self) {
        loop {
            if self.stopped() {
                return;
            }
            match self.step() {
                Step::Send { event_id, index, piece, nonce } => self.send(event_id, index, piece, nonce).await,
                Step::Wait(until) => {
                    self.report();
                    let d = (until - now_ms()).max(1) as u64;
                    if self.sleep(Duration::from_millis(d)).await {
                        return;
                    }
                }
                Step::Blocked => {
                    self.report();
                    if self.sleep(Duration::from_secs(2)).await {
                        return;
                    }
                }
                Step::Idle => {
                    if self.queue.is_empty() {
                        self.report();
                        if !self.fill().await {
                            return;
                        }
                        continue;
                    }
                    if let Some(ev) = self.queue.pop_front() {
                        self.process(ev).await;
                    }
                    if self.queue.is_empty() && self.dirty_skips {
                        let _ = self.g.outbox.lock().unwrap().flush();
                        self.dirty_skips = false;
                    }
                }
            }
        }
    }

    async fn send(&mut self, event_id: String, index: usize, piece: P::Piece, nonce: String) {
        // Pacing (all-or-nothing token buckets shared by every chat of this credential).
        if let Some(pacer) = &self.shared.pacer {
            let key = self.target.scoped_key();
            let group = self.shared.platform.is_group_chat(&self.target);
            loop {
                let wait = pacer.lock().unwrap().try_acquire(&key, group, now_ms());
                match wait {
                    Ok(()) => break,
                    Err(ms) => {
                        if self.sleep(Duration::from_millis(ms.max(1) as u64)).await {
                            return;
                        }
                    }
                }
            }
        }
        let (silent, thread) = self.meta.get(&event_id).cloned().unwrap_or((false, None));
        let opts = DeliverOpts { nonce, reply_to_message: if index == 0 { thread } else { None }, silent };
        let result = self.shared.platform.deliver(&self.target, &piece, &opts).await;
        let now = now_ms();
        match result {
            Ok(m) => {
                let r = self.g.outbox.lock().unwrap().confirm(&self.target, index, &m, now);
                match r {
                    Ok(Progress::Done { event_id, .. }) => {
                        self.meta.remove(&event_id);
                        if !event_id.starts_with(outbox::BACKLOG_PREFIX) {
                            self.shared.update_chat(&self.target, |c| {
                                c.last_delivered_event_id = Some(event_id.clone());
                                c.last_error = None;
                            });
                        }
                        self.report();
                    }
                    Ok(Progress::More { .. }) => {}
                    Err(e) => {
                        tracing::error!(chat = %self.target.chat_key(), error = %e, "cannot record a delivery");
                        self.sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err(f) => {
                tracing::warn!(group = %self.g.id, chat = %self.target.chat_key(), event = %event_id, piece = index, error = %f, "delivery failed");
                let verdict = self.g.outbox.lock().unwrap().fail(&self.target, index, &f, now);
                match verdict {
                    Ok(Verdict::StopWorker) => {
                        let SendFailure::CredentialRejected(m) = f else { return };
                        self.shared.fail(RunnerError::CredentialRejected(m));
                    }
                    Ok(_) => self.report(),
                    Err(e) => {
                        tracing::error!(chat = %self.target.chat_key(), error = %e, "cannot record a failure");
                        self.sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    /// Get more events: open the stream if needed (capping a backlog), then wait for one.
    /// Returns false when stopped.
    async fn fill(&mut self) -> bool {
        if self.feed.is_none() {
            let cursor = self.g.outbox.lock().unwrap().cursor(&self.target).map(str::to_string);
            let opened = tokio::select! {
                r = self.g.core.subscribe(cursor) => r,
                _ = self.shared.stop.stopped() => return false,
                _ = self.stop.stopped() => return false,
            };
            match opened {
                Ok(feed) => {
                    self.feed = Some(feed);
                    self.feed_failures = 0;
                    self.collect_backlog().await;
                    return !self.stopped();
                }
                Err(e) => {
                    self.feed_failures += 1;
                    self.shared.update_chat(&self.target, |c| c.last_error = Some(e.message.clone()));
                    let d = outbox::backoff_ms(self.feed_failures, &self.target.scoped_key()).min(30_000);
                    return !self.sleep(Duration::from_millis(d as u64)).await;
                }
            }
        }
        let Some(feed) = self.feed.as_mut() else { return true };
        let next = tokio::select! {
            r = feed.next() => r,
            _ = self.shared.stop.stopped() => return false,
            _ = self.stop.stopped() => return false,
        };
        match next {
            Ok(Some(ev)) => self.queue.push_back(ev),
            Ok(None) | Err(_) => {
                // The daemon went away (restart): reconnect from the cursor with backoff.
                self.feed = None;
                self.feed_failures += 1;
                let d = outbox::backoff_ms(self.feed_failures, &self.target.scoped_key()).min(30_000);
                return !self.sleep(Duration::from_millis(d as u64)).await;
            }
        }
        true
    }

    /// Right after the stream opened, the daemon replays what is already durable in one burst:
    /// read it, and cap it if it is long.
    async fn collect_backlog(&mut self) {
        let Some(feed) = self.feed.as_mut() else { return };
        let mut burst = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), feed.next()).await {
                Ok(Ok(Some(ev))) => {
                    burst.push(ev);
                    if burst.len() >= 10_000 {
                        break;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.feed = None;
                    break;
                }
                Err(_) => break,
            }
        }
        let view = self.view();
        let wanted: Vec<usize> =
            burst.iter().enumerate().filter(|(_, e)| mirror::audience(e).is_ok_and(|a| mirror::admits(a, &view).is_ok())).map(|(i, _)| i).collect();
        // Only a backlog that built up entirely while no bridge ran is summarized. If its first
        // event is older than the previous run's last heartbeat, the bridge was stopped or
        // killed in the middle of delivering: resume everything (bridges.md: never lose).
        let interrupted = wanted.first().is_some_and(|&i| match cccc_proto::ts::parse(&burst[i].ts) {
            // Produced while this run was already up (a burst met a chat that just started).
            Some(t) if t >= self.shared.started_at => true,
            Some(t) => self.shared.alive_until.is_some_and(|alive| t <= alive),
            None => false,
        });
        let plan = if interrupted {
            outbox::plan_backlog(&wanted, usize::MAX, 0)
        } else {
            outbox::plan_backlog(&wanted, self.shared.cfg.backlog_max, self.shared.cfg.backlog_keep)
        };
        if let Some(&last) = plan.skipped.last() {
            let last_id = burst[last].id.clone();
            let n = plan.skipped.len();
            let note = Outbound::bridge_note(&outbox::backlog_event_id(&last_id), &outbox::backlog_notice(n));
            let pieces = self.shared.platform.render(&note.split(self.shared.platform.profile()));
            tracing::info!(chat = %self.target.chat_key(), skipped = n, "backlog capped");
            if self.g.outbox.lock().unwrap().begin(&self.target, &outbox::backlog_event_id(&last_id), &last_id, pieces).is_ok() {
                // Summarized, never processed: the answers among them still resolve markers.
                for ev in &burst[..=last] {
                    self.shared.resolve_marker(ev, &self.target);
                }
                burst.drain(..=last);
            }
        }
        self.queue.extend(burst);
    }

    fn view(&self) -> ChatView {
        self.g.views.read().unwrap().get(&self.target).copied().unwrap_or_default()
    }

    async fn process(&mut self, ev: Event) {
        self.shared.resolve_marker(&ev, &self.target);
        if let Some(acked) = mirror::acked_event(&ev) {
            let refs: Vec<PlatformRef> = self.g.outbox.lock().unwrap().map().button_messages(acked).into_iter().filter(|r| r.target == self.target).collect();
            for r in refs {
                flip_button(&self.shared, &self.g, &r).await;
            }
        }
        let view = self.view();
        let audience = mirror::audience(&ev).ok().filter(|a| mirror::admits(*a, &view).is_ok());
        let outbound = audience.and_then(|_| {
            let titles = self.g.info.read().unwrap().titles.clone();
            Outbound::from_event(&ev, &titles)
        });
        let Some(mut out) = outbound else {
            let _ = self.g.outbox.lock().unwrap().skip(&self.target, &ev.id);
            self.dirty_skips = true;
            return;
        };
        if let Some(spill) = out.spill.clone() {
            let path = self.g.state_dir.parent().map(|d| d.join(&spill.path));
            if let Some(text) = path.and_then(|p| std::fs::metadata(&p).ok().filter(|m| m.len() < 4_000_000).and_then(|_| std::fs::read_to_string(&p).ok())) {
                out.expand_spill(text.trim_end_matches('\n').to_string());
            }
        }
        if let Some(group_dir) = self.g.state_dir.parent() {
            let (enabled, max_bytes) = file_policy(&self.g.info.read().unwrap().im, self.shared.platform.name());
            resolve_attachments(&mut out, group_dir, enabled, max_bytes, &self.target.chat_key());
        }
        let profile = self.shared.platform.profile();
        let pieces = self.shared.platform.render(&out.split(profile));
        let thread = out.reply_to.as_ref().and_then(|rt| {
            let o = self.g.outbox.lock().unwrap();
            o.map().messages_for(rt).into_iter().find(|e| e.target() == self.target).map(|e| e.message_id.clone())
        });
        self.meta.insert(ev.id.clone(), (audience == Some(Audience::VerboseOnly), thread));
        let begun = self.g.outbox.lock().unwrap().begin(&self.target, &ev.id, &ev.id, pieces);
        if let Err(e) = begun {
            tracing::error!(chat = %self.target.chat_key(), error = %e, "cannot queue an event");
            self.queue.push_front(ev);
            self.sleep(Duration::from_secs(1)).await;
            return;
        }
        self.dirty_skips = false;
    }
}

async fn flip_button<P: Platform>(shared: &Shared<P>, g: &GroupState<P>, at: &PlatformRef) {
    let key = (at.target.scoped_key(), at.message_id.clone());
    if g.flipped.lock().unwrap().contains(&key) {
        return;
    }
    match shared.platform.mark_acked(at, "user").await {
        Ok(()) => {
            let mut f = g.flipped.lock().unwrap();
            if f.len() > 10_000 {
                f.clear();
            }
            f.insert(key);
        }
        Err(e) => tracing::warn!(chat = %at.target.chat_key(), message = %at.message_id, error = %e, "cannot mark the Ack button"),
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

async fn inbound_loop<P: Platform>(shared: Arc<Shared<P>>) {
    let mut failures = 0u32;
    loop {
        if shared.stop.is_stopped() {
            return;
        }
        let batch = tokio::select! {
            b = shared.platform.next_updates() => b,
            _ = shared.stop.stopped() => return,
        };
        match batch {
            Ok(updates) => {
                if failures > 0 {
                    failures = 0;
                    shared.set_error(None);
                }
                for u in updates {
                    handle_update(&shared, u).await;
                }
                shared.platform.updates_handled();
            }
            Err(SendFailure::CredentialRejected(m)) => {
                shared.fail(RunnerError::CredentialRejected(m));
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "polling failed");
                shared.set_error(Some(format!("polling: {e}")));
                let d = match &e {
                    SendFailure::RetryAfter { retry_after_ms } => *retry_after_ms,
                    _ => outbox::backoff_ms(failures, "poll"),
                };
                if shared.stop.sleep(Duration::from_millis(d.max(1) as u64)).await {
                    return;
                }
            }
        }
    }
}

async fn notice<P: Platform>(shared: &Shared<P>, target: &ChatTarget, text: &str, reply_to: Option<&str>) {
    for attempt in 0..3 {
        match shared.platform.notice(target, text, reply_to).await {
            Ok(_) => return,
            Err(SendFailure::RetryAfter { retry_after_ms }) if attempt < 2 => {
                if shared.stop.sleep(Duration::from_millis(retry_after_ms.max(1) as u64)).await {
                    return;
                }
            }
            Err(SendFailure::Transient(_)) if attempt < 2 => {
                if shared.stop.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
            Err(SendFailure::CredentialRejected(m)) => return shared.fail(RunnerError::CredentialRejected(m)),
            Err(e) => {
                tracing::warn!(chat = %target.chat_key(), error = %e, "cannot send a notice");
                return;
            }
        }
    }
}

async fn handle_update<P: Platform>(shared: &Arc<Shared<P>>, u: Update) {
    match u {
        Update::Message(m) => handle_message(shared, m).await,
        Update::Button { at, data, user_id, user_name: _, callback_id } => handle_button(shared, at, &data, &user_id, &callback_id).await,
        Update::Gone { target } => {
            tracing::info!(chat = %target.chat_key(), "the bot was removed from or blocked in a chat");
            let made: Option<String> = shared.channels.lock().unwrap().iter().find(|(_, (t, _))| *t == target).map(|(g, _)| g.clone());
            if let Some(gid) = made {
                // A group channel was deleted: the next provisioning pass finds it gone and
                // makes a new one that continues from where this one stood.
                if let Some((_, title)) = shared.channels.lock().unwrap().get_mut(&gid) {
                    title.clear();
                }
                shared.set_error(Some(format!("the channel of group {gid} was deleted; making a new one")));
            } else if shared.group_of(&target).is_some() {
                shared.update_chat(&target, |c| c.blocked = Some("the bot was removed from or blocked in this chat".into()));
            }
        }
        Update::FormReply { at, event_id, text, user_id, user_name, callback_id } => {
            handle_form_reply(shared, at, event_id, text, user_id, user_name, callback_id).await
        }
    }
}

/// A reply typed into a platform form (Discord's Reply modal): IPC `reply` to that event.
async fn handle_form_reply<P: Platform>(
    shared: &Arc<Shared<P>>,
    at: PlatformRef,
    event_id: String,
    text: String,
    user_id: String,
    user_name: String,
    callback_id: String,
) {
    let Some(g) = shared.group_of(&at.target) else {
        let _ = shared.platform.answer_button(&callback_id, "This chat is not paired with a CCCC group.").await;
        return;
    };
    if !g.info.read().unwrap().user_allowed(&user_id) {
        let _ = shared.platform.answer_button(&callback_id, "You are not allowed to act in this group.").await;
        return;
    }
    if text.trim().is_empty() {
        let _ = shared.platform.answer_button(&callback_id, "Nothing to send.").await;
        return;
    }
    let submission = callback_id.split(':').next().unwrap_or(&callback_id);
    let msg = CoreMessage {
        text,
        to: Vec::new(),
        client_id: command::client_id(&at.target, &format!("form-{submission}")),
        source_platform: shared.platform.name().to_string(),
        source_user_id: user_id,
        source_user_name: user_name,
        attachments: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + shared.cfg.inbound_retry_for;
    let mut attempt = 0u32;
    let result = loop {
        match g.core.reply(event_id.clone(), msg.clone()).await {
            Err(e) if e.code == "daemon_unavailable" && tokio::time::Instant::now() < deadline => {
                attempt += 1;
                if shared.stop.sleep(Duration::from_millis(outbox::backoff_ms(attempt, "inbound").min(5_000) as u64)).await {
                    return;
                }
            }
            r => break r,
        }
    };
    let answer = match result {
        Ok(_) => "Reply sent".to_string(),
        Err(e) => {
            tracing::warn!(group = %g.id, chat = %at.target.chat_key(), error = %e, "cannot forward a form reply");
            format!("Reply not delivered: {}", e.message)
        }
    };
    let _ = shared.platform.answer_button(&callback_id, &answer).await;
}

async fn handle_button<P: Platform>(shared: &Arc<Shared<P>>, at: PlatformRef, data: &str, user_id: &str, callback_id: &str) {
    let Some(g) = shared.group_of(&at.target) else {
        let _ = shared.platform.answer_button(callback_id, "This chat is not paired with a CCCC group.").await;
        return;
    };
    if !g.info.read().unwrap().user_allowed(user_id) {
        let _ = shared.platform.answer_button(callback_id, "You are not allowed to act in this group.").await;
        return;
    }
    if data == ACKED_BUTTON_DATA {
        let _ = shared.platform.answer_button(callback_id, "Already acked").await;
        return;
    }
    let Some(event_id) = data.strip_prefix("ack:").map(str::trim).filter(|e| !e.is_empty()) else {
        let _ = shared.platform.answer_button(callback_id, "").await;
        return;
    };
    let mut attempt = 0;
    let outcome = loop {
        match g.core.ack(event_id.to_string()).await {
            Err(e) if e.code == "daemon_unavailable" && attempt < 3 => {
                attempt += 1;
                if shared.stop.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
            r => break r,
        }
    };
    match outcome {
        Ok(o) => {
            let text = if o == AckOutcome::Acked { "Acked" } else { "Already acked" };
            let _ = shared.platform.answer_button(callback_id, text).await;
            flip_button(shared, &g, &at).await;
        }
        Err(e) => {
            let _ = shared.platform.answer_button(callback_id, &format!("Ack failed: {}", e.message)).await;
        }
    }
}

fn pairing_help(shared: &Shared<impl Platform>) -> String {
    let _ = shared;
    "This chat is not paired with a CCCC group yet. Send /subscribe to get a pairing key.".to_string()
}

async fn handle_message<P: Platform>(shared: &Arc<Shared<P>>, m: InboundMessage) {
    if m.edited || m.from_bot {
        return;
    }
    let group = shared.group_of(&m.target);
    let info = group.as_ref().map(|g| g.info.read().unwrap().clone()).unwrap_or_default();
    let ctx = Context {
        bot_username: &shared.me.username,
        mention_tokens: &[],
        // A channel made for the group is the group's room: every message in it is for us.
        direct: m.direct || shared.is_group_channel(&m.target),
        reply_to_bot: m.reply_to_bot,
        has_attachments: !m.attachments.is_empty() || !m.files.is_empty(),
        roster: &info.roster,
        default_route: info.default_route,
    };
    let cmd = command::parse(&m.text, &ctx);
    let reply_to = Some(m.message_id.as_str());
    let Some(g) = group else {
        // Unbound: nothing reaches the daemon. Only pairing gets an answer.
        match cmd {
            Command::Subscribe => match request_key(shared, &m) {
                Ok(key) => {
                    let served: Vec<String> = shared.groups.read().unwrap().keys().cloned().collect();
                    let group = if served.len() == 1 { served[0].clone() } else { "<group_id>".to_string() };
                    let text = format!(
                        "🔑 Pairing key: {key}\n\nTo connect this chat to a CCCC group, run on the machine where CCCC runs:\n\ncccc im bind --key {key} --group {group}\n\nThe key expires in 10 minutes."
                    );
                    notice(shared, &m.target, &text, reply_to).await;
                }
                Err(e) => notice(shared, &m.target, &format!("⚠️ Could not create a pairing key: {e}"), reply_to).await,
            },
            Command::Start | Command::Help if m.direct => notice(shared, &m.target, &pairing_help(shared), reply_to).await,
            _ => {}
        }
        return;
    };
    if !info.user_allowed(&m.author_id) {
        tracing::info!(group = %g.id, chat = %m.target.chat_key(), user = %m.author_id, "message from a user not in allowed_user_ids ignored");
        return;
    }
    // A message from the chat shows it is reachable again.
    {
        let mut o = g.outbox.lock().unwrap();
        if o.chat(&m.target).is_some_and(|q| q.blocked.is_some()) {
            let _ = o.unblock(&m.target);
        }
    }
    match cmd {
        Command::Send { to, text, explicit } => {
            let mut attachments = m.attachments.clone();
            if !m.files.is_empty() {
                attachments.extend(store_files(shared, &g, &m, &info).await);
            }
            let text = if !text.trim().is_empty() {
                text
            } else {
                match attachments.as_slice() {
                    // Every file was refused (each got its own reply): nothing to write.
                    [] => return,
                    [one] => format!("[file] {}", one.title),
                    many => format!("[files] {} attachments", many.len()),
                }
            };
            forward(shared, &g, &m, to, text, explicit, attachments).await
        }
        Command::Subscribe => {
            let r = g.with_state_lock(|b| b.subscribe(&m.target, &m.chat_title));
            refresh_views(shared.platform.name(), &g);
            let text = match r {
                Ok(_) => {
                    let v = g.bindings().view(&m.target);
                    format!(
                        "✅ This chat is subscribed to group \"{}\" [{}]. Verbose: {}. Plain text goes to the agents; reply to a mirrored message to answer it.",
                        info.title,
                        g.id,
                        if v.verbose { "on" } else { "off" }
                    )
                }
                Err(e) => format!("⚠️ {e}"),
            };
            notice(shared, &m.target, &text, reply_to).await;
        }
        Command::Unsubscribe => {
            let r = g.with_state_lock(|b| b.revoke(&m.target));
            refresh_views(shared.platform.name(), &g);
            let text = match r {
                Ok(_) => "👋 Unsubscribed: this chat is no longer paired with the group. Send /subscribe to pair again.".to_string(),
                Err(e) => format!("⚠️ {e}"),
            };
            notice(shared, &m.target, &text, reply_to).await;
        }
        Command::Status => {
            let text = status_text(&g, &info, &m.target).await;
            notice(shared, &m.target, &text, reply_to).await;
        }
        Command::Pause | Command::Resume => {
            let paused = matches!(cmd, Command::Pause);
            let r = g.with_state_lock(|b| b.set_paused(&m.target, paused));
            refresh_views(shared.platform.name(), &g);
            let text = match r {
                Ok(Some(true)) => "⏸ Paused: nothing is mirrored here until /resume.".to_string(),
                Ok(Some(false)) => "▶️ Resumed: messages are mirrored here again.".to_string(),
                Ok(None) => "This chat is not subscribed. Send /subscribe first.".to_string(),
                Err(e) => format!("⚠️ {e}"),
            };
            notice(shared, &m.target, &text, reply_to).await;
        }
        Command::Verbose(v) => {
            let r = g.with_state_lock(|b| b.set_verbose(&m.target, v));
            refresh_views(shared.platform.name(), &g);
            let text = match r {
                Ok(Some(true)) => "🔊 Verbose on: agent-to-agent messages are mirrored too.".to_string(),
                Ok(Some(false)) => "🔈 Verbose off: only messages for you are mirrored.".to_string(),
                Ok(None) => "This chat is not subscribed. Send /subscribe first.".to_string(),
                Err(e) => format!("⚠️ {e}"),
            };
            notice(shared, &m.target, &text, reply_to).await;
        }
        Command::Help | Command::Start => notice(shared, &m.target, command::HELP, reply_to).await,
        Command::Usage(u) => notice(shared, &m.target, u, reply_to).await,
        Command::Unknown(name) => notice(shared, &m.target, &format!("Unknown command /{name}.\n\n{}", command::HELP), reply_to).await,
        Command::Ignore(_) => {}
    }
}

/// Forward a message to the group: `reply` when it answers a mirrored message, else `send`.
async fn forward<P: Platform>(
    shared: &Arc<Shared<P>>,
    g: &Arc<GroupState<P>>,
    m: &InboundMessage,
    to: Vec<String>,
    text: String,
    explicit: bool,
    attachments: Vec<BlobRef>,
) {
    let msg = CoreMessage {
        text,
        to: to.clone(),
        client_id: command::client_id(&m.target, &m.message_id),
        source_platform: shared.platform.name().to_string(),
        source_user_id: m.author_id.clone(),
        source_user_name: m.author_name.clone(),
        attachments,
    };
    let reply_event = m.reply_to_message.as_deref().and_then(|r| g.outbox.lock().unwrap().event_for(&m.target, r));
    let at = PlatformRef { target: m.target.clone(), message_id: m.message_id.clone() };
    let deadline = tokio::time::Instant::now() + shared.cfg.inbound_retry_for;
    let mut attempt = 0u32;
    let result = loop {
        let r = match &reply_event {
            Some(ev) => {
                let mut rmsg = msg.clone();
                if !explicit {
                    // Answer the original sender (the daemon's default for a reply).
                    rmsg.to = Vec::new();
                }
                match g.core.reply(ev.clone(), rmsg).await {
                    // The original is gone (or not a message): a plain send keeps the text.
                    Err(e) if e.code == "event_not_found" => g.core.send(msg.clone()).await,
                    r => r,
                }
            }
            None => g.core.send(msg.clone()).await,
        };
        match r {
            Err(e) if e.code == "daemon_unavailable" && tokio::time::Instant::now() < deadline => {
                attempt += 1;
                if shared.stop.sleep(Duration::from_millis(outbox::backoff_ms(attempt, "inbound").min(5_000) as u64)).await {
                    return;
                }
            }
            r => break r,
        }
    };
    match result {
        Ok(event_id) => {
            if !event_id.is_empty() {
                // So a reply to one's own message threads to it.
                let mut o = g.outbox.lock().unwrap();
                o.map_mut().insert(MapEntry::new(&at, &event_id, 0, now_ms()));
                let _ = o.map().save();
                drop(o);
                // 👀 until the answer (or the timeout). Recorded before it is shown, so the
                // answer's "done" is queued after it.
                shared.markers.lock().unwrap().add(&event_id, at.clone(), now_ms());
                shared.mark(at, Marker::Processing);
            }
        }
        Err(e) => {
            tracing::warn!(group = %g.id, chat = %m.target.chat_key(), error = %e, "cannot forward a message");
            shared.mark(at, Marker::Failed);
            notice(shared, &m.target, &format!("⚠️ Not delivered to the group: {}", e.message), Some(&m.message_id)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attachments
// ---------------------------------------------------------------------------------------------

/// The group's attachment policy (`im.files`): enabled, and the size limit in bytes (`max_mb`,
/// default 20 on Telegram and 10 elsewhere; bridges.md §1.2, §3.7, §4.8).
pub fn file_policy(im: &Map<String, Value>, platform: &str) -> (bool, u64) {
    let files = im.get("files").and_then(Value::as_object);
    let enabled = files.and_then(|f| f.get("enabled")).and_then(Value::as_bool).unwrap_or(true);
    let default_mb = if platform == "telegram" { 20.0 } else { 10.0 };
    let mb = files.and_then(|f| f.get("max_mb")).and_then(Value::as_f64).filter(|m| *m > 0.0).unwrap_or(default_mb);
    (enabled, (mb * 1024.0 * 1024.0) as u64)
}

/// A file name reduced to one portable path component; generic names (`file`, `unknown`,
/// `attachment`, empty) become `attachment.<ext>`.
pub fn safe_blob_name(name: &str, mime_type: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    out = out.trim_matches(['.', '_']).to_string();
    let stem = out.rsplit_once('.').map(|(a, _)| a).unwrap_or(&out).to_ascii_lowercase();
    if out.is_empty() || matches!(stem.as_str(), "file" | "unknown" | "attachment") {
        let ext = out.rsplit_once('.').map(|(_, e)| e.to_string()).filter(|e| !e.is_empty()).unwrap_or_else(|| ext_for_mime(mime_type).to_string());
        out = format!("attachment.{ext}");
    }
    if out.chars().count() > 120 {
        let ext = out.rsplit_once('.').map(|(_, e)| e.chars().take(10).collect::<String>()).unwrap_or_default();
        let head: String = out.chars().take(100).collect();
        out = if ext.is_empty() { head } else { format!("{head}.{ext}") };
    }
    out
}

fn ext_for_mime(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "application/zip" => "zip",
        _ => "bin",
    }
}

/// Store `bytes` as the group blob `state/blobs/<sha256>_<name>` under `group_dir`; returns
/// its reference. Writing the same content again is a no-op.
pub fn store_blob(group_dir: &Path, name: &str, mime_type: &str, bytes: &[u8]) -> std::io::Result<BlobRef> {
    let sha: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let name = safe_blob_name(name, mime_type);
    let rel = format!("state/blobs/{sha}_{name}");
    let full = group_dir.join(&rel);
    if !std::fs::metadata(&full).is_ok_and(|m| m.len() == bytes.len() as u64) {
        let dir = group_dir.join("state/blobs");
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{sha}.{}.tmp", std::process::id()));
        // Durable before the ledger refers to it: the message that names this blob is
        // acknowledged as soon as the daemon has it.
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &full)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    let mime = if mime_type.is_empty() { "application/octet-stream".to_string() } else { mime_type.to_string() };
    let kind = if mime.starts_with("image/") { "image" } else { "file" };
    Ok(BlobRef { path: rel, title: name, mime_type: mime, bytes: bytes.len() as u64, kind: kind.to_string() })
}

/// Download a bound chat's inbound files and store them as group blobs. A file over the
/// group's `max_mb` (advertised or actual) or one that fails to download gets a warning reply
/// and is left out; the message goes on without it.
async fn store_files<P: Platform>(shared: &Arc<Shared<P>>, g: &Arc<GroupState<P>>, m: &InboundMessage, info: &GroupInfo) -> Vec<BlobRef> {
    let (enabled, max_bytes) = file_policy(&info.im, shared.platform.name());
    let reply_to = Some(m.message_id.as_str());
    if !enabled {
        notice(shared, &m.target, "⚠️ Files are disabled for this group (im.files.enabled: false); the file was not forwarded.", reply_to).await;
        return Vec::new();
    }
    let Some(group_dir) = g.state_dir.parent().map(Path::to_path_buf) else { return Vec::new() };
    let limit_mb = max_bytes as f64 / (1024.0 * 1024.0);
    let too_large = |f: &RemoteFile, size: u64| format!("⚠️ File too large: {} ({:.1} MB; the limit is {limit_mb:.0} MB). It was not forwarded.", f.name, size as f64 / (1024.0 * 1024.0));
    let mut out = Vec::new();
    for f in &m.files {
        if let Some(size) = f.size.filter(|s| *s > max_bytes) {
            tracing::info!(group = %g.id, chat = %m.target.chat_key(), size, "inbound file too large; not downloaded");
            notice(shared, &m.target, &too_large(f, size), reply_to).await;
            continue;
        }
        match shared.platform.fetch_file(f, max_bytes).await {
            Ok(bytes) if bytes.len() as u64 > max_bytes => notice(shared, &m.target, &too_large(f, bytes.len() as u64), reply_to).await,
            Ok(bytes) => match store_blob(&group_dir, &f.name, &f.mime_type, &bytes) {
                Ok(b) => out.push(b),
                Err(e) => {
                    tracing::error!(group = %g.id, error = %e, "cannot store an inbound file");
                    notice(shared, &m.target, &format!("⚠️ Could not store the file {}: {e}", f.name), reply_to).await;
                }
            },
            Err(FetchError::TooLarge(size)) => notice(shared, &m.target, &too_large(f, size.max(max_bytes + 1)), reply_to).await,
            Err(FetchError::Failed(e)) => {
                tracing::warn!(group = %g.id, chat = %m.target.chat_key(), error = %e, "cannot download an inbound file");
                notice(shared, &m.target, &format!("⚠️ Could not download the file {}: {e}", f.name), reply_to).await;
            }
        }
    }
    out
}

/// Keep only the attachments a chat can be sent: a group-relative blob path
/// (`state/blobs/…` or `state/ledger/blobs/…`) that exists, is a file and is within the size
/// limit; make each path absolute. The others are logged and dropped (the text still goes).
fn resolve_attachments(out: &mut Outbound, group_dir: &Path, enabled: bool, max_bytes: u64, chat: &str) {
    if out.attachments.is_empty() {
        return;
    }
    if !enabled {
        tracing::info!(chat, event = %out.event_id, n = out.attachments.len(), "files disabled for this group; attachments not sent");
        out.attachments.clear();
        return;
    }
    out.attachments.retain_mut(|a| {
        let rel = a.path.trim();
        let blob_path = (rel.starts_with("state/blobs/") || rel.starts_with("state/ledger/blobs/")) && !rel.split('/').any(|p| p == ".." || p.is_empty());
        if !blob_path {
            tracing::warn!(chat, event = %out.event_id, path = %rel, "attachment is not a group blob path; skipped");
            return false;
        }
        let full = group_dir.join(rel);
        match std::fs::metadata(&full) {
            Ok(md) if md.is_file() && md.len() <= max_bytes => {
                if a.title.trim().is_empty() {
                    a.title = rel.rsplit('/').next().unwrap_or(rel).splitn(2, '_').last().unwrap_or(rel).to_string();
                }
                a.bytes = md.len();
                a.path = full.to_string_lossy().into_owned();
                true
            }
            Ok(md) if md.is_file() => {
                tracing::warn!(chat, event = %out.event_id, path = %rel, bytes = md.len(), max_bytes, "attachment larger than im.files.max_mb; skipped");
                false
            }
            _ => {
                tracing::warn!(chat, event = %out.event_id, path = %rel, "attachment blob missing; skipped");
                false
            }
        }
    });
}

async fn status_text<P: Platform>(g: &GroupState<P>, info: &GroupInfo, target: &ChatTarget) -> String {
    let mut s = format!("📊 Group \"{}\" [{}] — {}\n", info.title, g.id, if info.state.is_empty() { "active" } else { &info.state });
    match g.core.call("actor_list", json!({})).await {
        Ok(v) => {
            let actors = v.get("actors").and_then(Value::as_array).cloned().unwrap_or_default();
            if actors.is_empty() {
                s.push_str("Actors: none\n");
            } else {
                s.push_str("Actors:\n");
                for a in actors {
                    let id = a.get("id").and_then(Value::as_str).unwrap_or("?");
                    let title = a.get("title").and_then(Value::as_str).unwrap_or("");
                    let role = a.get("role").and_then(Value::as_str).unwrap_or("");
                    let running = a.get("running").and_then(Value::as_bool).unwrap_or(false);
                    let enabled = a.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                    let state = if running { "running" } else if enabled { "stopped" } else { "disabled" };
                    let name = if title.is_empty() || title == id { id.to_string() } else { format!("{id} ({title})") };
                    let role = if role.is_empty() { String::new() } else { format!(" [{role}]") };
                    s.push_str(&format!("• {name}{role}: {state}\n"));
                }
            }
        }
        Err(e) => s.push_str(&format!("Actors: unavailable ({})\n", e.message)),
    }
    match g.core.call("obligations", json!({})).await {
        Ok(v) => {
            let obs = v.get("obligations").and_then(Value::as_array).cloned().unwrap_or_default();
            if obs.is_empty() {
                s.push_str("Open obligations: none\n");
            } else {
                s.push_str(&format!("Open obligations: {}\n", obs.len()));
                for o in obs.iter().take(10) {
                    let by = o.get("by").and_then(Value::as_str).unwrap_or("?");
                    let r = o.get("recipient").and_then(Value::as_str).unwrap_or("?");
                    let text: String = o.get("text").and_then(Value::as_str).unwrap_or("").chars().take(60).collect();
                    let kind = match o.get("status") {
                        Some(st) if st.get("reply_required").and_then(Value::as_bool).unwrap_or(false) => "reply",
                        _ => "ack/reply",
                    };
                    s.push_str(&format!("• {by} → {r} ({kind}): {text}\n"));
                }
                if obs.len() > 10 {
                    s.push_str(&format!("… and {} more\n", obs.len() - 10));
                }
            }
        }
        Err(e) => s.push_str(&format!("Open obligations: unavailable ({})\n", e.message)),
    }
    let v = g.bindings().view(target);
    s.push_str(&format!("This chat: verbose {}, {}", if v.verbose { "on" } else { "off" }, if v.paused { "paused" } else { "mirroring" }));
    s
}

/// A live pairing key for the message's chat at credential scope (reused while live).
fn request_key<P: Platform>(shared: &Shared<P>, m: &InboundMessage) -> Result<String, String> {
    let path = shared.cred_dir.join(PENDING_KEYS_FILE);
    let mut map = match cccc_core::home::read_json(&path) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let now = cccc_proto::ts::now_micros();
    let live = |e: &Value| ts_micros(e.get("created_at")).is_some_and(|c| now - c <= KEY_TTL_SECS * 1_000_000);
    let before = map.len();
    map.retain(|_, e| live(e));
    let t = &m.target;
    let same = |e: &Value| {
        let chat = match e.get("chat_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        chat == t.chat_id && e.get("thread_id").and_then(Value::as_i64).unwrap_or(0) == t.thread_id && e.get("platform").and_then(Value::as_str) == Some(t.platform.as_str())
    };
    if let Some((k, _)) = map.iter().find(|(_, e)| same(e)) {
        let k = k.clone();
        if map.len() != before {
            cccc_core::home::write_json_pretty(&path, &Value::Object(map)).map_err(|e| e.to_string())?;
        }
        return Ok(k);
    }
    let v = uuid::Uuid::new_v4().as_u128();
    let key = format!("{:016x}", (v as u64) ^ ((v >> 64) as u64));
    map.insert(
        key.clone(),
        json!({
            "chat_id": t.chat_id, "thread_id": t.thread_id, "platform": t.platform,
            "created_at": cccc_proto::ts::format(now), "chat_title": m.chat_title,
        }),
    );
    cccc_core::home::write_json_pretty(&path, &Value::Object(map)).map_err(|e| e.to_string())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_key_matches_the_daemon() {
        assert_eq!(credential_key("telegram", "123:abc"), cccc_core::ops::im::credential_key("telegram", "123:abc"));
        assert_eq!(credential_key("telegram", "t").len(), 12);
    }

    #[test]
    fn timestamps_are_read_in_both_reference_forms() {
        assert_eq!(ts_micros(Some(&json!("2025-11-25T10:11:43Z"))), Some(1_764_065_503_000_000));
        assert_eq!(ts_micros(Some(&json!(1_764_065_503.5))), Some(1_764_065_503_500_000));
        assert_eq!(ts_micros(Some(&json!("1764065503"))), Some(1_764_065_503_000_000));
        assert_eq!(ts_micros(None), None);
    }

    #[test]
    fn file_policy_defaults_per_platform() {
        let mb = 1024 * 1024;
        assert_eq!(file_policy(&Map::new(), "telegram"), (true, 20 * mb));
        assert_eq!(file_policy(&Map::new(), "discord"), (true, 10 * mb));
        let im = json!({"files": {"enabled": false, "max_mb": 3}}).as_object().unwrap().clone();
        assert_eq!(file_policy(&im, "telegram"), (false, 3 * mb));
    }

    #[test]
    fn blob_names_are_one_portable_component() {
        assert_eq!(safe_blob_name("report.pdf", ""), "report.pdf");
        assert_eq!(safe_blob_name("../../etc/pass wd.txt", ""), "pass_wd.txt");
        assert_eq!(safe_blob_name("file", "image/png"), "attachment.png");
        assert_eq!(safe_blob_name("unknown.txt", ""), "attachment.txt");
        assert_eq!(safe_blob_name("", ""), "attachment.bin");
        assert!(safe_blob_name(&"x".repeat(500), "").chars().count() <= 120);
    }

    #[test]
    fn blobs_are_stored_by_content_and_resolved_for_sending() {
        let dir = tempfile::tempdir().unwrap();
        let b = store_blob(dir.path(), "photo.jpg", "image/jpeg", b"abc").unwrap();
        assert_eq!(b.path, "state/blobs/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad_photo.jpg");
        assert_eq!((b.kind.as_str(), b.bytes, b.title.as_str()), ("image", 3, "photo.jpg"));
        assert_eq!(std::fs::read(dir.path().join(&b.path)).unwrap(), b"abc");
        assert_eq!(store_blob(dir.path(), "photo.jpg", "image/jpeg", b"abc").unwrap(), b);

        std::fs::write(dir.path().join("state/blobs/big.bin"), vec![0u8; 100]).unwrap();
        let mut out = Outbound::bridge_note("e1", "text");
        let a = |p: &str| crate::render::Attachment { path: p.into(), ..Default::default() };
        out.attachments = vec![a(&b.path), a("state/blobs/missing.txt"), a("state/blobs/big.bin"), a("../outside"), a("state/blobs/../x")];
        resolve_attachments(&mut out, dir.path(), true, 50, "c");
        assert_eq!(out.attachments.len(), 1);
        assert_eq!(out.attachments[0].path, dir.path().join(&b.path).to_string_lossy());
        assert_eq!(out.attachments[0].title, "photo.jpg");
        out.attachments = vec![a(&b.path)];
        resolve_attachments(&mut out, dir.path(), false, 50, "c");
        assert!(out.attachments.is_empty());
    }

    #[test]
    fn markers_resolve_by_reply_only_one_or_timeout_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MARKERS_FILE);
        let dm = ChatTarget::new("telegram", "1", 0);
        let other = ChatTarget::new("telegram", "2", 0);
        let at = |t: &ChatTarget, m: &str| PlatformRef { target: t.clone(), message_id: m.into() };
        let mut m = Markers::load(path.clone());
        assert!(m.is_empty());
        m.add("e1", at(&dm, "10"), 1_000);
        m.add("e2", at(&dm, "11"), 2_000);
        m.add("e3", at(&other, "12"), 3_000);
        // Persisted at once: a restart sees them.
        let mut m = Markers::load(path.clone());
        assert_eq!(m.len(), 3);
        // By reply_to. It stays on file, resolving, until the platform was told.
        assert_eq!(m.take("e1"), Some(at(&dm, "10")));
        assert_eq!(m.take("e1"), None);
        assert_eq!(Markers::load(path.clone()).unfinished(), vec![at(&dm, "10")], "a crash now clears it at the next start");
        m.resolved(&at(&dm, "10"));
        assert!(Markers::load(path.clone()).unfinished().is_empty());
        // Without reply_to: only when exactly one is pending there, placed before the answer.
        assert_eq!(m.take_only(&other, 2_999), None);
        m.add("e4", at(&other, "13"), 3_500);
        assert_eq!(m.take_only(&other, 10_000), None, "two pending: ambiguous");
        assert_eq!(m.take("e4"), Some(at(&other, "13")));
        assert_eq!(m.take_only(&other, 3_000), Some(at(&other, "12")));
        // Timeout.
        assert!(m.expire(2_000 + 999, 1_000).is_empty());
        assert_eq!(m.expire(2_000 + 1_000, 1_000), vec![at(&dm, "11")]);
        for a in [at(&dm, "11"), at(&other, "12"), at(&other, "13")] {
            m.resolved(&a);
        }
        assert!(Markers::load(path).is_empty());
    }

    #[tokio::test]
    async fn stop_token_wakes_sleepers() {
        let s = StopToken::new();
        let s2 = s.clone();
        let h = tokio::spawn(async move { s2.sleep(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.stop();
        assert!(h.await.unwrap());
        assert!(s.is_stopped());
        s.stopped().await;
    }
}
