//! Checks of numeric command-line settings, shared by every subcommand, so that each refuses
//! NaN, infinity and out-of-range values the same way, naming the option.

use anyhow::bail;

/// A finite number >= 0.
pub fn non_negative(option: &str, v: f64) -> anyhow::Result<f64> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{option} {v}: expected a finite number >= 0");
    }
    Ok(v)
}

/// A count of at least 1.
pub fn at_least_one(option: &str, v: usize) -> anyhow::Result<usize> {
    if v == 0 {
        bail!("{option} must be at least 1");
    }
    Ok(v)
}

/// An image side: at least 1, at most the engine's largest side.
pub fn side(option: &str, v: usize) -> anyhow::Result<usize> {
    if v == 0 || v > equireg::images::MAX_SIDE {
        bail!(
            "{option} {v}: expected an image side from 1 to {}",
            equireg::images::MAX_SIDE
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_negative_values_name_the_option() {
        for v in [f64::NAN, f64::INFINITY, -1.0] {
            let e = non_negative("--eta", v).unwrap_err().to_string();
            assert!(e.starts_with("--eta"), "{e}");
        }
        assert_eq!(non_negative("--eta", 0.5).unwrap(), 0.5);
        assert!(at_least_one("--batch", 0).is_err());
        assert!(side("--size", 0).is_err());
        assert!(side("--size", 1 << 30).is_err());
    }
}
