//! The wall clock, in the unit our records use, and the deadline of an invocation.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// When an invocation must be finished: Lambda's deadline for it, or none (a test, a
/// function run by hand). Work that might not finish in time asks for a budget that
/// keeps a margin for what must still happen afterwards (the last attempt's apology).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub const NONE: Deadline = Deadline(None);

    /// Lambda's deadline for the invocation (`Context::deadline`, Unix milliseconds).
    ///
    /// A deadline that has already passed when the invocation starts is no deadline:
    /// Lambda never hands out such an invocation, and emulators do (`cargo lambda
    /// watch` sends the constant 600000, the first ten minutes of 1970).
    pub fn at_unix_ms(deadline_ms: u64) -> Self {
        let left = i64::try_from(deadline_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(now_ms());
        match u64::try_from(left) {
            Ok(left) if left > 0 => Self::after(Duration::from_millis(left)),
            _ => Deadline::NONE,
        }
    }

    /// A deadline `left` from now.
    pub fn after(left: Duration) -> Self {
        Deadline(Some(Instant::now() + left))
    }

    /// The same deadline brought forward by `margin`, for work that must leave time for
    /// what follows it.
    pub fn keeping(&self, margin: Duration) -> Self {
        Deadline(
            self.0
                .map(|at| at.checked_sub(margin).unwrap_or_else(Instant::now).min(at)),
        )
    }

    /// The time left, `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// At most `want`, and no more than what is left once `margin` is kept.
    pub fn budget(&self, want: Duration, margin: Duration) -> Duration {
        match self.remaining() {
            Some(left) => want.min(left.saturating_sub(margin)),
            None => want,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_keeps_the_margin_and_never_exceeds_what_is_asked() {
        let want = Duration::from_secs(60);
        let margin = Duration::from_secs(10);
        assert_eq!(Deadline::NONE.budget(want, margin), want);
        let soon = Deadline::after(Duration::from_secs(30)).budget(want, margin);
        assert!(soon <= Duration::from_secs(20) && soon > Duration::from_secs(19));
        assert_eq!(
            Deadline::after(Duration::from_secs(5)).budget(want, margin),
            Duration::ZERO
        );
        let lambda = Deadline::at_unix_ms(u64::try_from(now_ms()).unwrap() + 90_000);
        assert!(lambda.remaining().unwrap() > Duration::from_secs(85));
        assert_eq!(
            Deadline::at_unix_ms(600_000),
            Deadline::NONE,
            "a deadline already past is an emulator's placeholder"
        );
    }
}
