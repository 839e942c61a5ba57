//! The timer's schedule: when the next tick is due.
//!
//! Ticks are due at fixed points `start + n * interval`, so the schedule never drifts however
//! long each tick takes to start. When a tick overruns one or more later due points, those points
//! are skipped and the next tick waits for the first due point still ahead. Python Nameko instead
//! fires every missed tick back to back until it catches up; a burst of catch-up ticks is rarely
//! what a periodic job wants (it repeats work that was just done), so nameko-rs runs at most one
//! tick per interval and keeps the original phase.

use std::time::Duration;

use tokio::time::Instant;

/// A fixed-phase schedule of ticks.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    start: Instant,
    interval: Duration,
    /// Index of the next tick: it is due at `start + next * interval`.
    next: u32,
}

impl Schedule {
    /// A schedule starting at `start`; an eager one is due at once, otherwise after an interval.
    pub(crate) fn new(start: Instant, interval: Duration, eager: bool) -> Self {
        Self {
            start,
            interval,
            next: u32::from(!eager),
        }
    }

    /// When the next tick is due.
    pub(crate) fn next_due(&self) -> Instant {
        self.start + self.interval.saturating_mul(self.next)
    }

    /// Records that the tick that was due has finished at `now`, and moves to the first due point
    /// after it that is not already in the past.
    pub(crate) fn finished(&mut self, now: Instant) {
        self.next = self.next.saturating_add(1);
        if self.interval.is_zero() {
            return;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let behind = elapsed.as_nanos().div_ceil(self.interval.as_nanos());
        let first_ahead = u32::try_from(behind).unwrap_or(u32::MAX);
        self.next = self.next.max(first_ahead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_points_keep_their_phase_and_skip_what_was_overrun() {
        let start = Instant::now();
        let s = Duration::from_secs(1);
        let mut schedule = Schedule::new(start, s, false);
        assert_eq!(schedule.next_due(), start + s);
        // A quick tick: the next is one interval on, measured from the start, not from now.
        schedule.finished(start + Duration::from_millis(1300));
        assert_eq!(schedule.next_due(), start + 2 * s);
        // A tick that ends at 4.5 s overran the points at 3 s and 4 s: the next is at 5 s.
        schedule.finished(start + Duration::from_millis(4500));
        assert_eq!(schedule.next_due(), start + 5 * s);
        // Ending exactly on a due point runs that point.
        schedule.finished(start + 6 * s);
        assert_eq!(schedule.next_due(), start + 6 * s);
    }

    #[test]
    fn an_eager_schedule_is_due_at_once() {
        let start = Instant::now();
        let schedule = Schedule::new(start, Duration::from_secs(5), true);
        assert_eq!(schedule.next_due(), start);
    }
}
