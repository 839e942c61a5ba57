//! `Backoff`: how long to wait between attempts to reach the broker again.
//!
//! Exponential, capped and jittered, as every client of a shared broker should be: the first
//! retry is immediate (a broker that closed one connection usually takes the next at once), the
//! following ones double from [`Backoff::DEFAULT_FIRST`] up to [`Backoff::DEFAULT_MAX`], and
//! each delay is cut by a random part of up to a half, so that the many processes a broker
//! restart disconnects at the same instant do not all knock again at the same instants.
//!
//! The randomness comes from uuid v4, which this crate uses already, rather than another
//! dependency: jitter needs spread, not cryptographic quality.

use std::time::Duration;

/// Delays between reconnect attempts. Each consumer or publisher that recovers keeps one.
///
/// ```
/// use std::time::Duration;
/// use nameko_amqp::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.next_delay(), Duration::ZERO);
/// let second = backoff.next_delay();
/// assert!(second >= Duration::from_millis(50) && second <= Duration::from_millis(100));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::ZERO);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// Attempts handed a delay since the last reset.
    attempts: u32,
}

impl Backoff {
    /// The delay before the second attempt, before jitter.
    pub const DEFAULT_FIRST: Duration = Duration::from_millis(250);
    /// The longest delay between two attempts, before jitter.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(5);

    /// A backoff whose second attempt waits up to `first` and no attempt waits more than `max`.
    #[must_use]
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            attempts: 0,
        }
    }

    /// The delay before the next attempt: none for the first attempt, then `first`, doubling up
    /// to `max`, each reduced at random by up to a half.
    pub fn next_delay(&mut self) -> Duration {
        let attempt = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        if attempt == 0 {
            return Duration::ZERO;
        }
        let nominal = self.nominal(attempt);
        nominal.mul_f64(0.5 + 0.5 * unit_random())
    }

    /// Start again from an immediate attempt, after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// How many delays were handed out since the last reset, that is how many attempts were
    /// started.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before jitter for attempt number `attempt` (counted from 0).
    fn nominal(&self, attempt: u32) -> Duration {
        // 2^(attempt - 1) overflows nothing that matters: the cap is reached long before.
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.first.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_FIRST, Self::DEFAULT_MAX)
    }
}

/// A number in `[0, 1]`.
fn unit_random() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() & 0xFFFF_FFFF;
    // Both fit an f64 exactly, so the quotient is in [0, 1].
    f64::from(u32::try_from(bits).unwrap_or(u32::MAX)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_is_immediate_then_delays_double_up_to_the_cap() {
        let first = Duration::from_millis(100);
        let max = Duration::from_millis(700);
        let mut backoff = Backoff::new(first, max);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
        let nominal = [100, 200, 400, 700, 700, 700];
        for millis in nominal {
            let nominal = Duration::from_millis(millis);
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{delay:?} outside [{:?}, {nominal:?}]",
                nominal / 2
            );
        }
        assert_eq!(backoff.attempts(), 7);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        backoff.next_delay();
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 1, "twenty equal delays: {delays:?}");
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut backoff = Backoff::default();
        for _ in 0..1000 {
            assert!(backoff.next_delay() <= Backoff::DEFAULT_MAX);
        }
        let tiny_cap = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            tiny_cap.max,
            Duration::from_secs(2),
            "the cap is at least `first`"
        );
    }
}
