//! Errors of a reconstructed field against the truth (physical units, one case `[2, H, W]`).

use serde::Serialize;

/// `||pred - truth||_2 / ||truth||_2` over one channel's plane (f64 sums). Infinite when the
/// truth is zero and the prediction is not, 0 when both are.
pub fn relative_l2(pred: &[f32], truth: &[f32]) -> f64 {
    assert_eq!(pred.len(), truth.len());
    let (num, den) = pred
        .iter()
        .zip(truth)
        .fold((0f64, 0f64), |(n, d), (&p, &t)| {
            let (p, t) = (p as f64, t as f64);
            (n + (p - t) * (p - t), d + t * t)
        });
    if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (num / den).sqrt()
    }
}

/// The fraction of pixels on the other side of `threshold` from the truth (Darcy's a: 7.5,
/// between its values 3 and 12).
pub fn error_rate(pred: &[f32], truth: &[f32], threshold: f64) -> f64 {
    assert_eq!(pred.len(), truth.len());
    if pred.is_empty() {
        return 0.0;
    }
    let wrong = pred
        .iter()
        .zip(truth)
        .filter(|(p, t)| (**p as f64 >= threshold) != (**t as f64 >= threshold))
        .count();
    wrong as f64 / pred.len() as f64
}

/// One row of `metrics.json` / `metrics.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct CaseMetrics {
    /// The case folder's name (`case-0000`, ...).
    pub case: String,
    /// The case's index in the input file.
    pub index: usize,
    /// `dps`, `equireg`, ...
    pub method: String,
    pub rel_l2_a: f64,
    pub rel_l2_u: f64,
    /// Darcy only: [`error_rate`] of the coefficient at 7.5.
    pub error_rate_a: Option<f64>,
}

impl CaseMetrics {
    /// The metrics of `pred` against `truth`, both `[2, H, W]` physical.
    pub fn of(
        case: &str,
        index: usize,
        method: &str,
        pred: &[f32],
        truth: &[f32],
        threshold: Option<f64>,
    ) -> CaseMetrics {
        let plane = truth.len() / 2;
        CaseMetrics {
            case: case.to_string(),
            index,
            method: method.to_string(),
            rel_l2_a: relative_l2(&pred[..plane], &truth[..plane]),
            rel_l2_u: relative_l2(&pred[plane..], &truth[plane..]),
            error_rate_a: threshold.map(|t| error_rate(&pred[..plane], &truth[..plane], t)),
        }
    }
}
