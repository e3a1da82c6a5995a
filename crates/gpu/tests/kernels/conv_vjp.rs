//! conv2d_input_grad against the f64 CPU reference (strides 1 and 2, even and odd sizes, 1x1 to
//! 7x7 kernels, batch 2, non-square images, channel counts that are not multiples of any tile),
//! and the adjoint identity <conv2d(x), dy> = <x, conv2d_input_grad(dy)> with the GPU forward.
//!
//! Tolerance vs the reference: |got - want| <= atol + 1e-4 |want|, atol = 1e-4 max(1, sqrt(T /
//! 100)) with T = co * kh * kw terms per dx element (inputs uniform in [-1, 1), f32 accumulation
//! on the GPU); the relative L2 error of the whole dx must also stay under 1e-5. The adjoint
//! identity holds to a relative 1e-5 of sum |x| |conv2d_input_grad(dy)|.

use equireg_gpu::ops::conv::{Conv2dParams, conv2d, conv2d_out_shape};
use equireg_gpu::ops::conv_vjp::{KernelPath, conv2d_input_grad, conv2d_input_grad_with};
use equireg_gpu::reference::conv_vjp as cpu;
use equireg_gpu::{DType, Tensor};

use crate::common::{assert_close, gpu, random, rec, rel_l2};

struct Case {
    /// The forward's input [N, Ci, H, W] (the shape of dx).
    x: [usize; 4],
    w: [usize; 4],
    stride: u32,
    pad: u32,
}

const fn case(x: [usize; 4], w: [usize; 4], stride: u32, pad: u32) -> Case {
    Case { x, w, stride, pad }
}

fn params(c: &Case) -> Conv2dParams {
    Conv2dParams {
        stride: c.stride,
        padding: c.pad,
    }
}

/// Whether the subgroup kernels can run here; if not, asking for them must be an error.
fn subgroup8() -> bool {
    let c = gpu().caps();
    c.subgroup && c.subgroup_min_size == 8 && c.subgroup_max_size == 8
}

fn paths() -> Vec<KernelPath> {
    let mut v = vec![KernelPath::Auto, KernelPath::Portable];
    if subgroup8() {
        v.push(KernelPath::Subgroup8);
    }
    v
}

fn run_case(c: &Case, seed: u64, path: KernelPath) {
    let g = gpu();
    let p = params(c);
    let dshape = conv2d_out_shape(&c.x, &c.w, p).unwrap();
    let dys = random(dshape.iter().product(), seed);
    let ws = random(c.w.iter().product(), seed + 1);
    let dyt = g.upload(&dshape, &dys).unwrap();
    let wt = g.upload(&c.w, &ws).unwrap();
    // Filled with NaN first: every element must be written.
    let dx = g
        .upload(&c.x, &vec![f32::NAN; c.x.iter().product()])
        .unwrap();
    let mut r = rec();
    conv2d_input_grad_with(&mut r, &dyt, &wt, &dx, p, path).unwrap();
    r.submit().unwrap();
    let want = cpu::conv2d_input_grad(
        &dys,
        dshape,
        &ws,
        c.w,
        (c.x[2], c.x[3]),
        c.stride as usize,
        c.pad as usize,
    );
    let got = g.download(&dx).unwrap();
    let what = format!(
        "conv2d_input_grad dx {:?} w {:?} stride {} pad {} on {path:?}",
        c.x, c.w, c.stride, c.pad
    );
    let e = rel_l2(&got, &want);
    assert!(e < 1e-5, "{what}: relative L2 error {e}");
    let terms = (c.w[0] * c.w[2] * c.w[3]) as f32;
    let atol = 1e-4 * (terms / 100.0).sqrt().max(1.0);
    assert_close(&got, &want, atol, 1e-4, &what);
}

fn run_all(cases: &[Case], seed: u64) {
    for (i, c) in cases.iter().enumerate() {
        for path in paths() {
            run_case(c, seed + 10 * i as u64, path);
        }
    }
}

#[test]
fn conv3x3_stride1_matches_reference() {
    run_all(
        &[
            // Non-square, channels not multiples of any tile, batch 2.
            case([2, 5, 13, 10], [7, 5, 3, 3], 1, 1),
            // Several pixel and channel tiles (33 = 16 + 16 + 1).
            case([1, 33, 19, 35], [33, 33, 3, 3], 1, 1),
            // More input than output channels.
            case([1, 64, 9, 17], [32, 64, 3, 3], 1, 1),
            // No padding: dy is smaller than dx.
            case([2, 3, 10, 12], [4, 3, 3, 3], 1, 0),
        ],
        100,
    );
}

