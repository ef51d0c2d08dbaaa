//! HTTP side of the fake: a hyper 1 accept loop on its own thread + current-thread tokio runtime,
//! request decoding (query / JSON / form / multipart), fault injection and getUpdates long polls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::Shared;
use super::state::{ApiError, Params, Upload, canonical_method};
use super::types::{Fault, RequestRecord};

pub(crate) enum Control {
    Offline(std::sync::mpsc::Sender<()>),
    Online(std::sync::mpsc::Sender<std::io::Result<()>>),
    Shutdown,
}

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Runs until Shutdown. Owns the listener and every connection task, so going offline really
/// drops all sockets (clients see connection refused / reset).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let addr = listener.local_addr().expect("local addr");
    let mut listener = Some(listener);
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            accepted = async { listener.as_ref().unwrap().accept().await }, if listener.is_some() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    let kill = Arc::new(Notify::new());
                    let kill2 = kill.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        let kill = kill2.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req, kill).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            cmd = control.recv() => match cmd {
                None | Some(Control::Shutdown) => { conns.abort_all(); return; }
                Some(Control::Offline(ack)) => {
                    listener = None;
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                    let _ = ack.send(());
                }
                Some(Control::Online(ack)) => {
                    if listener.is_none() {
                        match bind(addr) {
                            Ok(l) => { listener = Some(l); let _ = ack.send(Ok(())); }
                            Err(e) => { let _ = ack.send(Err(e)); }
                        }
                    } else {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: u16, body: &Value) -> Resp {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn ok_response(result: Value) -> Resp {
    json_response(200, &json!({"ok": true, "result": result}))
}

fn err_response(e: &ApiError) -> Resp {
    json_response(e.code, &e.body())
}

/// Set the recorded status of request `idx`.
fn finish(shared: &Shared, idx: usize, status: u16, description: Option<String>) {
    shared.mutate(|s| {
        let Some(i) = idx.checked_sub(s.requests_cleared) else {
            return;
        };
        if let Some(r) = s.requests.get_mut(i) {
            r.status = status;
            r.description = description;
        }
    });
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, kill: Arc<Notify>) -> Resp {
    let at = Instant::now();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();

    // /file/bot<token>/<file_path>
    if let Some(rest) = path.strip_prefix("/file/bot") {
        let (token, file_path) = rest.split_once('/').unwrap_or((rest, ""));
        let (valid, bytes) = shared.with(|s| {
            let valid = s.valid_tokens.iter().any(|t| t == token);
            (
                valid,
                s.files
                    .values()
                    .find(|f| f.file_path == file_path)
                    .map(|f| f.bytes.clone()),
            )
        });
        let status = match (&bytes, valid) {
            (_, false) => 401,
            (None, _) => 404,
            (Some(_), true) => 200,
        };
        shared.mutate(|s| {
            s.requests.push(RequestRecord {
                method: "file".into(),
                chat_id: None,
                thread_id: None,
                at,
                status,
                description: None,
                params: json!({"file_path": file_path}),
                token: token.to_string(),
            })
        });
        return match (bytes, status) {
            (Some(b), 200) => Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(Full::new(Bytes::from(b)))
                .unwrap(),
            (_, 401) => err_response(&ApiError::new(401, "Unauthorized")),
            _ => err_response(&ApiError::new(404, "Not Found")),
        };
    }

    // /bot<token>/<method>
    let Some(rest) = path.strip_prefix("/bot") else {
        return err_response(&ApiError::new(404, "Not Found"));
    };
    let (token, raw_method) = rest.split_once('/').unwrap_or((rest, ""));
    let token = token.to_string();
    let raw_method = raw_method.trim_end_matches('/').to_string();

    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return err_response(&ApiError::bad("request body read failed")),
    };
    let params = match parse_params(&query, &content_type, body).await {
        Ok(p) => p,
        Err(e) => return err_response(&e),
    };
    let method = canonical_method(&raw_method);
    let chat_id = params.i64("chat_id").ok().flatten();
    let thread_id = params
        .i64("message_thread_id")
        .ok()
        .flatten()
        .map(|t| t as i32);
    let idx = shared.mutate(|s| {
        s.requests.push(RequestRecord {
            method: method
                .map(str::to_string)
                .unwrap_or_else(|| raw_method.clone()),
            chat_id,
            thread_id,
            at,
            status: 0,
            description: None,
            params: Value::Object(params.map.clone()),
            token: token.clone(),
        });
        s.requests_cleared + s.requests.len() - 1
    });

    let respond_err = |e: ApiError| {
        finish(&shared, idx, e.code, Some(e.description.clone()));
        err_response(&e)
    };

    if !token.contains(':') {
        return respond_err(ApiError::new(404, "Not Found"));
    }
    if !shared.with(|s| s.valid_tokens.contains(&token)) {
        return respond_err(ApiError::new(401, "Unauthorized"));
    }
    let Some(method) = method else {
        return respond_err(ApiError::new(404, "Not Found"));
    };

    // fault injection (checked before anything is performed)
    let mut lose_response = false;
    if let Some(fault) = shared.mutate(|s| s.take_fault(method, chat_id)) {
        let e = match fault {
            Fault::TooManyRequests { retry_after_secs } => ApiError::too_many(retry_after_secs),
            Fault::ServerError => ApiError::new(500, "Internal Server Error"),
            Fault::Unauthorized => ApiError::new(401, "Unauthorized"),
            Fault::Forbidden => ApiError::new(403, "Forbidden: bot was blocked by the user"),
            Fault::Conflict => ApiError::new(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            ),
            Fault::BadRequest(d) => ApiError::new(400, &d),
            Fault::Custom {
                status,
                description,
            } => ApiError::new(status, &description),
            Fault::BadGateway => {
                finish(&shared, idx, 502, Some("Bad Gateway".into()));
                return Response::builder()
                    .status(502)
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from_static(
                        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n",
                    )))
                    .unwrap();
            }
            Fault::Timeout => {
                let hold = shared.with(|s| s.timeout_hold);
                tokio::time::sleep(hold).await;
                kill.notify_one();
                // the connection task is gone; this response is never written
                std::future::pending::<()>().await;
                unreachable!()
            }
            Fault::LostResponse => {
                lose_response = true;
                ApiError::new(0, "")
            }
        };
        if !lose_response {
            return respond_err(e);
        }
    }

    if method == "getUpdates" {
        let resp = get_updates(&shared, &params, idx).await;
        if lose_response {
            kill.notify_one();
            std::future::pending::<()>().await;
        }
        return resp;
    }

    let result = shared.mutate(|s| {
        s.check_rate(method, chat_id, at)?;
        let r = s.call(method, &params, at)?;
        s.note_accepted(method, chat_id, at);
        Ok::<Value, ApiError>(r)
    });
    match result {
        Ok(v) => {
            if lose_response {
                kill.notify_one();
                std::future::pending::<()>().await;
            }
            finish(&shared, idx, 200, None);
            ok_response(v)
        }
        Err(e) => respond_err(e),
    }
}

