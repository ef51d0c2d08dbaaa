//! IO side of the fake Discord: a hyper 1 REST server and a websocket Gateway, each on its own
//! listener, both on one current-thread tokio runtime owned by the fake's thread.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Shared;
use super::state::{ApiError, GwCommand, route_key};
use super::types::{Fault, GatewayRecord, RequestRecord};

pub(crate) enum Control {
    Shutdown,
}

/// Runs until Shutdown (or the control sender is dropped).
pub(crate) async fn serve(shared: Arc<Shared>, rest: TcpListener, gateway: TcpListener, mut control: mpsc::UnboundedReceiver<Control>) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            accepted = rest.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            accepted = gateway.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                conns.spawn(gateway_conn(shared.clone(), stream));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            cmd = control.recv() => match cmd {
                None | Some(Control::Shutdown) => { conns.abort_all(); return; }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

type Resp = Response<Full<Bytes>>;

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// A response with Discord's rate-limit headers (a generous bucket that is never exhausted
/// unless a 429 is injected).
fn respond(status: u16, body: Option<&Value>, route: &str, limited: Option<(f64, bool)>) -> Resp {
    let bucket = format!("{:016x}", route.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("x-ratelimit-bucket", bucket)
        .header("x-ratelimit-limit", "5");
    match limited {
        Some((retry_after, global)) => {
            b = b
                .header("retry-after", format!("{}", retry_after.ceil() as u64))
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", format!("{:.3}", unix_now() + retry_after))
                .header("x-ratelimit-reset-after", format!("{retry_after:.3}"))
                .header("x-ratelimit-scope", if global { "global" } else { "user" });
            if global {
                b = b.header("x-ratelimit-global", "true");
            }
        }
        None => {
            b = b
                .header("x-ratelimit-remaining", "4")
                .header("x-ratelimit-reset", format!("{:.3}", unix_now() + 1.0))
                .header("x-ratelimit-reset-after", "1.000");
        }
    }
    match body {
        Some(v) => b.header("content-type", "application/json").body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap()))).unwrap(),
        None => b.body(Full::new(Bytes::new())).unwrap(),
    }
}

fn fault_response(f: &Fault, route: &str) -> (u16, Resp) {
    match f {
        Fault::TooManyRequests { retry_after, global } => {
            let body = json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global, "code": if *global { 0 } else { 20028 }});
            (429, respond(429, Some(&body), route, Some((*retry_after, *global))))
        }
        Fault::ServerError(s) => {
            let body = json!({"message": "500: Internal Server Error", "code": 0});
            (*s, respond(*s, Some(&body), route, None))
        }
        Fault::Unauthorized => (401, respond(401, Some(&ApiError::unauthorized().body()), route, None)),
        Fault::Forbidden { code, message } => (403, respond(403, Some(&json!({"message": message, "code": code})), route, None)),
        Fault::Custom { status, body } => (*status, respond(*status, Some(body), route, None)),
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    // serenity and twilight use `/api/v10`; any `/api/vN` prefix is accepted.
    let path = raw_path
        .strip_prefix("/api/")
        .and_then(|p| p.strip_prefix('v'))
        .and_then(|p| p.find('/').map(|i| p[i..].to_string()))
        .unwrap_or_else(|| raw_path.clone());
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return respond(400, Some(&json!({"message": "400: Bad Request", "code": 50109})), "", None),
        }
    };
    let route = route_key(&method, &path);
    let idx = shared.mutate(|s| {
        let authorized = auth.as_deref().and_then(|a| a.strip_prefix("Bot ")).is_some_and(|t| t == s.token);
        s.requests.push(RequestRecord { at: Instant::now(), method: method.clone(), path: path.clone(), route: route.clone(), authorized, body: body.clone(), status: 0 });
        s.requests.len() - 1
    });
    let (status, resp) = match shared.mutate(|s| s.take_fault(&route)) {
        Some(f) => fault_response(&f, &route),
        None => match shared.mutate(|s| s.rest(&method, &path, auth.as_deref(), &body)) {
            Ok((204, _)) => (204, respond(204, None, &route, None)),
            Ok((st, v)) => (st, respond(st, Some(&v), &route, None)),
            Err(e) => (e.status, respond(e.status, Some(&e.body()), &route, None)),
        },
    };
    shared.mutate(|s| {
        if let Some(r) = s.requests.get_mut(idx) {
            r.status = status;
        }
    });
    resp
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

async fn send_json(ws: &mut Ws, v: Value) -> bool {
    ws.send(Message::Text(v.to_string())).await.is_ok()
}

async fn close_with(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
    let _ = ws.close(Some(frame)).await;
    // Let the close handshake finish (bounded), so the client reads the code.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
}

fn close_reason(code: u16) -> &'static str {
    match code {
        4004 => "Authentication failed.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        4005 => "Already authenticated.",
        _ => "Closed by the fake.",
    }
}

/// What one pass of the connection loop must do, taken from the state under the lock.
struct Pending {
    events: Vec<(u64, String, Value)>,
    commands: Vec<GwCommand>,
}

