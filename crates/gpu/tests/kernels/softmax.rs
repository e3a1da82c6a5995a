use equireg_gpu::DType;
use equireg_gpu::ops::softmax::{
    softmax_rows, softmax_rows_vjp, softmax_rows_vjp_with_width, softmax_rows_with_width,
};
use equireg_gpu::reference::softmax as cpu;

use crate::common::{assert_close, gpu, random, rec};

/// (shape, scale, logit amplitude): rows shorter and longer than a workgroup, not multiples of
/// it, one-element rows, and large logits that would overflow exp without the max subtraction.
const CASES: &[(&[usize], f32, f32)] = &[
    (&[2, 37, 300], 0.125, 4.0),
    (&[5, 257], 1.0, 1.0),
    (&[3, 1], 0.5, 2.0),
    (&[1, 4, 64, 64], 0.044_194_173, 3.0),
    (&[4, 100], 1.0, 200.0),
    (&[2, 33], -2.0, 1.0),
];

/// The workgroup widths the reference checks run with: the adapter's choice, the GPUs' 256 and
/// a narrow one, so that each width's tree is checked on whatever adapter runs the tests.
const WIDTHS: [Option<u32>; 3] = [None, Some(256), Some(4)];

fn forward(x: &[f32], shape: &[usize], scale: f32) -> Vec<f32> {
    forward_with(x, shape, scale, None)
}

fn forward_with(x: &[f32], shape: &[usize], scale: f32, width: Option<u32>) -> Vec<f32> {
    let g = gpu();
    let xt = g.upload(shape, x).unwrap();
    let out = g.alloc(shape, DType::F32).unwrap();
    let mut r = rec();
    softmax_rows_with_width(&mut r, &xt, &out, scale, width).unwrap();
    r.submit().unwrap();
    g.download(&out).unwrap()
}

fn vjp(y: &[f32], dy: &[f32], shape: &[usize], scale: f32) -> Vec<f32> {
    vjp_with(y, dy, shape, scale, None)
}

fn vjp_with(y: &[f32], dy: &[f32], shape: &[usize], scale: f32, width: Option<u32>) -> Vec<f32> {
    let g = gpu();
    let yt = g.upload(shape, y).unwrap();
    let dyt = g.upload(shape, dy).unwrap();
    let dx = g.alloc(shape, DType::F32).unwrap();
    let mut r = rec();
    softmax_rows_vjp_with_width(&mut r, &yt, &dyt, &dx, scale, width).unwrap();
    r.submit().unwrap();
    g.download(&dx).unwrap()
}

