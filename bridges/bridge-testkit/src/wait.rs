//! The blocking wait both fakes offer their tests: re-check a predicate whenever the fake's
//! state changes (its version counter moves), never holding the state lock while checking.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Wait until `pred` holds; false once `timeout` passed. `version` reads the state's change
/// counter, which every mutation bumps before notifying `changed`.
pub(crate) fn until<S>(state: &Mutex<S>, changed: &Condvar, version: impl Fn(&S) -> u64, timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = version(&state.lock().unwrap_or_else(|e| e.into_inner()));
        if pred() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let guard = state.lock().unwrap_or_else(|e| e.into_inner());
        if version(&guard) == seen {
            // Bounded, so a change that bumps no version (a clock-driven one) is seen too.
            let _ = changed.wait_timeout(guard, (deadline - now).min(Duration::from_millis(50)));
        }
    }
}
