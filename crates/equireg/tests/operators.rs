//! The measurement operators (super-resolution, blurs, inpainting, HDR) on the GPU against their
//! CPU twins, adjoint and finite-difference checks of the VJPs, the random parameters (masks,
//! motion kernels, noise) against their distributions, and the errors of bad arguments.

use std::sync::OnceLock;

use equireg::operators::Operator;
use equireg::operators::blur::{Blur, gaussian_kernel, motion_kernel};
use equireg::operators::hdr::{DEFAULT_HDR_SCALE, Hdr};
use equireg::operators::inpaint::Inpaint;
use equireg::operators::noise::Noise;
use equireg::operators::resize::{ResizeKind, SuperResolution, bicubic_matrix, resize_cpu};
use equireg_gpu::reference::depthwise_conv as dw_reference;
use equireg_gpu::{DType, Gpu, GpuOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new(&GpuOptions::default())
            .unwrap_or_else(|e| panic!("operator tests need a GPU adapter: {e}"))
    })
}

/// Uniform values in [-1, 1) from a fixed seed.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Asserts |got - want| <= atol + rtol |want| elementwise.
#[track_caller]
fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i} is {g}, want {w} (atol {atol}, rtol {rtol})"
        );
    }
}

/// The GPU forward `A(x)`.
fn gpu_forward(op: &dyn Operator, x: &[f32]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&op.input_shape(), x).unwrap();
    let out = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let mut r = g.recorder();
    op.record_forward(&mut r, &xt, &out).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

/// The GPU VJP `J_A(x)^T dy`. `dx` starts as garbage so a VJP that does not overwrite fails.
fn gpu_vjp(op: &dyn Operator, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&op.input_shape(), x).unwrap();
    let dyt = g.upload(&op.output_shape(), dy).unwrap();
    let dx = g.upload(&op.input_shape(), &random(x.len(), 999)).unwrap();
    let mut r = g.recorder();
    op.record_vjp(&mut r, &xt, &dyt, &dx).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

/// For a linear operator: GPU forward and VJP against the CPU twins (atol, rtol), the adjoint
/// test <A u, v> = <u, A^T v> on the GPU results, and a forward and VJP recorded twice in one
/// submission (the scratch tensors are reused) giving the same results.
fn check_linear(op: &dyn Operator, seed: u64, atol: f32, rtol: f32) {
    assert!(op.is_linear());
    let name = op.name().to_string();
    let n: usize = op.input_shape().iter().product();
    let m: usize = op.output_shape().iter().product();
    let u = random(n, seed);
    let v = random(m, seed + 1);
    let au = gpu_forward(op, &u);
    assert_close(
        &au,
        &op.forward_cpu(&u),
        atol,
        rtol,
        &format!("{name} forward"),
    );
    let atv = gpu_vjp(op, &u, &v);
    assert_close(
        &atv,
        &op.vjp_cpu(&u, &v),
        atol,
        rtol,
        &format!("{name} vjp"),
    );
    let (lhs, rhs) = (dot(&au, &v), dot(&u, &atv));
    assert!(
        (lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()),
        "{name}: <Au, v> = {lhs}, <u, A^T v> = {rhs}"
    );

    let g = gpu();
    let ut = g.upload(&op.input_shape(), &u).unwrap();
    let vt = g.upload(&op.output_shape(), &v).unwrap();
    let y1 = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let y2 = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let d1 = g.alloc(&op.input_shape(), DType::F32).unwrap();
    let mut r = g.recorder();
    op.record_forward(&mut r, &ut, &y1).unwrap();
    op.record_vjp(&mut r, &ut, &vt, &d1).unwrap();
    op.record_forward(&mut r, &ut, &y2).unwrap();
    r.submit().unwrap();
    assert_eq!(
        g.download(&y1).unwrap(),
        au,
        "{name}: forward in a sequence"
    );
    assert_eq!(
        g.download(&y2).unwrap(),
        au,
        "{name}: forward after the VJP"
    );
    assert_eq!(g.download(&d1).unwrap(), atv, "{name}: VJP in a sequence");
}

/// Checks that recording with wrongly shaped tensors is an error naming the tensor.
fn check_shape_errors(op: &dyn Operator) {
    let g = gpu();
    let x = g.alloc(&op.input_shape(), DType::F32).unwrap();
    let y = g.alloc(&op.output_shape(), DType::F32).unwrap();
    let [n, c, h, w] = op.input_shape();
    let bad = g.alloc(&[n, c, h + 1, w], DType::F32).unwrap();
    let mut r = g.recorder();
    let e = op.record_forward(&mut r, &bad, &y).unwrap_err();
    assert!(e.to_string().contains("x has shape"), "{e}");
    let e = op.record_forward(&mut r, &x, &bad).unwrap_err();
    assert!(e.to_string().contains("out has shape"), "{e}");
    let e = op.record_vjp(&mut r, &x, &bad, &x.clone()).unwrap_err();
    assert!(e.to_string().contains("dy has shape"), "{e}");
    let e = op.record_vjp(&mut r, &x, &y, &bad).unwrap_err();
    assert!(e.to_string().contains("dx has shape"), "{e}");
    assert!(r.is_empty());
}

