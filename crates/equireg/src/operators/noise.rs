//! Measurement noise `y + n`, drawn on the CPU from a seed with the project's Philox4x32-10, so a
//! (measurement, seed) pair always gives the same noisy measurement. Also home of the sequential
//! Philox stream the operators draw their random parameters from (motion-blur trajectories,
//! inpainting masks).
//!
//! Draws, all keyed by the caller's seed:
//! - Gaussian: element `i` adds `sigma * z_i` with `z` = [`rng::normal`]`(n, seed,`
//!   [`GAUSSIAN_STREAM`]`, 0)`, the same numbers the GPU's `rng_normal` gives for that stream.
//! - Poisson: element `i` runs its own `PhiloxStream` (`seed`, [`POISSON_STREAM`], `i`), so an
//!   element's draw does not depend on how many uniforms the others consumed.

use equireg_gpu::reference::rng::{self, philox4x32_10};

use crate::{Error, Result};

/// Philox stream of Gaussian measurement noise (counter word 1).
pub const GAUSSIAN_STREAM: u32 = 0x6e6f_6701;
/// Philox stream of Poisson measurement noise.
pub const POISSON_STREAM: u32 = 0x6e6f_6702;

/// Measurement noise, in the [-1, 1] units of the images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    None,
    /// `y + sigma * z`, z standard normal (DPS's GaussianNoise; its configs use sigma 0.05).
    Gaussian {
        sigma: f64,
    },
    /// DPS's PoissonNoise: with `x01 = clamp((y + 1) / 2, 0, 1)`, the result is
    /// `clamp(Poisson(x01 * 255 * rate) / (255 * rate) * 2 - 1, -1, 1)`.
    Poisson {
        rate: f64,
    },
}

impl Noise {
    /// Fails on a negative or non-finite sigma, or a rate that is not positive and finite.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Noise::None => Ok(()),
            Noise::Gaussian { sigma } if sigma.is_finite() && sigma >= 0.0 => Ok(()),
            Noise::Gaussian { sigma } => Err(Error::invalid(format!(
                "Gaussian noise sigma must be finite and >= 0, got {sigma}"
            ))),
            Noise::Poisson { rate } if rate.is_finite() && rate > 0.0 => Ok(()),
            Noise::Poisson { rate } => Err(Error::invalid(format!(
                "Poisson noise rate must be finite and > 0, got {rate}"
            ))),
        }
    }

    /// The noise's standard deviation in [-1, 1] units, for solvers whose step sizes follow it
    /// (DiffPIR): sigma for Gaussian noise; for Poisson noise its value at mid-gray,
    /// `2 sqrt(0.5 / (255 rate))` (the std of `Poisson(lambda) / scale` is `sqrt(lambda) / scale`).
    pub fn std(&self) -> f64 {
        match *self {
            Noise::None => 0.0,
            Noise::Gaussian { sigma } => sigma,
            Noise::Poisson { rate } => 2.0 * (0.5 / (255.0 * rate)).sqrt(),
        }
    }

    /// The noisy measurement, deterministic in `seed`. Parameters are assumed valid (see
    /// [`Noise::validate`]).
    pub fn apply_cpu(&self, y: &[f32], seed: u64) -> Vec<f32> {
        match *self {
            Noise::None => y.to_vec(),
            Noise::Gaussian { sigma } => {
                let z = rng::normal(y.len(), seed, GAUSSIAN_STREAM, 0);
                y.iter()
                    .zip(z)
                    .map(|(&v, z)| (v as f64 + sigma * z as f64) as f32)
                    .collect()
            }
            Noise::Poisson { rate } => {
                let scale = 255.0 * rate;
                y.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let x01 = ((v as f64 + 1.0) / 2.0).clamp(0.0, 1.0);
                        let sub = u32::try_from(i).expect("at most 2^32 measurement elements");
                        let mut s = PhiloxStream::new(seed, POISSON_STREAM, sub);
                        let k = poisson(x01 * scale, &mut s);
                        (k / scale * 2.0 - 1.0).clamp(-1.0, 1.0) as f32
                    })
                    .collect()
            }
        }
    }
}

/// A sequential source of random numbers: the Philox4x32-10 blocks
/// `philox4x32_10([block, stream, sub, 1], [seed_lo, seed_hi])` for block = 0, 1, 2, ... read
/// word by word. The last counter word 1 keeps these apart from the element-indexed draws of
/// [`rng`] (which use 0 there), so any (stream, sub) pair is safe to use.
pub(crate) struct PhiloxStream {
    key: [u32; 2],
    stream: u32,
    sub: u32,
    block: u32,
    words: [u32; 4],
    used: usize,
}

