//! How long to sleep between two `squeue` polls.
//!
//! Fast while jobs change state (a short stage is seen finished within a fraction of a second),
//! slower while nothing happens (hours-long training jobs should not make a shared cluster's
//! controller answer several queries a second).

use std::time::Duration;

/// Poll interval that backs off geometrically while no job changes state and returns to its
/// minimum as soon as one does.
#[derive(Debug, Clone)]
pub struct PollInterval {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Default for PollInterval {
    /// 0.25 s after a change, growing by 1.5x per quiet poll up to 5 s (reached after ~25 s
    /// without change).
    fn default() -> PollInterval {
        PollInterval::new(Duration::from_millis(250), Duration::from_secs(5))
    }
}

impl PollInterval {
    pub fn new(min: Duration, max: Duration) -> PollInterval {
        let max = max.max(min);
        PollInterval {
            min,
            max,
            current: min,
        }
    }

    /// The sleep before the next poll, given whether the poll just made changed anything
    /// (a job submitted, started or finished).
    pub fn next(&mut self, changed: bool) -> Duration {
        if changed {
            self.current = self.min;
        } else {
            self.current = (self.current * 3 / 2).min(self.max);
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_to_the_maximum_and_resets_on_change() {
        let mut p = PollInterval::new(Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(p.next(true), Duration::from_millis(200));
        assert_eq!(p.next(false), Duration::from_millis(300));
        assert_eq!(p.next(false), Duration::from_millis(450));
        assert_eq!(p.next(false), Duration::from_millis(675));
        assert_eq!(p.next(false), Duration::from_secs(1));
        assert_eq!(p.next(false), Duration::from_secs(1));
        assert_eq!(p.next(true), Duration::from_millis(200));
    }
}