// ---- super-resolution ------------------------------------------------------------------------

/// The Resizer's cubic, written out again for the hand checks.
fn keys(x: f64) -> f64 {
    let a = x.abs();
    if a <= 1.0 {
        1.5 * a.powi(3) - 2.5 * a * a + 1.0
    } else if a <= 2.0 {
        -0.5 * a.powi(3) + 2.5 * a * a - 4.0 * a + 2.0
    } else {
        0.0
    }
}

#[test]
fn bicubic_downsampling_weights_by_hand() {
    // Scale 1/4 with antialiasing: output pixel i (0-based) is centred at input coordinate
    // 4i + 1.5 (0-based) and weighs input j by cubic((4i + 1.5 - j) / 4) / 4, nonzero for 16
    // taps with |distance| in {0.5, 1.5, .., 7.5}, normalised by their sum.
    let (n_in, n_out) = (40, 10);
    let m = bicubic_matrix(n_in, n_out, true);
    let w = |d: f64| keys(d / 4.0) / 4.0;
    let s: f64 = (0..16).map(|t| w(t as f64 - 7.5)).sum();
    for i in 0..n_out {
        let row = &m[i * n_in..(i + 1) * n_in];
        let sum: f64 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "row {i} sums to {sum}");
    }
    // Interior rows: 16 taps at 4i - 6 ..= 4i + 9, symmetric about 4i + 1.5.
    for i in 2..8 {
        let row = &m[i * n_in..(i + 1) * n_in];
        let nonzero: Vec<usize> = (0..n_in).filter(|&j| row[j] != 0.0).collect();
        assert_eq!(
            nonzero,
            (4 * i - 6..=4 * i + 9).collect::<Vec<_>>(),
            "row {i}"
        );
        for t in 0..8 {
            let (l, r) = (4 * i - 6 + t, 4 * i + 9 - t);
            assert!((row[l] - row[r]).abs() < 1e-15, "row {i} not symmetric");
            let d = 4.0 * i as f64 + 1.5 - l as f64;
            assert!((row[l] - w(d) / s).abs() < 1e-15, "row {i}, tap {l}");
        }
    }
    // Two values by hand: cubic(1/8) = 0.9638671875 and cubic(15/8) = -0.0068359375 are the
    // centre and the outermost taps.
    let row = &m[4 * n_in..5 * n_in];
    assert!((row[17] / row[10] - 0.9638671875 / -0.0068359375).abs() < 1e-9);
    // Row 0 mirrors the taps left of the image: input -1 - k reads input k.
    let row = &m[..n_in];
    for (j, &got) in row.iter().enumerate().take(10) {
        let mut want = w(1.5 - j as f64);
        if j <= 5 {
            want += w(2.5 + j as f64);
        }
        assert!((got - want / s).abs() < 1e-15, "row 0, tap {j}: {got}");
    }
    assert!(row[10..].iter().all(|&v| v == 0.0));
    // The last row mirrors the right side the same way.
    let last = &m[(n_out - 1) * n_in..];
    for j in 0..n_in {
        assert!((last[j] - row[n_in - 1 - j]).abs() < 1e-15);
    }
}

#[test]
fn bicubic_upsampling_weights_by_hand() {
    // Scale 2 without antialiasing: the classic bicubic x2 taps
    // cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25) = -0.0234375, 0.2265625, 0.8671875,
    // -0.0703125 for output 4 (centre 1.75, 0-based) on inputs 0..=3.
    let m = bicubic_matrix(8, 16, false);
    let row = &m[4 * 8..5 * 8];
    let want = [
        -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0.0, 0.0, 0.0, 0.0,
    ];
    for (g, w) in row.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{row:?}");
    }
    // Output 2 (centre 0.75): the tap at -1 mirrors onto input 0.
    let row = &m[2 * 8..3 * 8];
    assert!((row[0] - (0.2265625 - 0.0234375)).abs() < 1e-15, "{row:?}");
    // Upsampling a ramp reproduces it away from the edges (cubic convolution is exact on
    // linear functions): output i sits at input coordinate i / 2 - 0.25.
    let ramp: Vec<f32> = (0..8).map(|v| v as f32).collect();
    let up = resize_cpu(&ramp, [1, 1, 1, 8], 1, 16);
    for (i, &v) in up.iter().enumerate().take(13).skip(3) {
        assert!((v - (i as f32 / 2.0 - 0.25)).abs() < 1e-6, "{i}: {v}");
    }
    // Any sizes, up on one axis and down on the other: constants stay constant (normalised
    // rows), and the shape is the one asked for.
    for (h, w, oh, ow) in [(12, 9, 5, 20), (7, 16, 21, 3), (10, 10, 10, 4)] {
        let out = resize_cpu(&vec![0.4; 2 * h * w], [2, 1, h, w], oh, ow);
        assert_eq!(out.len(), 2 * oh * ow);
        assert_close(&out, &vec![0.4; 2 * oh * ow], 1e-6, 0.0, "constant resize");
    }
    assert!(resize_cpu(&[1.0; 4], [1, 1, 2, 2], 0, 3).is_empty());
}