impl PhiloxStream {
    pub(crate) fn new(seed: u64, stream: u32, sub: u32) -> Self {
        PhiloxStream {
            key: [seed as u32, (seed >> 32) as u32],
            stream,
            sub,
            block: 0,
            words: [0; 4],
            used: 4,
        }
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.words = philox4x32_10([self.block, self.stream, self.sub, 1], self.key);
            self.block = self.block.wrapping_add(1);
            self.used = 0;
        }
        self.used += 1;
        self.words[self.used - 1]
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A uniform integer in [0, n), exactly (multiply-shift with rejection of the biased zone).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let zone = n.wrapping_neg() % n; // 2^64 mod n
        loop {
            let m = self.next_u64() as u128 * n as u128;
            if (m as u64) >= zone {
                return (m >> 64) as u64;
            }
        }
    }

    /// Gamma(k, 1) for an integer shape k >= 1, as a sum of k exponentials.
    fn gamma_int(&mut self, k: u32) -> f64 {
        (0..k).map(|_| -(1.0 - self.uniform()).ln()).sum()
    }

    /// Beta(a, b) for integer a, b >= 1, as G_a / (G_a + G_b).
    pub(crate) fn beta_int(&mut self, a: u32, b: u32) -> f64 {
        let x = self.gamma_int(a);
        let y = self.gamma_int(b);
        x / (x + y)
    }

    /// numpy's `triangular(left, mode, right)` by inversion of the CDF.
    pub(crate) fn triangular(&mut self, left: f64, mode: f64, right: f64) -> f64 {
        let u = self.uniform();
        let base = right - left;
        let cut = (mode - left) / base;
        if u <= cut {
            left + (u * base * (mode - left)).sqrt()
        } else {
            right - ((1.0 - u) * base * (right - mode)).sqrt()
        }
    }
}

/// ln Gamma(x) for x >= 1: the Stirling series to x^-7 (error about 1e-14 from x = 16 on),
/// after raising small arguments with Gamma(x) = Gamma(x + 1) / x.
fn ln_gamma(x: f64) -> f64 {
    let mut shift = 0.0;
    let mut x = x;
    while x < 16.0 {
        shift -= x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series =
        inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0))));
    shift + (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
}

/// One Poisson(lambda) draw, exact up to f64 rounding:
/// - lambda < 10: inversion, walking the CDF from k = 0 with one uniform;
/// - lambda >= 10: Hörmann's transformed rejection with squeeze, PTRS ("The transformed rejection
///   method for generating Poisson random variables", Insurance: Mathematics and Economics 12,
///   1993), the method numpy uses in this range; acceptance is above 0.9 per try.
fn poisson(lambda: f64, s: &mut PhiloxStream) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda < 10.0 {
        let u = s.uniform();
        let mut p = (-lambda).exp();
        let mut cdf = p;
        let mut k = 0u32;
        // The tail past k = 200 has mass below 1e-150 for lambda < 10.
        while u >= cdf && k < 200 {
            k += 1;
            p *= lambda / k as f64;
            cdf += p;
        }
        return k as f64;
    }
    let slam = lambda.sqrt();
    let loglam = lambda.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let v_r = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = s.uniform() - 0.5;
        let v = s.uniform();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= v_r {
            return k;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let lhs = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
        if lhs <= -lambda + k * loglam - ln_gamma(k + 1.0) {
            return k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..40u32 {
            f *= n as f64;
            let want = f.ln();
            let got = ln_gamma(n as f64 + 1.0);
            assert!(
                (got - want).abs() < 1e-12 * want.max(1.0),
                "{n}: {got} vs {want}"
            );
        }
        // Gamma(1/2 + 8) from Gamma(1/2) = sqrt(pi) by the recurrence.
        let mut g = std::f64::consts::PI.sqrt();
        for i in 0..8 {
            g *= 0.5 + i as f64;
        }
        assert!((ln_gamma(8.5) - g.ln()).abs() < 1e-12);
        // Far from the shift, Stirling alone: ln Gamma(101) = ln(100!).
        let want: f64 = (1..=100).map(|i| (i as f64).ln()).sum();
        assert!((ln_gamma(101.0) - want).abs() < 1e-10);
    }

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut s = PhiloxStream::new(7, 1, 0);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[s.below(7) as usize] += 1;
        }
        // Each count ~ Binomial(70000, 1/7): mean 10000, sd ~93.
        assert!(
            counts.iter().all(|&c| (c as i64 - 10_000).abs() < 500),
            "{counts:?}"
        );
    }

    #[test]
    fn beta_and_triangular_have_their_means() {
        let mut s = PhiloxStream::new(11, 2, 0);
        let n = 40_000;
        let m: f64 = (0..n).map(|_| s.beta_int(2, 20)).sum::<f64>() / n as f64;
        // Beta(2, 20): mean 1/11, sd 0.06; 5 standard errors.
        assert!(
            (m - 1.0 / 11.0).abs() < 5.0 * 0.06 / (n as f64).sqrt(),
            "{m}"
        );
        let m: f64 = (0..n).map(|_| s.triangular(0.0, 0.3, 2.0)).sum::<f64>() / n as f64;
        // Triangular(0, 0.3, 2): mean 2.3 / 3, sd ~0.42.
        assert!(
            (m - 2.3 / 3.0).abs() < 5.0 * 0.42 / (n as f64).sqrt(),
            "{m}"
        );
    }
}