async fn gateway_conn(shared: Arc<Shared>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let mut wake = shared.wake.subscribe();
    let (conn, hb) = shared.record(|s| {
        let c = s.next_conn;
        s.next_conn += 1;
        s.gateway_log.push(GatewayRecord::Connected { conn: c });
        s.live_conns.insert(c);
        (c, s.heartbeat_interval_ms)
    });
    let mut session: Option<String> = None;
    let mut sent: u64 = 0;
    let detach = |shared: &Shared, session: &Option<String>, rec: GatewayRecord| {
        shared.record(|s| {
            if let Some(sess) = session.as_ref().and_then(|id| s.sessions.get_mut(id))
                && sess.conn == Some(conn)
            {
                sess.conn = None;
            }
            s.live_conns.remove(&conn);
            s.gw_commands.retain(|(t, _)| *t != Some(conn));
            s.gateway_log.push(rec);
        })
    };
    if !send_json(&mut ws, json!({"op": 10, "d": {"heartbeat_interval": hb, "_trace": ["fake-discord"]}, "s": null, "t": null})).await {
        return;
    }
    loop {
        let pending = shared.record(|s| {
            let events = match session.as_ref().and_then(|id| s.sessions.get(id)) {
                Some(sess) if sess.valid => sess.events.iter().filter(|e| e.0 > sent).cloned().collect(),
                _ => Vec::new(),
            };
            let mut commands = Vec::new();
            s.gw_commands.retain(|(target, c)| {
                if *target == Some(conn) {
                    commands.push(c.clone());
                    false
                } else {
                    true
                }
            });
            Pending { events, commands }
        });
        for (seq, name, d) in pending.events {
            if !send_json(&mut ws, json!({"op": 0, "t": name, "s": seq, "d": d})).await {
                detach(&shared, &session, GatewayRecord::Disconnected { conn });
                return;
            }
            sent = seq;
        }
        for c in pending.commands {
            match c {
                GwCommand::Reconnect => {
                    let _ = send_json(&mut ws, json!({"op": 7, "d": null, "s": null, "t": null})).await;
                    // The client is expected to close and resume; if it does not, close for it.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(m)) = ws.next().await { if m.is_close() { break; } } }).await;
                    detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(4000) });
                    let _ = ws.close(None).await;
                    return;
                }
                GwCommand::Drop => {
                    detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: None });
                    drop(ws);
                    return;
                }
                GwCommand::InvalidSession { resumable } => {
                    if !resumable {
                        shared.record(|s| {
                            if let Some(sess) = session.as_ref().and_then(|id| s.sessions.get_mut(id)) {
                                sess.valid = false;
                            }
                        });
                    }
                    let _ = send_json(&mut ws, json!({"op": 9, "d": resumable, "s": null, "t": null})).await;
                }
                GwCommand::Close(code) => {
                    detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(code) });
                    close_with(&mut ws, code, close_reason(code)).await;
                    return;
                }
            }
        }
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        detach(&shared, &session, GatewayRecord::Disconnected { conn });
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(4002) });
                    close_with(&mut ws, 4002, "Error while decoding payload.").await;
                    return;
                };
                let d = v.get("d").cloned().unwrap_or(Value::Null);
                match v.get("op").and_then(Value::as_u64) {
                    Some(1) => {
                        shared.record(|s| s.gateway_log.push(GatewayRecord::Heartbeat { conn }));
                        if !send_json(&mut ws, json!({"op": 11, "d": null, "s": null, "t": null})).await {
                            detach(&shared, &session, GatewayRecord::Disconnected { conn });
                            return;
                        }
                    }
                    Some(2) => {
                        if session.is_some() {
                            detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(4005) });
                            close_with(&mut ws, 4005, close_reason(4005)).await;
                            return;
                        }
                        let token = d.get("token").and_then(Value::as_str).unwrap_or("").to_string();
                        let intents = d.get("intents").and_then(Value::as_u64).unwrap_or(0);
                        match shared.record(|s| s.identify(conn, &token, intents)) {
                            Ok(id) => { session = Some(id); sent = 0; }
                            Err(code) => {
                                detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(code) });
                                close_with(&mut ws, code, close_reason(code)).await;
                                return;
                            }
                        }
                    }
                    Some(6) => {
                        let token = d.get("token").and_then(Value::as_str).unwrap_or("").to_string();
                        let sid = d.get("session_id").and_then(Value::as_str).unwrap_or("").to_string();
                        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
                        match shared.record(|s| s.resume(conn, &token, &sid, seq)) {
                            Ok(()) => { session = Some(sid); sent = seq; }
                            Err(4004) => {
                                detach(&shared, &session, GatewayRecord::ClosedByServer { conn, code: Some(4004) });
                                close_with(&mut ws, 4004, close_reason(4004)).await;
                                return;
                            }
                            Err(_) => {
                                let _ = send_json(&mut ws, json!({"op": 9, "d": false, "s": null, "t": null})).await;
                            }
                        }
                    }
                    // Presence, voice state, request guild members: accepted and ignored.
                    _ => {}
                }
            }
            _ = wake.recv() => {}
        }
    }
}
