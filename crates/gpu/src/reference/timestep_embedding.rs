//! CPU references of the sinusoidal timestep embedding.

/// PyTorch's arithmetic: `freq[i] = exp(x_i)` with x_i = (f32(-ln 10000) * i) / half in f32, freq
/// rounded to f32, the argument the f32 product t * freq; cos and sin of that argument in f64.
pub fn timestep_embedding(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let args = timestep_arguments(t, dim);
    embed(t, dim, |row, i| args[row * half + i] as f64)
}

/// The f32 frequencies of [`timestep_embedding`]: exp((f32(-ln 10000) * i) / half), exponent
/// formed in f32 as PyTorch does, exp correctly rounded.
pub fn timestep_frequencies(dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let neg_ln = -(10000f64.ln()) as f32;
    (0..half)
        .map(|i| ((neg_ln * i as f32 / half as f32) as f64).exp() as f32)
        .collect()
}

/// The f32 arguments `t[n] * freq[i]` of [`timestep_embedding`], as [N, dim / 2].
pub fn timestep_arguments(t: &[f32], dim: usize) -> Vec<f32> {
    let freqs = timestep_frequencies(dim);
    t.iter()
        .flat_map(|&tv| freqs.iter().map(move |&f| tv * f))
        .collect()
}

/// The same embedding with every step in f64: the exact function the f32 one approximates.
pub fn timestep_embedding_f64(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    embed(t, dim, |row, i| {
        t[row] as f64 * (-(10000f64.ln()) * i as f64 / half as f64).exp()
    })
}

/// out[row, i] = cos(arg(row, i)), out[row, half + i] = sin(arg(row, i)), zero column if odd.
fn embed(t: &[f32], dim: usize, arg: impl Fn(usize, usize) -> f64) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; t.len() * dim];
    for row in 0..t.len() {
        for i in 0..half {
            let a = arg(row, i);
            out[row * dim + i] = a.cos() as f32;
            out[row * dim + half + i] = a.sin() as f32;
        }
    }
    out
}