async fn get_updates(shared: &Arc<Shared>, p: &Params, idx: usize) -> Resp {
    type PollArgs = (i64, usize, u64, Option<Vec<String>>);
    let parsed = (|| -> Result<PollArgs, ApiError> {
        let offset = p.i64("offset")?.unwrap_or(0);
        let limit = p.i64("limit")?.unwrap_or(100).clamp(1, 100) as usize;
        let timeout = p.i64("timeout")?.unwrap_or(0).max(0) as u64;
        let allowed = match p.json("allowed_updates")? {
            None => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            Some(_) => return Err(ApiError::bad("can't parse allowed_updates JSON array")),
        };
        Ok((offset, limit, timeout, allowed))
    })();
    let (offset, limit, timeout, allowed) = match parsed {
        Ok(v) => v,
        Err(e) => {
            finish(shared, idx, e.code, Some(e.description.clone()));
            return err_response(&e);
        }
    };
    let conflict = || {
        ApiError::new(
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
        )
    };
    // a new getUpdates terminates any poll still waiting (it then answers 409)
    let generation = shared.mutate(|s| {
        if s.webhook_url.is_some() {
            return Err(ApiError::new(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            ));
        }
        if let Some(a) = allowed {
            s.allowed_updates = Some(a);
        }
        s.poll_generation += 1;
        Ok(s.poll_generation)
    });
    let generation = match generation {
        Ok(g) => g,
        Err(e) => {
            finish(shared, idx, e.code, Some(e.description.clone()));
            return err_response(&e);
        }
    };
    shared.updates_notify.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.updates_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = shared.mutate(|s| {
            if s.poll_generation != generation {
                return Err(conflict());
            }
            Ok(s.take_updates(offset, limit))
        });
        match batch {
            Err(e) => {
                finish(shared, idx, e.code, Some(e.description.clone()));
                return err_response(&e);
            }
            Ok(b) if !b.is_empty() || tokio::time::Instant::now() >= deadline => {
                finish(shared, idx, 200, None);
                return ok_response(Value::Array(b));
            }
            Ok(_) => {}
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn parse_params(query: &str, content_type: &str, body: Bytes) -> Result<Params, ApiError> {
    let mut map = Map::new();
    let mut files = std::collections::HashMap::new();
    if !query.is_empty() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::bad("can't parse query string"))?;
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    }
    let ct = content_type.to_ascii_lowercase();
    if body.is_empty() {
        // nothing
    } else if ct.starts_with("application/json") || (ct.is_empty() && body.first() == Some(&b'{')) {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => map.extend(o),
            _ => return Err(ApiError::bad("can't parse JSON object")),
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::bad("can't parse form"))?;
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    } else if ct.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|_| ApiError::bad("can't parse multipart boundary"))?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return Err(ApiError::bad("can't parse multipart body")),
            };
            let name = field.name().unwrap_or("").to_string();
            let file_name = field.file_name().map(str::to_string);
            let ctype = field.content_type().map(|m| m.to_string());
            let data = field
                .bytes()
                .await
                .map_err(|_| ApiError::bad("can't parse multipart body"))?;
            if file_name.is_some() {
                files.insert(
                    name,
                    Upload {
                        file_name,
                        content_type: ctype,
                        bytes: data.to_vec(),
                    },
                );
            } else {
                map.insert(
                    name,
                    Value::String(String::from_utf8_lossy(&data).into_owned()),
                );
            }
        }
    }
    Ok(Params { map, files })
}
