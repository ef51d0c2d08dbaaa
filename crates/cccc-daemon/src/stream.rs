//! `events_stream`: live events of one group, pushed as they become durable.
//!
//! Handshake `{"v":1,"ok":true,"result":{"group_id":…},"error":null}`, then one item per line:
//! `{"t": "event", "event": <ledger event>}` and `{"t": "heartbeat", "ts": …}` after
//! `heartbeat` seconds without items.
//!
//! Subscribing is atomic with the replay: under the group lock and with publishing paused we
//! subscribe to the group's broadcast and note which indexed events are already durable (and so
//! already published). Those after the resume point are replayed from the ledger; everything
//! later arrives through the broadcast. Items are identified by their ledger position, so the
//! seam has no gap and no duplicate. If the subscriber falls behind the broadcast buffer, it
//! re-subscribes the same way from its last position: a slow reader is delayed, never lossy.

use crate::server::Shared;
use cccc_core::index::Kind;
use cccc_core::ledger::Appended;
use cccc_core::semantics::is_for;
use cccc_core::store::{GroupSlot, lock};
use cccc_core::{OpResult, err};
use cccc_proto::{ErrorBody, Response};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast;

/// Kinds a stream can carry (spec §4.8).
pub const STREAMABLE: &[&str] =
    &["chat.message", "chat.stream", "chat.ack", "system.notify", "system.notify_ack", "actor.start", "actor.stop", "actor.restart", "actor.activity"];

const BUS_CAPACITY: usize = 4096;
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-group broadcast of durable events.
#[derive(Default)]
pub struct Bus {
    senders: Mutex<HashMap<String, broadcast::Sender<Appended>>>,
}

impl Bus {
    pub fn sender(&self, group: &str) -> broadcast::Sender<Appended> {
        lock(&self.senders).entry(group.to_string()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0).clone()
    }

    pub fn publish_factory(self: &Arc<Self>) -> cccc_core::store::PublishFactory {
        let bus = self.clone();
        Box::new(move |group: &str| {
            let tx = bus.sender(group);
            Box::new(move |a: &Appended| {
                let _ = tx.send(a.clone());
            })
        })
    }
}

/// What a subscriber wants.
struct Filter {
    kinds: Vec<String>,
    /// `Some(actor)` for an actor view.
    actor: Option<String>,
}

/// A subscription and the durable events to replay first (raw ledger lines with positions).
struct Subscribed {
    rx: broadcast::Receiver<Appended>,
    replay: Vec<(u32, String)>,
}

fn wanted(slot: &GroupSlot, f: &Filter, pos: u32, kind: &str) -> bool {
    if !f.kinds.iter().any(|k| k == kind) {
        return false;
    }
    let Some(actor) = &f.actor else { return true };
    if kind != "chat.message" && kind != "system.notify" {
        return false;
    }
    let g = lock(&slot.group);
    let Some(e) = g.ledger.index.entries.get(pos as usize) else { return false };
    matches!(e.kind, Kind::ChatMessage | Kind::SystemNotify) && is_for(&g.doc, &g.ledger.index, e, actor)
}

/// Subscribe and collect the replay: durable events after position `after` (or after `since_ts`).
fn subscribe(shared: &Shared, slot: &GroupSlot, f: &Filter, after: Option<u32>, since_ts: Option<i64>) -> OpResult<Subscribed> {
    let tx = shared.bus.sender(&slot.id);
    let g = lock(&slot.group);
    let (rx, positions) = slot.durability.with_publish_paused(|synced| {
        let rx = tx.subscribe();
        let ix = &g.ledger.index;
        let start = after.map(|p| p as usize + 1).unwrap_or(0);
        let positions: Vec<u32> = if after.is_none() && since_ts.is_none() {
            Vec::new()
        } else {
            (start..ix.entries.len())
                .map(|p| p as u32)
                .filter(|&p| g.ledger.is_durable(p, synced))
                .filter(|&p| since_ts.is_none_or(|t| ix.entries[p as usize].ts > t))
                .collect()
        };
        (rx, positions)
    });
    let mut replay = Vec::new();
    for p in positions {
        let e = &g.ledger.index.entries[p as usize];
        let kind = g.ledger.index.sym_name(e.kind_sym);
        if !f.kinds.iter().any(|k| k == kind) {
            continue;
        }
        if let Some(actor) = &f.actor
            && !(matches!(e.kind, Kind::ChatMessage | Kind::SystemNotify) && is_for(&g.doc, &g.ledger.index, e, actor))
        {
            continue;
        }
        let line = g.ledger.read_line(p).map_err(|e| err("internal_error", format!("cannot read ledger: {e}")))?;
        replay.push((p, line));
    }
    Ok(Subscribed { rx, replay })
}