#[test]
fn conv3x3_stride2_matches_reference() {
    run_all(
        &[
            // Even sizes (the UNet's downsampling) and odd sizes, where the last row and column of
            // dx are reached by one output only.
            case([2, 5, 12, 10], [7, 5, 3, 3], 2, 1),
            case([2, 5, 13, 11], [7, 5, 3, 3], 2, 1),
            case([1, 33, 9, 16], [33, 33, 3, 3], 2, 1),
            // No padding, odd: the last row of dx gets no gradient at all.
            case([1, 4, 10, 9], [6, 4, 3, 3], 2, 0),
        ],
        200,
    );
}

#[test]
fn conv1x1_5x5_7x7_match_reference() {
    run_all(
        &[
            case([2, 33, 9, 11], [7, 33, 1, 1], 1, 0),
            case([2, 4, 9, 9], [6, 4, 1, 1], 2, 0),
            case([1, 5, 12, 7], [7, 5, 5, 5], 1, 2),
            case([2, 6, 11, 14], [5, 6, 5, 5], 2, 2),
            // Padding larger than the kernel radius.
            case([1, 3, 8, 6], [2, 3, 3, 3], 1, 2),
            case([1, 2, 15, 13], [3, 2, 7, 7], 1, 3),
        ],
        300,
    );
}

#[test]
fn large_kernel_matches_reference() {
    run_all(
        &[
            // A blur-sized kernel, as used per channel ([N*C, 1, H, W]).
            case([2, 1, 23, 19], [1, 1, 61, 61], 1, 30),
            // 7 x 61 x 61 terms per dx element: over the loop budget of one invocation, so the
            // sum is split over several dispatches on every path.
            case([1, 2, 11, 9], [7, 2, 61, 61], 1, 30),
        ],
        400,
    );
}

/// <conv2d(x), dy> = <x, conv2d_input_grad(dy)>, both sides on the GPU.
fn adjoint(c: &Case, seed: u64) {
    let g = gpu();
    let p = params(c);
    let dshape = conv2d_out_shape(&c.x, &c.w, p).unwrap();
    let xs = random(c.x.iter().product(), seed);
    let ws = random(c.w.iter().product(), seed + 1);
    let dys = random(dshape.iter().product(), seed + 2);
    let xt = g.upload(&c.x, &xs).unwrap();
    let wt = g.upload(&c.w, &ws).unwrap();
    let dyt = g.upload(&dshape, &dys).unwrap();
    let y = g.alloc(&dshape, DType::F32).unwrap();
    let dx = g.alloc(&c.x, DType::F32).unwrap();
    let mut r = rec();
    conv2d(&mut r, &xt, &wt, None, None, &y, p).unwrap();
    conv2d_input_grad(&mut r, &dyt, &wt, &dx, p).unwrap();
    r.submit().unwrap();
    let (ys, dxs) = (g.download(&y).unwrap(), g.download(&dx).unwrap());
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum() };
    let mag = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&u, &v)| (u as f64 * v as f64).abs())
            .sum()
    };
    let (lhs, rhs) = (dot(&ys, &dys), dot(&xs, &dxs));
    let scale = mag(&xs, &dxs).max(mag(&ys, &dys));
    assert!(
        (lhs - rhs).abs() <= 1e-5 * scale,
        "adjoint identity for dx {:?} w {:?} stride {} pad {}: {lhs} vs {rhs} (scale {scale})",
        c.x,
        c.w,
        c.stride,
        c.pad
    );
}

#[test]
fn adjoint_of_the_forward_conv() {
    let cases = [
        case([2, 5, 13, 10], [7, 5, 3, 3], 1, 1),
        case([2, 5, 13, 11], [7, 5, 3, 3], 2, 1),
        case([1, 33, 16, 12], [33, 33, 3, 3], 1, 1),
        case([1, 64, 8, 8], [32, 64, 3, 3], 2, 1),
        case([2, 33, 9, 11], [7, 33, 1, 1], 1, 0),
        case([1, 5, 12, 7], [7, 5, 5, 5], 1, 2),
    ];
    for (i, c) in cases.iter().enumerate() {
        adjoint(c, 500 + 10 * i as u64);
    }
}

fn t(shape: &[usize]) -> Tensor {
    gpu().alloc(shape, DType::F32).unwrap()
}

fn err(dy: &Tensor, w: &Tensor, dx: &Tensor, stride: u32, padding: u32) -> String {
    let mut r = rec();
    let e = conv2d_input_grad(&mut r, dy, w, dx, Conv2dParams { stride, padding })
        .unwrap_err()
        .to_string();
    assert!(r.is_empty());
    e
}

