//! Pacing: stay under the platform's send limits instead of collecting 429s.
//!
//! Telegram documents (bridges.md §3.9): about 1 message per second per chat, 20 messages per
//! minute per group chat, 30 messages per second overall. [`Pacer::telegram`] enforces all three.
//! Discord's REST limits are per route bucket and are handled by its HTTP client, so Discord needs
//! no pacer; a 429 that still happens goes through the outbox's `retry_after` path either way.
//!
//! Each limit is a token bucket in its GCRA form ("virtual scheduling"): the bucket keeps a
//! theoretical arrival time `tat`; a send at `t` conforms when `t >= tat - tau`, and then
//! `tat = max(tat, t) + interval`. With `burst` B and `interval` T, no window of length W admits
//! more than `B + W/T` sends, so [`TokenBucket::at_most`]`(n, window, 1)` picks
//! `T = window / (n - 1)` (rounded up to the microsecond): never more than `n` per window, with
//! a sustained rate just under the cap. Integer microseconds keep it exact and deterministic.
//!
//! Everything is pure: time comes in as `now_ms`. [`Pacer::try_acquire`] is all-or-nothing: it
//! consumes from every applicable bucket or from none and says how long to wait. A clock that
//! steps backwards never makes a bucket wait longer than one full burst.

use std::collections::HashMap;

/// One GCRA token bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    interval_us: i64,
    tau_us: i64,
    tat_us: i64,
}

impl TokenBucket {
    /// A bucket of `burst` tokens refilled one per `interval_ms`.
    pub fn new(burst: u32, interval_ms: i64) -> TokenBucket {
        let interval_us = interval_ms.max(1) * 1000;
        TokenBucket { interval_us, tau_us: interval_us * (burst.max(1) as i64 - 1), tat_us: i64::MIN / 2 }
    }

    /// A bucket that admits at most `n` sends in any window of `window_ms`, with `burst`
    /// back-to-back sends (`1 <= burst < n`).
    pub fn at_most(n: u32, window_ms: i64, burst: u32) -> TokenBucket {
        let burst = burst.clamp(1, n.saturating_sub(1).max(1));
        let spread = (n - burst).max(1) as i64;
        let interval_us = (window_ms * 1000 + spread - 1) / spread;
        TokenBucket { interval_us, tau_us: interval_us * (burst as i64 - 1), tat_us: i64::MIN / 2 }
    }

    fn clamp_backwards(&mut self, t: i64) {
        // Normally tat - t <= tau + interval; more means the clock stepped back.
        self.tat_us = self.tat_us.min(t + self.tau_us + self.interval_us);
    }

    /// Milliseconds until a send would conform (0 = now).
    pub fn wait_ms(&mut self, now_ms: i64) -> i64 {
        let t = now_ms * 1000;
        self.clamp_backwards(t);
        let wait_us = self.tat_us - self.tau_us - t;
        if wait_us <= 0 { 0 } else { (wait_us + 999) / 1000 }
    }

    /// Take a token if one is available now.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        if self.wait_ms(now_ms) > 0 {
            return false;
        }
        self.take(now_ms);
        true
    }

    fn take(&mut self, now_ms: i64) {
        let t = now_ms * 1000;
        self.tat_us = self.tat_us.max(t) + self.interval_us;
    }

    fn idle(&self, now_ms: i64) -> bool {
        self.tat_us <= now_ms * 1000
    }
}

/// The buckets of one chat.
#[derive(Clone, Debug)]
struct ChatBuckets {
    per_chat: TokenBucket,
    per_group: Option<TokenBucket>,
}

/// Global + per-chat (+ per-group) pacing.
#[derive(Clone, Debug)]
pub struct Pacer {
    global: TokenBucket,
    chat: TokenBucket,
    group: Option<TokenBucket>,
    chats: HashMap<String, ChatBuckets>,
}

/// Chat entries kept before idle ones are pruned.
const PRUNE_ABOVE: usize = 4096;

impl Pacer {
    /// `global` for all sends, `chat` per chat, `group` additionally per group chat.
    pub fn new(global: TokenBucket, chat: TokenBucket, group: Option<TokenBucket>) -> Pacer {
        Pacer { global, chat, group, chats: HashMap::new() }
    }

    /// Telegram: ≤ 30/s overall, ≥ 1 s between messages to one chat, ≤ 20/min to a group.
    pub fn telegram() -> Pacer {
        Pacer::new(TokenBucket::at_most(30, 1000, 1), TokenBucket::new(1, 1000), Some(TokenBucket::at_most(20, 60_000, 1)))
    }

