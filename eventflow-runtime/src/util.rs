//! Small helpers every layer uses: the boxed future type, the wall clock in milliseconds,
//! the lock idiom for state that stays consistent when a holder panics, and the lock-free
//! slot for the first key of a map most callers ask for.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// A boxed, sendable future: what trait methods of eventflow return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Milliseconds since the Unix epoch of `t` (0 before the epoch, saturating far after it).
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// Locks `m`. Every critical section of the crate leaves its state consistent at each
/// step (a few assignments, a push or a remove), so a lock poisoned by a panic elsewhere
/// still guards consistent data and is taken as it is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The value of the first key asked for, found without a lock: a fast path in front of a
/// map, for callers that ask for one key far more than for the others.
pub(crate) struct FirstKey<K, V>(std::sync::OnceLock<(K, V)>);

impl<K, V> Default for FirstKey<K, V> {
    fn default() -> Self {
        FirstKey(std::sync::OnceLock::new())
    }
}

impl<K, V> FirstKey<K, V> {
    /// The value when `key` is the first key (made by `make` on the very first call, for
    /// whatever key that call asks for); `None` for any other key.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        let (first, value) = self.0.get_or_init(make);
        (first.borrow() == key).then_some(value)
    }
}

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;

/// Reads the clock that times handler attempts and pipeline steps (the TSC where it is
/// steady, the monotonic clock elsewhere), so that its one-time calibration (under a
/// millisecond) happens when a bus or pipeline is built, not in its first delivery.
pub(crate) fn calibrate_clock() {
    let _ = clock();
}

/// The clock that times handler attempts and pipeline steps.
pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// The time since `t0`, read on [`clock`] (where `t0` was read).
pub(crate) fn since(t0: quanta::Instant) -> std::time::Duration {
    clock().now().saturating_duration_since(t0)
}

/// How long a thread's anchor of the wall clock on [`clock`] is used before it is read
/// again: the most a step of the system clock (an NTP correction) goes unseen.
const WALL_ANCHOR_TTL: std::time::Duration = std::time::Duration::from_millis(100);

thread_local! {
    static WALL_ANCHOR: Cell<Option<(quanta::Instant, std::time::SystemTime)>> =
        const { Cell::new(None) };
}

/// The wall clock at `at` (an instant read on [`clock`] just now): the thread's last
/// reading of the system clock plus the steady time since, reading the system clock
/// again at most every [`WALL_ANCHOR_TTL`]. One steady read instead of a wall read on
/// the hot path; it agrees with `SystemTime::now()` to within the steady clock's drift
/// over 100 ms (microseconds) and sees a step of the system clock within 100 ms.
pub(crate) fn wall_at(at: quanta::Instant) -> std::time::SystemTime {
    WALL_ANCHOR.with(|a| {
        if let Some((q, wall)) = a.get()
            && let Some(d) = at.checked_duration_since(q)
            && d < WALL_ANCHOR_TTL
        {
            return wall + d;
        }
        let wall = std::time::SystemTime::now();
        a.set(Some((at, wall)));
        wall
    })
}

/// The wall clock now, by [`wall_at`].
pub(crate) fn wall_now() -> std::time::SystemTime {
    wall_at(clock().now())
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now();
    foldhash::fast::RandomState::default().hash_one((t, std::thread::current().id()))
}

/// A random non-zero id (wyrand on a per-thread state: fast, not for secrets).
pub(crate) fn random_u64() -> u64 {
    RNG.with(|s| {
        loop {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let m = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
            let v = (m as u64) ^ ((m >> 64) as u64);
            if v != 0 {
                return v;
            }
        }
    })
}

/// A random non-zero 128-bit id.
pub(crate) fn random_u128() -> u128 {
    (u128::from(random_u64()) << 64) | u128::from(random_u64())
}

/// Shows an id as lowercase hex of its W3C width.
pub(crate) struct Hex<T>(pub(crate) T);

impl fmt::Display for Hex<u64> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for Hex<u128> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_zero_and_differ() {
        let a: Vec<u64> = (0..1000).map(|_| random_u64()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), 1000);
        assert!(a.iter().all(|&x| x != 0));
        assert_eq!(format!("{}", Hex(1u64)), "0000000000000001");
        assert_eq!(format!("{}", Hex(1u128)).len(), 32);
    }
}