#[test]
fn bad_shapes_are_errors() {
    let dy = t(&[2, 7, 7, 5]);
    let w = t(&[7, 5, 3, 3]);
    let dx = t(&[2, 5, 13, 10]);
    // The consistent triple works (stride 2, odd H), so the errors below are due to one change.
    let mut r = rec();
    conv2d_input_grad(
        &mut r,
        &dy,
        &w,
        &dx,
        Conv2dParams {
            stride: 2,
            padding: 1,
        },
    )
    .unwrap();
    // dy not the forward's output size: a stride, a padding or an input size that disagree.
    assert!(err(&dy, &w, &dx, 1, 1).contains("dy has shape"));
    assert!(err(&dy, &w, &dx, 2, 0).contains("dy has shape"));
    assert!(err(&dy, &w, &t(&[2, 5, 15, 10]), 2, 1).contains("dy has shape"));
    // Channel mismatches on either side, batch mismatch.
    assert!(err(&dy, &t(&[6, 5, 3, 3]), &dx, 2, 1).contains("dy has shape"));
    assert!(err(&dy, &w, &t(&[2, 4, 13, 10]), 2, 1).contains("channels"));
    assert!(err(&t(&[1, 7, 7, 5]), &w, &dx, 2, 1).contains("dy has shape"));
    // Ranks, a zero stride, a kernel larger than the padded input, aliasing.
    assert!(err(&t(&[7, 7, 5]), &w, &dx, 2, 1).contains("4 dimensions"));
    assert!(err(&dy, &t(&[7, 5, 9]), &dx, 2, 1).contains("4 dimensions"));
    assert!(err(&dy, &w, &t(&[5, 13, 10]), 2, 1).contains("4 dimensions"));
    assert!(err(&dy, &w, &dx, 0, 1).contains("stride"));
    assert!(err(&dy, &t(&[7, 5, 16, 3]), &dx, 2, 1).contains("larger"));
    let sq = t(&[1, 3, 8, 8]);
    assert!(err(&sq, &t(&[3, 3, 3, 3]), &sq, 1, 1).contains("share memory"));
    let u = gpu().upload_u32(&[2, 7, 7, 5], &[0; 490]).unwrap();
    assert!(err(&u, &w, &dx, 2, 1).contains("f32"));
    if !subgroup8() {
        let p = Conv2dParams {
            stride: 2,
            padding: 1,
        };
        let mut r = rec();
        assert!(conv2d_input_grad_with(&mut r, &dy, &w, &dx, p, KernelPath::Subgroup8).is_err());
        assert!(r.is_empty());
    }
}

/// Milliseconds of one execution of `f` (recorded, then timed from submit to completion).
fn time_ms(f: &dyn Fn(&mut equireg_gpu::Recorder)) -> f64 {
    let mut r = rec();
    f(&mut r);
    let t0 = std::time::Instant::now();
    r.submit().unwrap();
    gpu().sync().unwrap();
    t0.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Speed of the input gradient against the forward conv at one shape ([1, c, hw, hw], c
/// channels in and out, k x k kernel, padding k / 2), the two timed alternately (medians after a
/// warm-up) so that load from elsewhere hits both alike. Prints, asserts nothing.
fn bench(c: usize, hw: usize, k: usize, stride: u32) {
    let g = gpu();
    let reps = 11;
    let p = Conv2dParams {
        stride,
        padding: (k / 2) as u32,
    };
    let xs = [1, c, hw, hw];
    let ys = conv2d_out_shape(&xs, &[c, c, k, k], p).unwrap();
    let x = g.upload(&xs, &random(c * hw * hw, 1)).unwrap();
    let w = g.upload(&[c, c, k, k], &random(c * c * k * k, 2)).unwrap();
    let y = t(&ys);
    let dx = t(&xs);
    let fwd = |r: &mut equireg_gpu::Recorder| conv2d(r, &x, &w, None, None, &y, p).unwrap();
    let bwd = |r: &mut equireg_gpu::Recorder| conv2d_input_grad(r, &y, &w, &dx, p).unwrap();
    time_ms(&fwd);
    time_ms(&bwd);
    let (mut tf, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let (f, b) = (time_ms(&fwd), time_ms(&bwd));
        tf.push(f);
        tb.push(b);
        ratios.push(b / f);
    }
    let (f, b) = (median(tf), median(tb));
    // Multiply-adds of the forward (the gradient does as many).
    let gflop = 2.0 * (c * c * k * k * ys[2] * ys[3]) as f64 * 1e-9;
    println!(
        "conv{k}x{k} stride {stride} c{c} {hw}x{hw} b1 on {}: forward {f:.2} ms ({:.1} GFLOP/s), \
         input grad {b:.2} ms ({:.1} GFLOP/s), ratio of medians {:.2}, median ratio {:.2}",
        g.caps().describe(),
        gflop / f * 1e3,
        gflop / b * 1e3,
        b / f,
        median(ratios)
    );
}

/// Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn bench_input_grad_vs_forward() {
    bench(128, 64, 3, 1);
    bench(128, 64, 3, 2);
    bench(128, 64, 1, 1);
    bench(64, 32, 5, 1);
}