#[test]
fn super_resolution_matches_cpu_and_is_adjoint() {
    let g = gpu();
    // Bicubic x4 (DPS), x3 on a non-square batch, box x2: f32 sums of up to 32 products of
    // values in [-1, 1) against f64, atol 2e-6, rtol 1e-5.
    let cases = [
        ([1, 3, 32, 24], 4, ResizeKind::Bicubic),
        ([2, 2, 12, 18], 3, ResizeKind::Bicubic),
        ([2, 3, 10, 14], 2, ResizeKind::Box),
        ([1, 1, 8, 8], 1, ResizeKind::Bicubic),
    ];
    for (i, (shape, scale, kind)) in cases.into_iter().enumerate() {
        let op = SuperResolution::new(g, shape, scale, kind).unwrap();
        let [n, c, h, w] = shape;
        assert_eq!(op.output_shape(), vec![n, c, h / scale, w / scale]);
        check_linear(&op, 10 + i as u64, 2e-6, 1e-5);
        check_shape_errors(&op);
        let x = random(n * c * h * w, 20 + i as u64);
        let y = op.forward_cpu(&x);
        match kind {
            // The operator's twin and the resize helper are the same resizer.
            ResizeKind::Bicubic => assert_close(
                &y,
                &resize_cpu(&x, shape, h / scale, w / scale),
                1e-6,
                1e-6,
                "resize_cpu",
            ),
            // The mean of each block, computed directly.
            ResizeKind::Box => {
                let (oh, ow) = (h / scale, w / scale);
                for p in 0..n * c {
                    for r in 0..oh {
                        for q in 0..ow {
                            let mut s = 0.0f64;
                            for a in 0..scale {
                                for b in 0..scale {
                                    s += x[p * h * w + (r * scale + a) * w + q * scale + b] as f64;
                                }
                            }
                            let got = y[p * oh * ow + r * ow + q];
                            assert!((got as f64 - s / (scale * scale) as f64).abs() < 1e-6);
                        }
                    }
                }
            }
        }
    }
    // At scale 1 the operator is the identity.
    let op = SuperResolution::new(g, [1, 1, 8, 8], 1, ResizeKind::Bicubic).unwrap();
    let x = random(64, 3);
    assert_close(&gpu_forward(&op, &x), &x, 1e-7, 0.0, "scale 1");
    // Constant images stay constant (rows sum to 1).
    let op = SuperResolution::new(g, [1, 2, 16, 20], 4, ResizeKind::Bicubic).unwrap();
    let y = gpu_forward(&op, &[0.3; 640]);
    assert_close(&y, &[0.3; 40], 1e-6, 0.0, "constant");
}

#[test]
fn super_resolution_rejects_bad_sizes() {
    let g = gpu();
    let e = SuperResolution::new(g, [1, 3, 30, 32], 4, ResizeKind::Bicubic)
        .err()
        .unwrap();
    assert!(e.to_string().contains("multiples of the scale 4"), "{e}");
    let e = SuperResolution::new(g, [1, 3, 32, 30], 4, ResizeKind::Box)
        .err()
        .unwrap();
    assert!(e.to_string().contains("multiples"), "{e}");
    let e = SuperResolution::new(g, [1, 3, 32, 32], 0, ResizeKind::Box)
        .err()
        .unwrap();
    assert!(e.to_string().contains("scale 0"), "{e}");
    let e = SuperResolution::new(g, [0, 3, 32, 32], 2, ResizeKind::Box)
        .err()
        .unwrap();
    assert!(e.to_string().contains("empty"), "{e}");
}

// ---- blurs -----------------------------------------------------------------------------------

