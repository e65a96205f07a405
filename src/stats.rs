//! Small summary statistics shared by the commands' reports.

/// Median of a sorted, non-empty slice (the mean of the two middle values for an even length).
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}
