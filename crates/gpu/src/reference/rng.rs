//! CPU reference of the counter-based RNG (Philox4x32-10) and of the two distributions built on
//! it. The scheme, shared with `shaders/rng.wgsl` and documented in [`crate::ops::rng`]:
//! element `i` of a draw is word `i % 4` of
//! `philox4x32_10([i / 4, stream, offset, 0], [seed as u32, (seed >> 32) as u32])`.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds (Salmon et al., SC'11), as in Random123's `philox4x32_R(10, ..)`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 as u64 * c[0] as u64;
        let p1 = M1 as u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The four Philox words of block `block` of a (seed, stream, offset) draw.
pub fn block_words(block: usize, seed: u64, stream: u32, offset: u32) -> [u32; 4] {
    item_block_words(block, seed, stream, offset, 0)
}

/// The Philox block of a per-item draw: counter word 3 is the item.
pub fn item_block_words(block: usize, seed: u64, stream: u32, offset: u32, item: u32) -> [u32; 4] {
    let block = u32::try_from(block).expect("draws are limited to 2^34 elements");
    philox4x32_10(
        [block, stream, offset, item],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// n raw Philox words: element i is word i % 4 of block i / 4.
pub fn bits(n: usize, seed: u64, stream: u32, offset: u32) -> Vec<u32> {
    (0..n)
        .map(|i| block_words(i / 4, seed, stream, offset)[i % 4])
        .collect()
}

/// The top 24 bits of a word as a multiple of 2^-24 in [0, 1); exact in f32.
fn unit(word: u32) -> f64 {
    (word >> 8) as f64 / (1u64 << 24) as f64
}

/// n uniforms in [0, 1): element i is `(w >> 8) * 2^-24` of its Philox word.
pub fn uniform(n: usize, seed: u64, stream: u32, offset: u32) -> Vec<f32> {
    (0..n)
        .map(|i| unit(block_words(i / 4, seed, stream, offset)[i % 4]) as f32)
        .collect()
}

/// n standard normals by Box-Muller on word pairs (0, 1) and (2, 3) of each block: with
/// `u1 = ((w_even >> 8) + 1) * 2^-24` in (0, 1] (so the log is finite) and
/// `u2 = (w_odd >> 8) * 2^-24`, the even element is `sqrt(-2 ln u1) cos(2 pi u2)` and the odd one
/// `sqrt(-2 ln u1) sin(2 pi u2)`. Computed in f64, rounded once to f32.
pub fn normal(n: usize, seed: u64, stream: u32, offset: u32) -> Vec<f32> {
    normal_item(n, seed, stream, offset, 0)
}

/// The n normals of item `item` of a per-item draw (ops::rng::rng_normal_items); item 0 is
/// [`normal`].
pub fn normal_item(n: usize, seed: u64, stream: u32, offset: u32, item: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let w = item_block_words(i / 4, seed, stream, offset, item);
            let pair = i % 4 / 2;
            let u1 = unit(w[2 * pair]) + 1.0 / (1u64 << 24) as f64;
            let u2 = unit(w[2 * pair + 1]);
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f64::consts::TAU * u2;
            (if i % 2 == 0 {
                r * theta.cos()
            } else {
                r * theta.sin()
            }) as f32
        })
        .collect()
}