#[test]
fn gaussian_kernel_is_scipys() {
    // DPS: 61 x 61, sigma 3. scipy's radius int(4 * 3 + 0.5) = 12 leaves 25 x 25 nonzero taps,
    // the outer product of exp(-t^2 / 18) / sum for |t| <= 12.
    let k = gaussian_kernel(61, 3.0);
    let g: Vec<f64> = (-12..=12).map(|t| (-(t * t) as f64 / 18.0).exp()).collect();
    let s: f64 = g.iter().sum();
    for r in 0..61 {
        for c in 0..61 {
            let (dr, dc) = (r as i64 - 30, c as i64 - 30);
            let want = if dr.abs() <= 12 && dc.abs() <= 12 {
                g[(dr + 12) as usize] * g[(dc + 12) as usize] / (s * s)
            } else {
                0.0
            };
            assert!((k[r * 61 + c] as f64 - want).abs() < 1e-9, "({r}, {c})");
        }
    }
    // A kernel smaller than the filter keeps its mass: scipy's reflect boundary folds the
    // taps back. Size 5, sigma 3: symmetric, sums to 1.
    let k = gaussian_kernel(5, 3.0);
    let sum: f64 = k.iter().map(|&v| v as f64).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{sum}");
    for r in 0..5 {
        for c in 0..5 {
            assert_eq!(k[r * 5 + c], k[c * 5 + r]);
            assert_eq!(k[r * 5 + c], k[(4 - r) * 5 + (4 - c)]);
        }
    }
    // Each 1-D sample i collects every tap t whose position i + t reflects (period 10, edge
    // repeated) onto the delta at 2, written here directly from that rule.
    let taps: Vec<f64> = (-12i64..=12)
        .map(|t| (-(t * t) as f64 / 18.0).exp())
        .collect();
    let ts: f64 = taps.iter().sum();
    let g1 = |i: i64| -> f64 {
        (-12i64..=12)
            .filter(|t| {
                let j = (i + t).rem_euclid(10);
                (if j < 5 { j } else { 9 - j }) == 2
            })
            .map(|t| taps[(t + 12) as usize] / ts)
            .sum()
    };
    for r in 0..5 {
        for c in 0..5 {
            let want = g1(r) * g1(c);
            assert!((k[(r * 5 + c) as usize] as f64 - want).abs() < 1e-7);
        }
    }
}

#[test]
fn motion_kernels_are_deterministic_normalised_and_centred() {
    for (seed, intensity) in [(0u64, 0.5), (1, 0.5), (2, 0.0), (3, 1.0), (4, 0.5)] {
        let k = motion_kernel(61, intensity, seed);
        assert_eq!(k.len(), 61 * 61);
        assert_eq!(k, motion_kernel(61, intensity, seed), "seed {seed}");
        assert!(k.iter().all(|&v| v >= 0.0 && v.is_finite()));
        let sum: f64 = k.iter().map(|&v| v as f64).sum();
        assert!((sum - 1.0).abs() < 1e-5, "seed {seed}: sum {sum}");
        let nonzero = k.iter().filter(|&&v| v > 0.0).count();
        assert!(nonzero >= 4, "seed {seed}: {nonzero} taps");
        // The path is centred on its mean point, so the kernel's mass centre is near the
        // middle (clipping at the canvas edge can move it a little).
        let (mut cy, mut cx) = (0.0, 0.0);
        for r in 0..61 {
            for c in 0..61 {
                cy += k[r * 61 + c] as f64 * r as f64;
                cx += k[r * 61 + c] as f64 * c as f64;
            }
        }
        assert!(
            (cy - 30.0).abs() < 4.0 && (cx - 30.0).abs() < 4.0,
            "seed {seed}: centre ({cy}, {cx})"
        );
    }
    assert_ne!(motion_kernel(61, 0.5, 0), motion_kernel(61, 0.5, 1));
    // Intensity 0 is a straight path: the mass lies along a line, so the covariance of the
    // kernel is strongly anisotropic whenever the path is longer than the blur.
    for seed in 10..16 {
        let k = motion_kernel(31, 0.0, seed);
        let (mut m, mut c) = ([0.0f64; 2], [0.0f64; 3]);
        for r in 0..31 {
            for q in 0..31 {
                let v = k[r * 31 + q] as f64;
                m[0] += v * r as f64;
                m[1] += v * q as f64;
            }
        }
        for r in 0..31 {
            for q in 0..31 {
                let v = k[r * 31 + q] as f64;
                let (dr, dq) = (r as f64 - m[0], q as f64 - m[1]);
                c[0] += v * dr * dr;
                c[1] += v * dr * dq;
                c[2] += v * dq * dq;
            }
        }
        let tr = c[0] + c[2];
        let disc = ((c[0] - c[2]).powi(2) / 4.0 + c[1] * c[1]).sqrt();
        let (big, small) = (tr / 2.0 + disc, tr / 2.0 - disc);
        if big > 4.0 {
            assert!(big > 4.0 * small, "seed {seed}: variances {big}, {small}");
        }
    }
}

#[test]
fn blurs_match_cpu_and_are_adjoint() {
    let g = gpu();
    // DPS's Gaussian (61, sigma 3) and a motion kernel on images just larger than the pad;
    // a random asymmetric 7x7 kernel on a batch. f32 sums of up to 3721 taps of kernels
    // summing to 1 against f64: atol 5e-6, rtol 1e-5.
    let gaussian = Blur::gaussian(g, [1, 3, 40, 33], 61, 3.0).unwrap();
    assert_eq!(gaussian.trimmed_size(), [25, 25]);
    assert_eq!(gaussian.kernel(), gaussian_kernel(61, 3.0).as_slice());
    check_linear(&gaussian, 30, 5e-6, 1e-5);
    check_shape_errors(&gaussian);

    let motion = Blur::motion(g, [1, 2, 34, 31], 61, 0.5, 7).unwrap();
    assert_eq!(motion.kernel(), motion_kernel(61, 0.5, 7).as_slice());
    check_linear(&motion, 31, 5e-6, 1e-5);

    let k = random(49, 32);
    let custom = Blur::from_kernel(g, [2, 3, 13, 11], k.clone(), 7).unwrap();
    assert_eq!(custom.trimmed_size(), [7, 7]);
    check_linear(&custom, 33, 5e-6, 1e-5);

    // Trimming the zero border changes nothing: the twin equals the untrimmed reference.
    for op in [&gaussian, &motion] {
        let [n, c, h, w] = op.input_shape();
        let x = random(n * c * h * w, 34);
        let full = dw_reference::depthwise_conv2d(&x, op.input_shape(), op.kernel(), [61, 61]);
        assert_eq!(op.forward_cpu(&x), full, "{}", op.name());
        let full_vjp =
            dw_reference::depthwise_conv2d_vjp(&x, op.input_shape(), op.kernel(), [61, 61]);
        assert_close(&op.vjp_cpu(&x, &x), &full_vjp, 1e-7, 1e-6, op.name());
    }

    // A blur keeps constant images constant (reflect padding, kernel summing to 1).
    let y = gpu_forward(&gaussian, &[0.25; 3 * 40 * 33]);
    assert_close(&y, &[0.25; 3 * 40 * 33], 1e-6, 0.0, "constant");
}

