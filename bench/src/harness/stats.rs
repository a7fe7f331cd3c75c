//! The one place for order statistics of measurements: median, min, max, mean, percentile.

use std::cmp::Ordering;

/// Median (mean of the two middle values for an even count); NaN when `v` is empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let s = sorted(v);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Smallest value (+inf when `v` is empty).
pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Largest value (-inf when `v` is empty).
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Arithmetic mean; NaN when `v` is empty.
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The value at rank `round((n - 1) × p)` of the sorted values (nearest rank, no
/// interpolation: `percentile(v, 0.5)` of an even count is the upper middle value).
/// NaN when `v` is empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let s = sorted(v);
    s[((s.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// The element of `items` whose `key` is the median by rank (`sorted[n / 2]`, the upper middle
/// one for an even count), so the result is one real measurement. None when `items` is empty.
pub fn median_by<T: Clone>(items: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut v = items.to_vec();
    v.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(Ordering::Equal));
    v.get(v.len() / 2).cloned()
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min(&[2.0, 1.0, 3.0]), 1.0);
        assert_eq!(max(&[2.0, 1.0, 3.0]), 3.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(percentile(&[4.0, 1.0, 2.0, 3.0], 0.5), 3.0);
        assert_eq!(percentile(&[5.0, 1.0, 2.0, 3.0, 4.0], 0.9), 5.0);
        assert_eq!(median_by(&[(1, 3.0), (2, 1.0), (3, 2.0)], |x| x.1), Some((3, 2.0)));
    }
}