    /// Take a send slot for `chat_key` now, or return how many milliseconds to wait.
    pub fn try_acquire(&mut self, chat_key: &str, is_group: bool, now_ms: i64) -> Result<(), i64> {
        if self.chats.len() > PRUNE_ABOVE {
            self.chats.retain(|_, b| !(b.per_chat.idle(now_ms) && b.per_group.as_ref().is_none_or(|g| g.idle(now_ms))));
        }
        let (chat_tpl, group_tpl) = (&self.chat, &self.group);
        let buckets = self
            .chats
            .entry(chat_key.to_string())
            .or_insert_with(|| ChatBuckets { per_chat: chat_tpl.clone(), per_group: if is_group { group_tpl.clone() } else { None } });
        let mut wait = self.global.wait_ms(now_ms).max(buckets.per_chat.wait_ms(now_ms));
        if let Some(g) = &mut buckets.per_group {
            wait = wait.max(g.wait_ms(now_ms));
        }
        if wait > 0 {
            return Err(wait);
        }
        self.global.take(now_ms);
        buckets.per_chat.take(now_ms);
        if let Some(g) = &mut buckets.per_group {
            g.take(now_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive `pacer` until `n` sends to `chats` (round-robin) went out; return send times.
    fn drive(pacer: &mut Pacer, chats: &[(&str, bool)], n: usize) -> Vec<(usize, i64)> {
        let mut now = 1_000_000;
        let mut sent = Vec::new();
        let mut next = 0;
        while sent.len() < n {
            let (key, group) = chats[next % chats.len()];
            match pacer.try_acquire(key, group, now) {
                Ok(()) => {
                    sent.push((next % chats.len(), now));
                    next += 1;
                }
                Err(wait) => {
                    assert!(wait > 0);
                    now += wait;
                }
            }
        }
        sent
    }

    fn max_in_window(times: &[i64], window: i64) -> usize {
        (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + window).count()).max().unwrap_or(0)
    }

    #[test]
    fn burst_of_fifty_to_one_group_is_paced_to_twenty_a_minute_without_loss() {
        let mut p = Pacer::telegram();
        let sent = drive(&mut p, &[("-100g", true)], 50);
        let times: Vec<i64> = sent.iter().map(|(_, t)| *t).collect();
        assert_eq!(times.len(), 50);
        assert!(max_in_window(&times, 60_000) <= 20, "{}", max_in_window(&times, 60_000));
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 1000));
        // Not needlessly slow either: 50 messages in under three minutes.
        assert!(times[49] - times[0] < 180_000);
    }

    #[test]
    fn private_chats_get_one_message_per_second() {
        let mut p = Pacer::telegram();
        let sent = drive(&mut p, &[("42", false)], 30);
        let times: Vec<i64> = sent.iter().map(|(_, t)| *t).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 1000));
        assert!(times[29] - times[0] <= 29 * 1000 + 29);
    }

    #[test]
    fn global_cap_holds_across_many_chats() {
        let mut p = Pacer::telegram();
        let keys: Vec<String> = (0..200).map(|i| format!("chat{i}")).collect();
        let chats: Vec<(&str, bool)> = keys.iter().map(|k| (k.as_str(), false)).collect();
        let sent = drive(&mut p, &chats, 600);
        let times: Vec<i64> = sent.iter().map(|(_, t)| *t).collect();
        assert!(max_in_window(&times, 1000) <= 30, "{}", max_in_window(&times, 1000));
        assert!(times[599] - times[0] < 25_000, "sustained rate close to the cap");
    }

    #[test]
    fn acquisition_is_all_or_nothing() {
        let mut p = Pacer::telegram();
        assert_eq!(p.try_acquire("a", false, 0), Ok(()));
        // Chat "a" must wait; that refusal must not consume a global token.
        assert!(p.try_acquire("a", false, 10).is_err());
        let mut global_only = TokenBucket::at_most(30, 1000, 1);
        global_only.take(0);
        assert_eq!(p.global, global_only);
    }

    #[test]
    fn bucket_math() {
        let mut b = TokenBucket::new(3, 1000);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert_eq!(b.wait_ms(0), 1000);
        assert!(!b.try_take(999));
        assert!(b.try_take(1000));
        assert_eq!(TokenBucket::at_most(20, 60_000, 1).interval_us, 3_157_895);
        // A clock that jumps back an hour never waits more than one interval.
        let mut b = TokenBucket::new(1, 1000);
        assert!(b.try_take(10_000_000));
        assert!(b.wait_ms(10_000_000 - 3_600_000) <= 1000);
    }
}