#[test]
fn blurs_reject_bad_arguments() {
    let g = gpu();
    let e = Blur::gaussian(g, [1, 3, 30, 64], 61, 3.0).err().unwrap();
    assert!(e.to_string().contains("larger than the pad"), "{e}");
    let e = Blur::gaussian(g, [1, 3, 64, 64], 60, 3.0).err().unwrap();
    assert!(e.to_string().contains("odd"), "{e}");
    let e = Blur::gaussian(g, [1, 3, 64, 64], 61, 0.0).err().unwrap();
    assert!(e.to_string().contains("sigma"), "{e}");
    let e = Blur::gaussian(g, [1, 3, 80, 80], 65, 3.0).err().unwrap();
    assert!(e.to_string().contains("taps"), "{e}");
    let e = Blur::motion(g, [1, 3, 64, 64], 61, 1.5, 0).err().unwrap();
    assert!(e.to_string().contains("intensity"), "{e}");
    let e = Blur::from_kernel(g, [1, 3, 64, 64], vec![0.0; 10], 3)
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs 9 values"), "{e}");
    let e = Blur::from_kernel(g, [1, 3, 64, 64], vec![f32::NAN; 9], 3)
        .err()
        .unwrap();
    assert!(e.to_string().contains("non-finite"), "{e}");
}

// ---- inpainting ------------------------------------------------------------------------------

/// The (top, left) corner and size of the zero region of a box mask.
fn hole_of(mask: &[f32], w: usize) -> ([usize; 2], [usize; 2]) {
    let zeros: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] == 0.0).collect();
    let rows: Vec<usize> = zeros.iter().map(|i| i / w).collect();
    let cols: Vec<usize> = zeros.iter().map(|i| i % w).collect();
    let (r0, r1) = (*rows.iter().min().unwrap(), *rows.iter().max().unwrap());
    let (c0, c1) = (*cols.iter().min().unwrap(), *cols.iter().max().unwrap());
    assert_eq!(zeros.len(), (r1 - r0 + 1) * (c1 - c0 + 1), "not a box");
    ([r0, c0], [r1 - r0 + 1, c1 - c0 + 1])
}

#[test]
fn box_masks_stay_in_range() {
    let g = gpu();
    // DPS's setting: 256 x 256, hole 128, margin 16: corners in [16, 112).
    let op = Inpaint::boxed(g, [1, 3, 256, 256], [128, 128], [16, 16], 5).unwrap();
    let (corner, size) = hole_of(op.mask(), 256);
    assert_eq!(size, [128, 128]);
    assert!(corner.iter().all(|c| (16..112).contains(c)), "{corner:?}");
    assert!(op.mask().iter().all(|&v| v == 0.0 || v == 1.0));
    // Non-square: rows in [4, 64 - 4 - 20) = [4, 40), columns in [6, 80 - 6 - 30) = [6, 44).
    let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
    for seed in 0..300 {
        let op = Inpaint::boxed(g, [1, 1, 64, 80], [20, 30], [4, 6], seed).unwrap();
        let (corner, size) = hole_of(op.mask(), 80);
        assert_eq!(size, [20, 30]);
        assert!((4..40).contains(&corner[0]), "seed {seed}: {corner:?}");
        assert!((6..44).contains(&corner[1]), "seed {seed}: {corner:?}");
        for a in 0..2 {
            lo[a] = lo[a].min(corner[a]);
            hi[a] = hi[a].max(corner[a]);
        }
    }
    // 300 uniform draws reach both ends of [4, 40) and [6, 44) (within 3).
    assert!(
        lo[0] <= 6 && hi[0] >= 37 && lo[1] <= 8 && hi[1] >= 41,
        "{lo:?} {hi:?}"
    );
    let a = Inpaint::boxed(g, [1, 1, 64, 80], [20, 30], [4, 6], 9).unwrap();
    let b = Inpaint::boxed(g, [1, 1, 64, 80], [20, 30], [4, 6], 9).unwrap();
    assert_eq!(a.mask(), b.mask());
}

