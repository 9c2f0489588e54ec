//! Exponential backoff, one policy for every retry: [`backon`]'s (the crate kube-runtime
//! retries with too), without jitter, doubling from a first delay up to a cap.

use std::time::Duration;

pub use backon::Retryable;
use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays that start at `first` and double up to `max`, for as many tries as it takes:
/// `(|| call()).retry(exponential(first, max)).notify(log).await`.
pub fn exponential(first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .without_max_times()
}

/// The wait after `failures` failures in a row of one thing, for callers that keep the
/// count rather than a running retry: 1 → `first`, 2 → twice that, ..., at most `max`.
pub fn delay(first: Duration, max: Duration, failures: u32) -> Duration {
    // 64 doublings take any first delay past any cap.
    let n = failures.saturating_sub(1).min(64) as usize;
    exponential(first, max).build().nth(n).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_cap() {
        let s = Duration::from_secs;
        let delays: Vec<Duration> = [0, 1, 2, 3, 9, 10, 11, u32::MAX]
            .iter()
            .map(|&n| delay(s(1), s(300), n))
            .collect();
        assert_eq!(delays, [s(1), s(1), s(2), s(4), s(256), s(300), s(300), s(300)]);
        let retries: Vec<Duration> = exponential(Duration::from_millis(500), s(15)).build().take(7).collect();
        assert_eq!(
            retries,
            [Duration::from_millis(500), s(1), s(2), s(4), s(8), s(15), s(15)]
        );
    }
}
