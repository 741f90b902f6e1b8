//! A fixed-size latency histogram: a count per bucket, a total count and a
//! sum, as Prometheus histograms report them. No allocation, so it can sit
//! in the broker's counters and be copied across threads.

use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds, with their Prometheus `le`
/// label (seconds). An `fdatasync` takes about 0.1 ms on a fast SSD and
/// tens of milliseconds on an SD card; the last bounds catch a stalled
/// disk. A last, unbounded bucket (`+Inf`) follows.
pub const BOUNDS: [(u64, &str); 16] = [
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (10_000_000_000, "10"),
];

/// Durations counted into [`BOUNDS`] buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [u64; BOUNDS.len() + 1],
    count: u64,
    /// Total of the durations observed, in nanoseconds (saturating: 584
    /// years).
    sum_nanos: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS
            .iter()
            .position(|&(bound, _)| nanos <= bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    /// Durations observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their total, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// `(le label, durations at or below it)` for every bucket, cumulative
    /// as Prometheus wants, ending with `("+Inf", count)`.
    pub fn cumulative(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let les = BOUNDS.iter().map(|&(_, le)| le).chain(["+Inf"]);
        les.zip(self.buckets.iter().scan(0u64, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50)); // exactly the first bound
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60)); // past the last bound
        let got: Vec<(&str, u64)> = h.cumulative().collect();
        assert_eq!(got.len(), BOUNDS.len() + 1);
        assert_eq!(got[0], ("0.00005", 1));
        assert_eq!(got[1], ("0.0001", 2));
        assert_eq!(got[5], ("0.0025", 2));
        assert_eq!(got[6], ("0.005", 3));
        assert_eq!(got[BOUNDS.len() - 1], ("10", 3));
        assert_eq!(got[BOUNDS.len()], ("+Inf", 4));
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 60.003101).abs() < 1e-9);
    }

    #[test]
    fn bounds_ascend_and_labels_match() {
        for w in BOUNDS.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        for (nanos, le) in BOUNDS {
            let secs: f64 = le.parse().unwrap();
            assert_eq!((secs * 1e9).round() as u64, nanos, "{le}");
        }
    }
}