#[test]
fn random_masks_drop_the_drawn_fraction() {
    let g = gpu();
    let (h, w) = (24, 40);
    let total = h * w;
    // A fixed fraction: exactly floor(960 * 0.37) = 355 pixels dropped.
    let op = Inpaint::random(g, [1, 3, h, w], [0.37, 0.37], 1).unwrap();
    let dropped = op.mask().iter().filter(|&&v| v == 0.0).count();
    assert_eq!(dropped, (total as f64 * 0.37) as usize);
    assert!(op.mask().iter().all(|&v| v == 0.0 || v == 1.0));
    // DPS's U(0.3, 0.7): every fraction in range, their mean near 0.5, and every pixel dropped
    // about half the time (uniform placement).
    let seeds = 200;
    let mut fractions = Vec::new();
    let mut per_pixel = vec![0u32; total];
    for seed in 0..seeds {
        let op = Inpaint::random(g, [1, 1, h, w], [0.3, 0.7], seed).unwrap();
        let d = op.mask().iter().filter(|&&v| v == 0.0).count();
        let f = d as f64 / total as f64;
        assert!(
            (0.3 - 1.0 / total as f64..0.7).contains(&f),
            "seed {seed}: {f}"
        );
        fractions.push(f);
        for (c, &m) in per_pixel.iter_mut().zip(op.mask()) {
            *c += (m == 0.0) as u32;
        }
    }
    let mean = fractions.iter().sum::<f64>() / seeds as f64;
    // U(0.3, 0.7) has sd 0.115; the mean of 200 has sd 0.008.
    assert!((mean - 0.5).abs() < 0.025, "mean fraction {mean}");
    let (top, bottom) = per_pixel.split_at(total / 2);
    let (t, b) = (
        top.iter().sum::<u32>() as f64,
        bottom.iter().sum::<u32>() as f64,
    );
    assert!((t - b).abs() < 0.05 * (t + b), "top {t}, bottom {b}");
    assert_ne!(
        Inpaint::random(g, [1, 1, h, w], [0.3, 0.7], 1)
            .unwrap()
            .mask(),
        Inpaint::random(g, [1, 1, h, w], [0.3, 0.7], 2)
            .unwrap()
            .mask()
    );
}

#[test]
fn inpainting_matches_cpu_and_is_adjoint() {
    let g = gpu();
    // Products by 0 or 1 are exact: atol 0.
    let op = Inpaint::random(g, [2, 3, 17, 23], [0.3, 0.7], 4).unwrap();
    check_linear(&op, 40, 0.0, 0.0);
    check_shape_errors(&op);
    let op = Inpaint::boxed(g, [2, 3, 40, 36], [8, 10], [2, 3], 5).unwrap();
    check_linear(&op, 41, 0.0, 0.0);
    // The mask is shared by channels and batch: y is x where the mask is 1, 0 elsewhere.
    let x = random(2 * 3 * 40 * 36, 42);
    let y = gpu_forward(&op, &x);
    for (i, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        let m = op.mask()[i % (40 * 36)];
        assert_eq!(yv, if m == 1.0 { xv } else { 0.0 });
    }
    let mask: Vec<f32> = random(15, 43).iter().map(|v| v * 2.0).collect();
    let op = Inpaint::from_mask(g, [1, 2, 3, 5], mask.clone()).unwrap();
    assert_eq!(op.mask(), mask.as_slice());
    check_linear(&op, 44, 0.0, 0.0);
}

