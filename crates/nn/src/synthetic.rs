//! Deterministic synthetic weights and inputs, bit-identical to tools/synthetic.py, so parity
//! fixtures of large networks need no weight files: both sides regenerate the same tensors from
//! (seed, tensor name). See tools/synthetic.py for the definition.

use crate::weights::{WeightSpec, Weights};

fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The tensor `name` of `shape`, scaled by its role as tools/synthetic.py does.
pub fn tensor(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let base = fnv1a64(&format!("{seed}:{name}"));
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let scale_of = |v: f64| -> f64 {
        if leaf == "weight" && shape.len() >= 2 {
            let fan_in: usize = shape[1..].iter().product();
            v * (3.0 / fan_in as f64).sqrt()
        } else if leaf == "weight" {
            1.0 + 0.1 * v
        } else if leaf == "bias" {
            0.1 * v
        } else {
            v
        }
    };
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64(base.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
            scale_of(2.0 * u - 1.0) as f32
        })
        .collect()
}

/// Synthetic weights for every tensor of a model's spec.
pub fn weights(seed: u64, spec: &WeightSpec) -> Weights {
    let mut w = Weights::new();
    for (name, shape) in spec {
        w.insert(name, shape, tensor(seed, name, shape));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values printed by tools/synthetic.py: the two generators agree bit for bit.
    #[test]
    fn matches_the_python_generator() {
        let w = tensor(3, "a.weight", &[2, 3]);
        let want_w = [
            0.151_904_34_f32,
            -0.978_668,
            -0.765_995_86,
            0.075_582_03,
            -0.009_273_529,
            -0.002_864_003_2,
        ];
        assert_eq!(w, want_w);
        let x = tensor(3, "x", &[3]);
        assert_eq!(x, [-0.889_804_36_f32, -0.064_463_615, 0.445_983_77]);
    }
}
