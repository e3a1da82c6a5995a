use equireg_gpu::DType;
use equireg_gpu::ops::measurement::{clip_scale, clip_scale_vjp, mul_mask};
use equireg_gpu::reference::measurement as cpu;

use crate::common::{gpu, random, rec};

const SHAPE: [usize; 4] = [2, 3, 17, 23];

fn numel() -> usize {
    SHAPE.iter().product()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Values in [-1, 1) with both clip bounds of scale 2 (+-0.5) hit exactly.
fn input() -> Vec<f32> {
    let mut x = random(numel(), 1);
    x[0] = 0.5;
    x[1] = -0.5;
    x[2] = 0.0;
    x
}

fn forward(x: &[f32], scale: f32) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&SHAPE, x).unwrap();
    let out = g.alloc(&SHAPE, DType::F32).unwrap();
    let mut r = rec();
    clip_scale(&mut r, &xt, &out, scale).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn vjp(x: &[f32], dy: &[f32], scale: f32) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(&SHAPE, x).unwrap();
    let dyt = g.upload(&SHAPE, dy).unwrap();
    let dx = g.alloc(&SHAPE, DType::F32).unwrap();
    let mut r = rec();
    clip_scale_vjp(&mut r, &xt, &dyt, &dx, scale).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

#[test]
fn clip_scale_matches_reference_exactly() {
    // One f32 product and a clamp: bit-exact.
    let x = input();
    for scale in [2.0, 0.7, -3.0] {
        let got = forward(&x, scale);
        assert_eq!(got, cpu::clip_scale(&x, scale), "scale {scale}");
    }
    let got = forward(&x, 2.0);
    assert_eq!(&got[..3], &[1.0, -1.0, 0.0]);
    assert!(got.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn clip_scale_vjp_matches_reference_fd_and_dot_product() {
    let x = input();
    let dy = random(numel(), 2);
    for scale in [2.0f32, 0.7, -3.0] {
        let got = vjp(&x, &dy, scale);
        assert_eq!(got, cpu::clip_scale_vjp(&x, &dy, scale), "scale {scale}");
    }
    // The bounds pass the gradient (torch.clamp's convention); beyond them it is 0.
    let got = vjp(&x, &dy, 2.0);
    assert_eq!(got[0], 2.0 * dy[0]);
    assert_eq!(got[1], 2.0 * dy[1]);
    let clipped = x.iter().position(|v| v.abs() > 0.6).unwrap();
    assert_eq!(got[clipped], 0.0);

    // Central differences along v, with x kept at least 2h away from the kinks at +-0.5 so the
    // difference sees one linear piece: <(f(x + hv) - f(x - hv)) / 2h, dy> = <v, J^T dy>.
    let x: Vec<f32> = x
        .iter()
        .map(|&v| {
            if (v.abs() - 0.5).abs() < 0.02 {
                v * 0.9
            } else {
                v
            }
        })
        .collect();
    let v = random(numel(), 3);
    let h = 0.005f32;
    let plus: Vec<f32> = x.iter().zip(&v).map(|(a, b)| a + h * b).collect();
    let minus: Vec<f32> = x.iter().zip(&v).map(|(a, b)| a - h * b).collect();
    let fd = (dot(&forward(&plus, 2.0), &dy) - dot(&forward(&minus, 2.0), &dy)) / (2.0 * h as f64);
    let jtv = vjp(&x, &dy, 2.0);
    let rhs = dot(&v, &jtv);
    assert!(
        (fd - rhs).abs() <= 1e-3 * (1.0 + rhs.abs()),
        "finite difference {fd}, VJP {rhs}"
    );
    // Dot-product test with the Jacobian applied explicitly (J = diag(2 * inside)).
    let jv: Vec<f32> = x
        .iter()
        .zip(&v)
        .map(|(&a, &b)| if (2.0 * a).abs() <= 1.0 { 2.0 * b } else { 0.0 })
        .collect();
    let lhs = dot(&jv, &dy);
    assert!(
        (lhs - rhs).abs() <= 1e-6 * (1.0 + lhs.abs()),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn mul_mask_broadcasts_over_channels_and_batch() {
    let g = gpu();
    let [n, c, h, w] = SHAPE;
    let x = random(numel(), 4);
    let xt = g.upload(&SHAPE, &x).unwrap();
    let out = g.alloc(&SHAPE, DType::F32).unwrap();
    let shared: Vec<f32> = random(h * w, 5)
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let per_sample = random(n * h * w, 6);
    for (mask, mask_shape) in [(&shared, vec![h, w]), (&per_sample, vec![n, 1, h, w])] {
        let mt = g.upload(&mask_shape, mask).unwrap();
        let mut r = rec();
        mul_mask(&mut r, &xt, &mt, &out).unwrap();
        r.submit().unwrap();
        let got = g.download(&out).unwrap();
        let want = cpu::mul_mask(&x, SHAPE, mask);
        assert_eq!(got, want, "mask {mask_shape:?}");
        // Independent spot check of the indexing: sample 1, channel 2, pixel (3, 4).
        let (s, ch, p) = (1, 2, 3 * w + 4);
        let mi = if mask_shape.len() == 2 {
            p
        } else {
            s * h * w + p
        };
        let xi = (s * c + ch) * h * w + p;
        assert_eq!(got[xi], x[xi] * mask[mi]);
    }
}

#[test]
fn mul_mask_per_channel_masks() {
    let g = gpu();
    let [n, c, h, w] = SHAPE;
    let x = random(numel(), 14);
    let xt = g.upload(&SHAPE, &x).unwrap();
    let out = g.alloc(&SHAPE, DType::F32).unwrap();
    let per_channel = random(c * h * w, 15);
    let per_item = random(n * c * h * w, 16);
    let shared = random(h * w, 17);
    let per_sample = random(n * h * w, 18);
    let cases = [
        (&per_channel, vec![c, h, w]),
        (&per_item, vec![n, c, h, w]),
        (&shared, vec![h, w]),
        (&per_sample, vec![n, 1, h, w]),
    ];
    for (mask, mask_shape) in cases {
        let mt = g.upload(&mask_shape, mask).unwrap();
        let mut r = rec();
        mul_mask(&mut r, &xt, &mt, &out).unwrap();
        r.submit().unwrap();
        let got = g.download(&out).unwrap();
        let want = cpu::mul_mask_shaped(&x, SHAPE, mask, &mask_shape);
        assert_eq!(got, want, "mask {mask_shape:?}");
        // Independent spot check of the indexing: sample 1, channel 2, pixel (3, 4).
        let (s, ch, p) = (1, 2, 3 * w + 4);
        let mi = match mask_shape.len() {
            2 => p,
            3 => ch * h * w + p,
            _ if mask_shape[1] == 1 => s * h * w + p,
            _ => (s * c + ch) * h * w + p,
        };
        let xi = (s * c + ch) * h * w + p;
        assert_eq!(got[xi], x[xi] * mask[mi], "mask {mask_shape:?}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&SHAPE, DType::F32).unwrap();
    let out = g.alloc(&SHAPE, DType::F32).unwrap();
    let small = g.alloc(&[2, 3, 17, 22], DType::F32).unwrap();
    let e = clip_scale(&mut r, &x, &small, 2.0).unwrap_err();
    assert!(e.to_string().contains("out"), "{e}");
    let e = clip_scale(&mut r, &x, &out, f32::NAN).unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    let e = clip_scale_vjp(&mut r, &x, &small, &out, 2.0).unwrap_err();
    assert!(e.to_string().contains("dy"), "{e}");
    let e = clip_scale_vjp(&mut r, &x, &out, &x, 2.0).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let mask = g.alloc(&[17, 22], DType::F32).unwrap();
    let e = mul_mask(&mut r, &x, &mask, &out).unwrap_err();
    assert!(e.to_string().contains("mask"), "{e}");
    let mask3 = g.alloc(&[2, 2, 17, 23], DType::F32).unwrap();
    let e = mul_mask(&mut r, &x, &mask3, &out).unwrap_err();
    assert!(e.to_string().contains("mask"), "{e}");
    let mask_c = g.alloc(&[2, 17, 23], DType::F32).unwrap();
    let e = mul_mask(&mut r, &x, &mask_c, &out).unwrap_err();
    assert!(e.to_string().contains("mask"), "{e}");
    assert!(r.is_empty());
}