#[test]
fn inpainting_rejects_bad_arguments() {
    let g = gpu();
    let e = Inpaint::boxed(g, [1, 3, 64, 64], [40, 10], [12, 2], 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let e = Inpaint::boxed(g, [1, 3, 64, 64], [70, 10], [0, 0], 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("does not fit"), "{e}");
    for drop in [[0.7, 0.3], [-0.1, 0.5], [0.2, 1.5], [f64::NAN, 0.5]] {
        let e = Inpaint::random(g, [1, 3, 8, 8], drop, 0).err().unwrap();
        assert!(e.to_string().contains("fraction"), "{e}");
    }
    let e = Inpaint::from_mask(g, [1, 3, 8, 8], vec![1.0; 63])
        .err()
        .unwrap();
    assert!(e.to_string().contains("needs 64"), "{e}");
}

// ---- HDR -------------------------------------------------------------------------------------

#[test]
fn hdr_matches_cpu_with_finite_differences() {
    let g = gpu();
    let shape = [2, 3, 11, 13];
    let n: usize = shape.iter().product();
    let op = Hdr::new(g, shape, DEFAULT_HDR_SCALE).unwrap();
    assert!(!op.is_linear());
    check_shape_errors(&op);
    // x away from the kinks at +-0.5 by more than the finite-difference step; two values on
    // the kinks, where the gradient passes (torch.clamp's convention).
    let mut x: Vec<f32> = random(n, 50)
        .iter()
        .map(|&v| {
            if (v.abs() - 0.5).abs() < 0.02 {
                v * 0.9
            } else {
                v
            }
        })
        .collect();
    x[0] = 0.5;
    x[1] = -0.5;
    let dy = random(n, 51);
    let y = gpu_forward(&op, &x);
    assert_eq!(y, op.forward_cpu(&x), "forward (exact)");
    let dx = gpu_vjp(&op, &x, &dy);
    assert_eq!(dx, op.vjp_cpu(&x, &dy), "vjp (exact)");
    assert_eq!(dx[0], 2.0 * dy[0]);
    assert_eq!(dx[1], 2.0 * dy[1]);
    // Central difference along v of <A(x), dy> against <v, J^T dy> (the kinks at x[0], x[1]
    // are left out of v).
    let mut v = random(n, 52);
    v[0] = 0.0;
    v[1] = 0.0;
    let h = 0.005f32;
    let shifted = |s: f32| -> Vec<f32> { x.iter().zip(&v).map(|(a, b)| a + s * b).collect() };
    let fd = (dot(&gpu_forward(&op, &shifted(h)), &dy) - dot(&gpu_forward(&op, &shifted(-h)), &dy))
        / (2.0 * h as f64);
    let jt = dot(&v, &dx);
    assert!(
        (fd - jt).abs() <= 1e-3 * (1.0 + jt.abs()),
        "fd {fd}, vjp {jt}"
    );
    for scale in [0.0, -2.0, f32::INFINITY] {
        let e = Hdr::new(g, shape, scale).err().unwrap();
        assert!(e.to_string().contains("scale"), "{e}");
    }
}

// ---- noise -----------------------------------------------------------------------------------

#[test]
fn gaussian_noise_has_its_moments_and_is_seeded() {
    let n = 200_000;
    let y = random(n, 60);
    let noise = Noise::Gaussian { sigma: 0.05 };
    noise.validate().unwrap();
    let a = noise.apply_cpu(&y, 1);
    assert_eq!(a, noise.apply_cpu(&y, 1));
    assert_ne!(a, noise.apply_cpu(&y, 2));
    let d: Vec<f64> = a.iter().zip(&y).map(|(&p, &q)| (p - q) as f64).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    // Standard errors: mean 0.05 / sqrt(n) = 1.1e-4; sd about 0.05 / sqrt(2n) = 8e-5.
    assert!(mean.abs() < 6e-4, "mean {mean}");
    assert!((var.sqrt() - 0.05).abs() < 5e-4, "sd {}", var.sqrt());
    assert_eq!(Noise::None.apply_cpu(&y, 1), y);
    assert!(Noise::Gaussian { sigma: -1.0 }.validate().is_err());
    assert!(Noise::Poisson { rate: 0.0 }.validate().is_err());
}

#[test]
fn poisson_noise_has_its_moments_and_is_seeded() {
    // Means on both sides of the switch from inversion to transformed rejection (10).
    // y = 2 lambda / (255 rate) - 1 gives the Poisson mean lambda; the count comes back as
    // (out + 1) / 2 * 255 * rate.
    let n = 20_000;
    let rate = 2.0;
    let scale = 255.0 * rate;
    for lambda in [0.5f64, 3.0, 9.5, 10.5, 40.0, 200.0] {
        let y = vec![(2.0 * lambda / scale - 1.0) as f32; n];
        let noise = Noise::Poisson { rate };
        let out = noise.apply_cpu(&y, 7);
        assert_eq!(out, noise.apply_cpu(&y, 7));
        let k: Vec<f64> = out
            .iter()
            .map(|&v| ((v as f64 + 1.0) / 2.0 * scale).round())
            .collect();
        let mean = k.iter().sum::<f64>() / n as f64;
        let var = k.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        // Mean within 5 standard errors; variance within 5 of its standard errors
        // (var of the sample variance ~ (lambda + 2 lambda^2) / n).
        let se = (lambda / n as f64).sqrt();
        assert!(
            (mean - lambda).abs() < 5.0 * se,
            "lambda {lambda}: mean {mean}"
        );
        let se_var = ((lambda + 2.0 * lambda * lambda) / n as f64).sqrt();
        assert!(
            (var - lambda).abs() < 5.0 * se_var,
            "lambda {lambda}: var {var}"
        );
        // The probability of 0 (and, for the small means, of 1).
        let p0 = k.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        let want0 = (-lambda).exp();
        assert!(
            (p0 - want0).abs() < 5.0 * (want0 * (1.0 - want0) / n as f64).sqrt() + 1e-9,
            "lambda {lambda}: P(0) {p0} vs {want0}"
        );
        if lambda >= 10.0 {
            // The mode's probability, from the pmf in logs.
            let m = lambda.floor();
            let ln_fact: f64 = (1..=m as u64).map(|i| (i as f64).ln()).sum();
            let pm = (-lambda + m * lambda.ln() - ln_fact).exp();
            let got = k.iter().filter(|&&v| v == m).count() as f64 / n as f64;
            assert!(
                (got - pm).abs() < 5.0 * (pm * (1.0 - pm) / n as f64).sqrt(),
                "lambda {lambda}: P({m}) {got} vs {pm}"
            );
        }
    }
    // Saturated pixels: the result is clamped to [-1, 1]; black stays black.
    let out = Noise::Poisson { rate: 1.0 }.apply_cpu(&[1.0; 1000], 3);
    assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(out.iter().any(|&v| v < 1.0));
    let out = Noise::Poisson { rate: 1.0 }.apply_cpu(&[-1.0, -3.0], 3);
    assert_eq!(out, vec![-1.0, -1.0]);
}

/// PyTorch's F.interpolate(scale_factor=4, mode="bicubic", align_corners=False) of the 3x4
/// image x[k] = k^1.5 / 5 - 1: rows 0 and 5 and the sum of the 12x16 output (float64 torch).
#[test]
fn bicubic_upsampling_matches_torch_interpolate() {
    use equireg::operators::resize::bicubic_upsample;
    let x: Vec<f32> = (0..12).map(|k| (k as f32).powf(1.5) / 5.0 - 1.0).collect();
    let y = bicubic_upsample(&x, [1, 1, 3, 4], 4);
    assert_eq!(y.len(), 12 * 16);
    let row0 = [
        -1.1924905917,
        -1.1866980199,
        -1.1632581591,
        -1.1426347142,
        -1.1145959245,
        -1.063166997,
        -0.9829647944,
        -0.9176780479,
        -0.8519916874,
        -0.759567164,
        -0.6253720928,
        -0.4998796491,
        -0.3909928989,
        -0.2963059378,
        -0.2218414027,
        -0.205024109,
    ];
    let row5 = [
        0.1598348873,
        0.1816728714,
        0.2760563557,
        0.3864609461,
        0.5179467944,
        0.6894913721,
        0.898141695,
        1.0467983344,
        1.1721343251,
        1.3344760276,
        1.5703539239,
        1.7792473194,
        1.9515032514,
        2.0992566597,
        2.2193709136,
        2.2467684546,
    ];
    for (k, (&a, &b)) in y[..16].iter().zip(&row0).enumerate() {
        assert!((a as f64 - b).abs() < 1e-5, "row 0 col {k}: {a} vs {b}");
    }
    for (k, (&a, &b)) in y[5 * 16..6 * 16].iter().zip(&row5).enumerate() {
        assert!((a as f64 - b).abs() < 1e-5, "row 5 col {k}: {a} vs {b}");
    }
    let sum: f64 = y.iter().map(|&v| v as f64).sum();
    assert!((sum - 379.80666797504296).abs() < 1e-3, "sum {sum}");
}

#[test]
fn naive_estimates_are_the_documented_baselines() {
    let g = gpu();
    let shape = [2, 3, 16, 16];
    let n: usize = shape.iter().product();
    let x = random(n, 41);
    // Super-resolution: bicubic upsampling of the measurement, at the input shape.
    let sr = SuperResolution::new(g, shape, 4, ResizeKind::Bicubic).unwrap();
    let y = sr.forward_cpu(&x);
    let up = sr.naive_estimate(&y);
    assert_eq!(up.len(), n);
    let y_const = vec![0.25f32; y.len()];
    assert!(
        sr.naive_estimate(&y_const)
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-6)
    );
    // Blur: the measurement itself.
    let blur = Blur::gaussian(g, shape, 5, 1.0).unwrap();
    let yb = blur.forward_cpu(&x);
    assert_eq!(blur.naive_estimate(&yb), yb);
    // Inpainting: observed pixels kept, holes filled with the observed mean of each image and
    // channel.
    let mut mask = vec![1.0f32; 16 * 16];
    for m in mask.iter_mut().take(100) {
        *m = 0.0;
    }
    let inp = Inpaint::from_mask(g, shape, mask.clone()).unwrap();
    let yi = inp.forward_cpu(&x);
    let est = inp.naive_estimate(&yi);
    for p in 0..6 {
        let plane = &x[p * 256..(p + 1) * 256];
        let mean = plane[100..].iter().map(|&v| v as f64).sum::<f64>() / 156.0;
        for k in 0..256 {
            let want = if k < 100 { mean as f32 } else { plane[k] };
            assert!(
                (est[p * 256 + k] - want).abs() < 1e-5,
                "plane {p} pixel {k}"
            );
        }
    }
    // HDR: the measurement divided by the scale.
    let hdr = Hdr::new(g, shape, 2.0).unwrap();
    let yh = hdr.forward_cpu(&x);
    assert!(
        hdr.naive_estimate(&yh)
            .iter()
            .zip(&yh)
            .all(|(a, b)| (a * 2.0 - b).abs() < 1e-6)
    );
    // Phase retrieval: a flat zero image.
    let pr = equireg::operators::phase_retrieval::PhaseRetrieval::new(g, shape, 2.0).unwrap();
    let yp = pr.forward_cpu(&x);
    assert_eq!(pr.naive_estimate(&yp), vec![0.0; n]);
}
