//! REST transport: serenity's routes, auth header and models, our own request execution.
//!
//! serenity's `Http` methods turn every non-2xx answer into an `ErrorResponse` that keeps only
//! `code` and `message`: a 429's `retry_after` (body) and `Retry-After` header are lost. With
//! serenity's ratelimiter on, the ratelimiter would sleep and retry inside the call instead,
//! which hides 429s from the outbox and blocks one chat's queue invisibly; it also ignores the
//! base-URL override (rust-stack.md §3.1). So we build each request with serenity's
//! [`Request::build`] (same routes, same `Authorization: Bot …`, same proxy rewrite) and send
//! it on a `reqwest::Client` shared with serenity's `Http`, which lets us read status, headers
//! and body ourselves and classify the failure exactly once, here.

use cccc_bridge::SendFailure;
use serde_json::Value;
use serenity::http::{LightMethod, RatelimitingBucket, Request, Route};
use std::collections::HashMap;
use std::sync::Mutex;

/// A failed REST call, before classification.
#[derive(Clone, Debug)]
pub struct ApiFailure {
    /// HTTP status (0: the request never got an answer).
    pub status: u16,
    /// Discord's JSON error code (`0` if none).
    pub code: i64,
    pub message: String,
    /// 429: how long to wait, in milliseconds.
    pub retry_after_ms: Option<i64>,
}

impl ApiFailure {
    /// Map to the outbox's verdicts (see `cccc_bridge::outbox`):
    ///
    /// * 429 → `RetryAfter` with Discord's `retry_after` (fractional seconds, rounded up);
    /// * 401 → `CredentialRejected` (the token is wrong or was reset);
    /// * 403 Missing Access / Missing Permissions / cannot send to this user, 404 Unknown
    ///   Channel / Unknown Guild → `ChatGone` (stop sending there, other chats continue);
    /// * other 4xx → `Rejected` (this request can never succeed);
    /// * 5xx and network trouble → `Transient`.
    pub fn classify(&self) -> SendFailure {
        let what = format!("{} {} (code {})", self.status, self.message, self.code);
        match self.status {
            429 => SendFailure::RetryAfter { retry_after_ms: self.retry_after_ms.unwrap_or(1000).max(1) },
            401 => SendFailure::CredentialRejected(what),
            // 50001 Missing Access, 50013 Missing Permissions, 50007 cannot message this user…
            403 => SendFailure::ChatGone(what),
            404 if matches!(self.code, 10003 | 10004) => SendFailure::ChatGone(what),
            400..=499 => SendFailure::Rejected(what),
            _ => SendFailure::Transient(what),
        }
    }
}

/// The REST side of one bot.
pub struct Rest {
    client: reqwest::Client,
    /// `Bot <token>`, as serenity formats it.
    auth: String,
    /// Base-URL override (`http://127.0.0.1:PORT` for a fake), `None` for discord.com.
    proxy: Option<String>,
    /// Buckets Discord reported spent, and until when.
    exhausted: Mutex<HashMap<RatelimitingBucket, std::time::Instant>>,
}

impl Rest {
    pub fn new(client: reqwest::Client, auth: String, proxy: Option<String>) -> Rest {
        Rest { client, auth, proxy, exhausted: Mutex::new(HashMap::new()) }
    }

    /// Perform one call; `Ok(Value::Null)` for a 204.
    ///
    /// Pacing comes from Discord itself: when an answer says its bucket is spent
    /// (`X-RateLimit-Remaining: 0`), the next call on that bucket (per route and channel, as
    /// serenity keys them) is not sent before `X-RateLimit-Reset-After`; it fails at once as a
    /// 429-like `retry_after` instead, so the durable outbox waits and keeps the chat's order.
    /// Discord's limits (≈ 5 messages per 5 s per channel) thus hold without a 429 round trip.
    pub async fn call(&self, method: LightMethod, route: Route<'_>, body: Option<&Value>) -> Result<Value, ApiFailure> {
        let net = |e: String| ApiFailure { status: 0, code: 0, message: e, retry_after_ms: None };
        let bucket = route.ratelimiting_bucket();
        let now = std::time::Instant::now();
        if let Some(until) = self.exhausted.lock().unwrap().get(&bucket).copied().filter(|u| *u > now) {
            let ms = (until - now).as_millis() as i64 + 1;
            return Err(ApiFailure { status: 429, code: 0, message: "rate limit bucket spent (X-RateLimit-Remaining: 0)".into(), retry_after_ms: Some(ms) });
        }
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON body"));
        let req = Request::new(route, method)
            .body(bytes)
            .build(&self.client, &self.auth, self.proxy.as_deref())
            .map_err(|e| net(format!("cannot build the request: {e}")))?;
        // reqwest errors can include the URL, never the Authorization header: safe to report.
        let resp = req.send().await.map_err(|e| net(format!("network: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
        let retry_header = header("retry-after");
        {
            let mut ex = self.exhausted.lock().unwrap();
            match (header("x-ratelimit-remaining"), header("x-ratelimit-reset-after")) {
                (Some(r), Some(after)) if r <= 0.0 && after > 0.0 => {
                    ex.insert(bucket, std::time::Instant::now() + std::time::Duration::from_secs_f64(after.min(3600.0)));
                }
                _ => {
                    ex.remove(&bucket);
                }
            }
        }
        let text = resp.text().await.map_err(|e| net(format!("network: {}", e.without_url())))?;
        let json: Value = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        // Discord's body has the precise value (fractional seconds); the header is whole seconds.
        let retry = json.get("retry_after").and_then(Value::as_f64).or(retry_header);
        Err(ApiFailure {
            status,
            code: json.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: json.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            retry_after_ms: retry.map(|s| (s * 1000.0).ceil() as i64),
        })
    }

    /// Perform one call and decode the answer into a serenity model.
    pub async fn call_as<T: serde::de::DeserializeOwned>(&self, method: LightMethod, route: Route<'_>, body: Option<&Value>) -> Result<T, ApiFailure> {
        let v = self.call(method, route, body).await?;
        serde_json::from_value(v).map_err(|e| ApiFailure { status: 200, code: 0, message: format!("unexpected answer: {e}"), retry_after_ms: None })
    }
}
