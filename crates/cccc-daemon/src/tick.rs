//! The daemon's clock: runtime housekeeping every second, reminders every five, and
//! `term_attach` (a viewer of an actor's terminal).

use crate::server::{Shared, respond};
use cccc_core::runtime::{self, DeliveryJob};
use cccc_proto::{ErrorBody, Response};
use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

const TICK: Duration = Duration::from_secs(1);

/// Reminders are checked every this many seconds (5 s by default, as the reference;
/// `CCCC_AUTOMATION_EVERY_TICKS` shortens it for tests).
fn automation_every() -> Duration {
    Duration::from_secs(std::env::var("CCCC_AUTOMATION_EVERY_TICKS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(5))
}

pub async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let every = automation_every();
    let mut last_automation = tokio::time::Instant::now();
    let mut last_full = tokio::time::Instant::now();
    loop {
        // A kick (a new message) runs deliveries now; the rest keeps its own pace.
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shared.kick.notified() => {}
            _ = shutdown.changed() => return,
        }
        let now = tokio::time::Instant::now();
        let full = now - last_full >= TICK;
        if full {
            last_full = now;
        }
        let automation = now - last_automation >= every;
        if automation {
            last_automation = now;
        }
        let store = shared.store.clone();
        let sh = shared.clone();
        let jobs = tokio::task::spawn_blocking(move || {
            if full {
                cccc_core::pty::client::reap();
                cccc_core::store::lock(&sh.im).tick(&store);
            }
            let mut jobs: Vec<DeliveryJob> = Vec::new();
            let mut any_pty = false;
            for id in store.open_ids() {
                let r = store.with_group(&id, |g| {
                    if full {
                        runtime::detect_exits(g);
                    }
                    any_pty |= g.live.keys().any(|a| g.doc.actor(a).is_some_and(|v| v.runner == "pty"));
                    if automation {
                        cccc_core::automation::tick(g, cccc_proto::ts::now_micros());
                    }
                    Ok(runtime::plan_deliveries(g))
                });
                if let Ok(j) = r {
                    jobs.extend(j);
                }
            }
            sh.pty_live.store(any_pty, std::sync::atomic::Ordering::Relaxed);
            jobs
        })
        .await
        .unwrap_or_default();
        for job in jobs {
            let store = shared.store.clone();
            let sh = shared.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = runtime::run_delivery(&job);
                let _ = store.with_group(&job.group_id, |g| {
                    runtime::finish_delivery(g, &job, &outcome);
                    Ok(())
                });
                // Whatever arrived while this batch was being typed goes out now.
                sh.kick.notify_one();
            });
        }
    }
}

/// `term_attach {group_id, actor_id, mode?: viewer|control}`: handshake, then the terminal's
/// recent output and live bytes. In `control` mode, bytes from the client are typed into the
/// terminal; the default `viewer` mode is read-only.
pub async fn term_attach(shared: Arc<Shared>, mut args: Map<String, Value>, mut reader: BufReader<OwnedReadHalf>, mut w: OwnedWriteHalf) {
    let store = shared.store.clone();
    let control = args.get("mode").and_then(Value::as_str) == Some("control");
    args.insert("__op".into(), json!("term_attach"));
    let checked = tokio::task::spawn_blocking(move || cccc_core::ops::dispatch(&store, "term_attach", &args)).await;
    let info = match checked {
        Ok(Some(Ok(v))) => v,
        Ok(Some(Err(e))) => return respond(&mut w, &Response::err(e)).await,
        _ => return respond(&mut w, &Response::err(ErrorBody::new("internal_error", "term_attach failed"))).await,
    };
    let socket = info["socket"].as_str().unwrap_or("").to_string();
    let host = match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => return respond(&mut w, &Response::err(ErrorBody::new("actor_not_running", format!("terminal not reachable: {e}")))).await,
    };
    let mut host_w = match host.try_clone() {
        Ok(h) => h,
        Err(e) => return respond(&mut w, &Response::err(ErrorBody::new("internal_error", e.to_string()))).await,
    };
    if host_w.write_all(b"{\"op\": \"attach\", \"replay_bytes\": 65536}\n").is_err() {
        return respond(&mut w, &Response::err(ErrorBody::new("actor_not_running", "terminal host closed"))).await;
    }
    let hs = json!({
        "group_id": info["group_id"], "actor_id": info["actor_id"], "terminal_mode": if control { "control" } else { "viewer" },
        "terminal_writable": control, "writer_replaced": false, "replay_cursor": 0,
    });
    if w.write_all(&Response::ok(hs).to_line()).await.is_err() {
        return;
    }
    // Host → client, on a blocking thread (the host socket is a std stream).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || {
        let mut host = host;
        let mut buf = [0u8; 16 * 1024];
        let mut first_line = true;
        loop {
            let n = match host.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            if first_line {
                // Drop the host's own handshake line.
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        chunk = &chunk[i + 1..];
                        first_line = false;
                    }
                    None => continue,
                }
            }
            if !chunk.is_empty() && tx.blocking_send(chunk.to_vec()).is_err() {
                break;
            }
        }
    });
    let paths_socket = socket.clone();
    let mut shutdown = shared.shutdown.subscribe();
    let mut inbuf = [0u8; 4096];
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => if w.write_all(&c).await.is_err() { return },
                None => { let _ = w.shutdown().await; return }
            },
            n = reader.read(&mut inbuf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) if control => {
                    let data = String::from_utf8_lossy(&inbuf[..n]).to_string();
                    let sock = paths_socket.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let p = cccc_core::pty::client::Paths { state: Default::default(), socket: sock.into(), log: Default::default() };
                        cccc_core::pty::client::write(&p, &data)
                    }).await;
                }
                Ok(_) => {}
            },
            _ = shutdown.changed() => { let _ = w.shutdown().await; return }
        }
    }
}