fn logits(shape: &[usize], amp: f32, seed: u64) -> Vec<f32> {
    random(shape.iter().product(), seed)
        .iter()
        .map(|v| v * amp)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn forward_matches_reference() {
    // Probabilities in [0, 1] from f32 exp and a 256-way tree sum: atol 1e-7, rtol 2e-5.
    for (i, &(shape, scale, amp)) in CASES.iter().enumerate() {
        let x = logits(shape, amp, 80 + i as u64);
        let want = cpu::softmax_rows(&x, *shape.last().unwrap(), scale);
        for width in WIDTHS {
            let got = forward_with(&x, shape, scale, width);
            let what = format!("softmax {shape:?} width {width:?}");
            assert_close(&got, &want, 1e-7, 2e-5, &what);
            assert!(got.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn vjp_matches_reference() {
    // scale * y * (dy - <dy, y>): atol 1e-6 (relative to |scale|), rtol 1e-4.
    for (i, &(shape, scale, amp)) in CASES.iter().enumerate() {
        let cols = *shape.last().unwrap();
        let x = logits(shape, amp, 90 + i as u64);
        let y = cpu::softmax_rows(&x, cols, scale);
        let dy = random(y.len(), 100 + i as u64);
        let want = cpu::softmax_rows_vjp(&y, &dy, cols, scale);
        let atol = 1e-6 * scale.abs().max(1.0);
        for width in WIDTHS {
            let got = vjp_with(&y, &dy, shape, scale, width);
            let what = format!("softmax vjp {shape:?} width {width:?}");
            assert_close(&got, &want, atol, 1e-4, &what);
        }
    }
}

#[test]
fn vjp_agrees_with_finite_differences_and_the_dot_product_test() {
    for (i, &(shape, scale, amp)) in CASES.iter().enumerate() {
        if amp > 10.0 {
            continue; // saturated rows: the derivative is ~0 and the f32 difference is noise
        }
        let x = logits(shape, amp, 110 + i as u64);
        let u = random(x.len(), 120 + i as u64);
        let v = random(x.len(), 130 + i as u64);
        let y = forward(&x, shape, scale);
        let jtv = vjp(&y, &v, shape, scale);
        // <v, J u> by central differences of the GPU forward.
        let eps = 1e-2f32;
        let shifted = |s: f32| -> Vec<f32> {
            let xs: Vec<f32> = x.iter().zip(&u).map(|(&a, &b)| a + s * b).collect();
            forward(&xs, shape, scale)
        };
        let (yp, ym) = (shifted(eps), shifted(-eps));
        let fd = (dot(&v, &yp) - dot(&v, &ym)) / (2.0 * eps as f64);
        let an = dot(&jtv, &u);
        let tol = 2e-3 * an.abs().max(fd.abs()) + 1e-4 * (x.len() as f64).sqrt();
        assert!(
            (fd - an).abs() <= tol,
            "{shape:?}: <v, J u> by differences {fd}, <J^T v, u> {an}"
        );
    }
}

#[test]
fn long_rows_match_reference() {
    // 400 000 columns: at the CPU adapters' width of 16 one invocation would loop 75 000 times
    // over three passes, past lavapipe's silent limit of 65 535, so the adapter's choice widens
    // the workgroup there; every width must give the reference's result.
    let shape = [2, 400_000];
    let x = logits(&shape, 3.0, 150);
    let want = cpu::softmax_rows(&x, 400_000, 0.5);
    for width in [None, Some(256)] {
        let got = forward_with(&x, &shape, 0.5, width);
        assert_close(
            &got,
            &want,
            1e-7,
            2e-5,
            &format!("softmax {shape:?} width {width:?}"),
        );
        let dy = random(x.len(), 151);
        let got = vjp_with(&want, &dy, &shape, 0.5, width);
        let want_dx = cpu::softmax_rows_vjp(&want, &dy, 400_000, 0.5);
        assert_close(
            &got,
            &want_dx,
            1e-6,
            1e-4,
            &format!("softmax vjp {shape:?} width {width:?}"),
        );
    }
    // A width too narrow for the loop limit is refused, never run.
    let g = gpu();
    let (xt, out) = (
        g.upload(&shape, &x).unwrap(),
        g.alloc(&shape, DType::F32).unwrap(),
    );
    let e = softmax_rows_with_width(&mut rec(), &xt, &out, 0.5, Some(16)).unwrap_err();
    assert!(
        e.to_string().contains("need a workgroup of at least"),
        "{e}"
    );
}

#[test]
fn repeated_runs_are_bitwise_identical() {
    let shape = [3, 300];
    let x = logits(&shape, 2.0, 140);
    assert_eq!(forward(&x, &shape, 0.3), forward(&x, &shape, 0.3));
}

#[test]
fn bad_arguments_are_errors() {
    let g = gpu();
    let mut r = rec();
    let x = g.alloc(&[2, 5], DType::F32).unwrap();
    let other = g.alloc(&[2, 6], DType::F32).unwrap();
    let e = softmax_rows(&mut r, &x, &other, 1.0).unwrap_err();
    assert!(e.to_string().contains("out has shape [2, 6]"), "{e}");
    let e = softmax_rows(&mut r, &x, &x, 1.0).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let out = g.alloc(&[2, 5], DType::F32).unwrap();
    let e = softmax_rows(&mut r, &x, &out, f32::NAN).unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    let e = softmax_rows_vjp(&mut r, &x, &other, &out, 1.0).unwrap_err();
    assert!(e.to_string().contains("dy has shape [2, 6]"), "{e}");
    let e = softmax_rows_vjp(&mut r, &x, &out, &out, 1.0).unwrap_err();
    assert!(e.to_string().contains("share memory"), "{e}");
    let scalar = g.alloc(&[], DType::F32).unwrap();
    let e = softmax_rows(&mut r, &scalar, &scalar, 1.0).unwrap_err();
    assert!(e.to_string().contains("at least one dimension"), "{e}");
    let long = g.alloc(&[1, 3_000_000], DType::F32).unwrap();
    let long2 = g.alloc(&[1, 3_000_000], DType::F32).unwrap();
    let e = softmax_rows(&mut r, &long, &long2, 1.0).unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
    for width in [0, 3, 512] {
        let e = softmax_rows_with_width(&mut r, &x, &out, 1.0, Some(width)).unwrap_err();
        assert!(e.to_string().contains("workgroup width"), "{e}");
        let e = softmax_rows_vjp_with_width(&mut r, &x, &x, &out, 1.0, Some(width)).unwrap_err();
        assert!(e.to_string().contains("workgroup width"), "{e}");
    }
    assert!(r.is_empty());
}