/// Validate the request and subscribe (spec §4.8 order of checks).
fn open(shared: &Shared, args: &Map<String, Value>) -> OpResult<(Arc<GroupSlot>, Filter, Subscribed)> {
    let gid = args.get("group_id").and_then(Value::as_str).map(str::trim).unwrap_or("");
    if gid.is_empty() {
        return Err(err("missing_group_id", "missing group_id"));
    }
    let slot = shared.store.slot(gid)?;
    let kinds: Vec<String> = match args.get("kinds") {
        Some(Value::Array(a)) if !a.is_empty() => {
            let k: Vec<String> = a.iter().filter_map(Value::as_str).filter(|k| STREAMABLE.contains(k)).map(str::to_string).collect();
            if k.is_empty() {
                // The reference lists the supported kinds sorted.
                let mut supported = STREAMABLE.to_vec();
                supported.sort_unstable();
                return Err(err("invalid_kinds", "no supported kinds requested").with_details(json!({"supported": supported})));
            }
            k
        }
        _ => STREAMABLE.iter().map(|s| s.to_string()).collect(),
    };
    let by = args.get("by").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).unwrap_or("user").to_string();
    let (actor, after, since_ts) = {
        let g = lock(&slot.group);
        if g.deleted {
            return Err(err("group_not_found", format!("group not found: {gid}")));
        }
        let actor = if by == "user" {
            None
        } else if g.doc.has_actor(&by) {
            Some(by.clone())
        } else {
            return Err(err("unknown_actor", format!("unknown actor: {by}")));
        };
        let since_id = args.get("since_event_id").and_then(Value::as_str).map(str::trim).unwrap_or("");
        let after = if since_id.is_empty() { None } else { g.ledger.index.resolve(since_id) };
        let since_ts = if after.is_none() { args.get("since_ts").and_then(Value::as_str).and_then(cccc_proto::ts::parse) } else { None };
        (actor, after, since_ts)
    };
    let filter = Filter { kinds, actor };
    let sub = subscribe(shared, &slot, &filter, after, since_ts)?;
    Ok((slot, filter, sub))
}

fn event_item(line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 32);
    out.extend_from_slice(b"{\"t\": \"event\", \"event\": ");
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"}\n");
    out
}

async fn send(w: &mut OwnedWriteHalf, bytes: &[u8]) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, w.write_all(bytes)).await, Ok(Ok(())))
}

pub async fn events_stream(shared: Arc<Shared>, args: Map<String, Value>, mut reader: BufReader<OwnedReadHalf>, mut w: OwnedWriteHalf) {
    let opened = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || open(&shared, &args)).await
    };
    let (slot, filter, sub) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return finish(&mut w, &Response::err(e)).await,
        Err(e) => return finish(&mut w, &Response::err(ErrorBody::new("internal_error", e.to_string()))).await,
    };
    let slot_for_filter = slot.clone();
    let filter = Arc::new(filter);
    if !send(&mut w, &Response::ok(json!({"group_id": slot.id})).to_line()).await {
        return;
    }
    let mut last: Option<u32> = None;
    let mut rx = sub.rx;
    for (pos, line) in sub.replay {
        if !send(&mut w, &event_item(&line)).await {
            return;
        }
        last = Some(pos);
    }
    let mut shutdown = shared.shutdown.subscribe();
    let mut probe = [0u8; 256];
    // Heartbeats go out after `heartbeat` without a written item (filtered events don't count).
    let mut last_write = tokio::time::Instant::now();
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Ok(a) => {
                    if last.is_some_and(|l| a.idx <= l) {
                        continue;
                    }
                    let f = filter.clone();
                    let s2 = slot_for_filter.clone();
                    let kind = a.event.kind.clone();
                    let idx = a.idx;
                    let want = if f.actor.is_some() {
                        tokio::task::spawn_blocking(move || wanted(&s2, &f, idx, &kind)).await.unwrap_or(false)
                    } else {
                        f.kinds.contains(&kind)
                    };
                    last = Some(a.idx);
                    if want {
                        if !send(&mut w, &event_item(&a.line)).await {
                            return;
                        }
                        last_write = tokio::time::Instant::now();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(group = %slot.id, missed, "stream subscriber lagged; replaying from the ledger");
                    let (shared2, slot2, f2) = (shared.clone(), slot.clone(), filter.clone());
                    let resub = tokio::task::spawn_blocking(move || subscribe(&shared2, &slot2, &f2, last, None)).await;
                    let Ok(Ok(resub)) = resub else { return };
                    rx = resub.rx;
                    for (pos, line) in resub.replay {
                        if last.is_some_and(|l| pos <= l) {
                            continue;
                        }
                        if !send(&mut w, &event_item(&line)).await {
                            return;
                        }
                        last = Some(pos);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(last_write + shared.heartbeat) => {
                let hb = format!("{{\"t\": \"heartbeat\", \"ts\": \"{}\"}}\n", cccc_proto::ts::now());
                if !send(&mut w, hb.as_bytes()).await {
                    return;
                }
                last_write = tokio::time::Instant::now();
            }
            n = reader.read(&mut probe) => {
                // The client closed (or sent something after its request: ignored).
                if matches!(n, Ok(0) | Err(_)) {
                    return;
                }
            }
            _ = shutdown.changed() => {
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

async fn finish(w: &mut OwnedWriteHalf, resp: &Response) {
    let _ = send(w, &resp.to_line()).await;
    let _ = w.shutdown().await;
}
