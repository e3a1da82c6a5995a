//! conv2d against the CPU reference on both kernel families, with sizes that are not multiples
//! of any tile (channels 5/7/33, 13x10 images), batch > 1, strides 1 and 2, 1x1 to 61x61.
//!
//! Tolerance: |got - want| <= atol + 1e-4 |want| with atol = 1e-4 * max(1, sqrt(K / 100)),
//! K = ci * kh * kw terms per output (inputs uniform in [-1, 1), f32 accumulation on the GPU).

use equireg_gpu::ops::conv::{Conv2dParams, KernelPath, conv2d_out_shape, conv2d_with};
use equireg_gpu::reference::conv as cpu;
use equireg_gpu::{DType, Tensor};

use crate::common::{assert_close, gpu, random, rec, rel_l2};

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    stride: u32,
    pad: u32,
    bias: bool,
    residual: bool,
}

const fn case(
    x: [usize; 4],
    w: [usize; 4],
    stride: u32,
    pad: u32,
    bias: bool,
    residual: bool,
) -> Case {
    Case {
        x,
        w,
        stride,
        pad,
        bias,
        residual,
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
    let p = Conv2dParams {
        stride: c.stride,
        padding: c.pad,
    };
    let oshape = conv2d_out_shape(&c.x, &c.w, p).unwrap();
    let xs = random(c.x.iter().product(), seed);
    let ws = random(c.w.iter().product(), seed + 1);
    let bs = random(c.w[0], seed + 2);
    let rs = random(oshape.iter().product(), seed + 3);
    let xt = g.upload(&c.x, &xs).unwrap();
    let wt = g.upload(&c.w, &ws).unwrap();
    let bt = g.upload(&[c.w[0]], &bs).unwrap();
    let rt = g.upload(&oshape, &rs).unwrap();
    let out = g.alloc(&oshape, DType::F32).unwrap();
    let mut r = rec();
    conv2d_with(
        &mut r,
        &xt,
        &wt,
        c.bias.then_some(&bt),
        c.residual.then_some(&rt),
        &out,
        p,
        path,
    )
    .unwrap();
    r.submit().unwrap();
    let (want, wshape) = cpu::conv2d(
        &xs,
        c.x,
        &ws,
        c.w,
        c.bias.then_some(&bs[..]),
        c.residual.then_some(&rs[..]),
        c.stride as usize,
        c.pad as usize,
    );
    assert_eq!(wshape, oshape);
    let k = (c.w[1] * c.w[2] * c.w[3]) as f32;
    let atol = 1e-4 * (k / 100.0).sqrt().max(1.0);
    let got = g.download(&out).unwrap();
    // The whole output too: a few elements within tolerance must not hide a wrong tile.
    let e = rel_l2(&got, &want);
    assert!(
        e < 1e-5,
        "conv2d x {:?} w {:?} on {path:?}: relative L2 error {e}",
        c.x,
        c.w
    );
    assert_close(
        &got,
        &want,
        atol,
        1e-4,
        &format!(
            "conv2d x {:?} w {:?} stride {} pad {} bias {} residual {} on {path:?}",
            c.x, c.w, c.stride, c.pad, c.bias, c.residual
        ),
    );
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
            // Non-square, channels not multiples of any tile, batch 2, bias and residual.
            case([2, 5, 13, 10], [7, 5, 3, 3], 1, 1, true, true),
            // Several 8x16 pixel tiles and 16-channel tiles (33 = 16 + 16 + 1).
            case([1, 33, 19, 35], [33, 33, 3, 3], 1, 1, true, false),
            // No padding (valid convolution) and a single channel.
            case([3, 1, 10, 12], [1, 1, 3, 3], 1, 0, false, true),
        ],
        100,
    );
}

#[test]
fn conv_strided_1x1_5x5_match_reference() {
    run_all(
        &[
            case([2, 5, 13, 10], [7, 5, 3, 3], 2, 1, true, false),
            case([2, 33, 9, 11], [33, 33, 1, 1], 1, 0, true, true),
            case([2, 4, 9, 9], [6, 4, 1, 1], 2, 0, false, true),
            case([1, 3, 12, 7], [9, 3, 5, 5], 1, 2, true, false),
            case([2, 6, 11, 14], [5, 6, 5, 5], 2, 2, false, false),
        ],
        200,
    );
}

#[test]
fn large_kernel_single_channel_matches_reference() {
    // A 61x61 blur-sized kernel on a small image, as used per channel ([N*C, 1, H, W]).
    run_all(
        &[case([3, 1, 40, 37], [1, 1, 61, 61], 1, 30, false, false)],
        300,
    );
}

fn t(shape: &[usize]) -> Tensor {
    gpu().alloc(shape, DType::F32).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn err(
    r: &mut equireg_gpu::Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    res: Option<&Tensor>,
    o: &Tensor,
    p: Conv2dParams,
) -> String {
    conv2d_with(r, x, w, b, res, o, p, KernelPath::Auto)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_shapes_are_errors() {
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
    };
    let x = t(&[2, 5, 13, 10]);
    let w = t(&[7, 5, 3, 3]);
    let out = t(&[2, 7, 13, 10]);
    let mut r = rec();
    // Channel mismatch, wrong output, wrong bias and residual, 3-D input.
    assert!(err(&mut r, &x, &t(&[7, 4, 3, 3]), None, None, &out, p).contains("channels"));
    assert!(err(&mut r, &x, &w, None, None, &t(&[2, 7, 12, 10]), p).contains("out"));
    assert!(err(&mut r, &x, &w, Some(&t(&[6])), None, &out, p).contains("bias"));
    assert!(err(&mut r, &x, &w, None, Some(&t(&[2, 7, 13, 9])), &out, p).contains("residual"));
    assert!(err(&mut r, &t(&[5, 13, 10]), &w, None, None, &out, p).contains("4"));
    // A kernel larger than the padded image, a zero stride.
    let big = t(&[7, 5, 16, 3]);
    assert!(err(&mut r, &x, &big, None, None, &out, p).contains("larger"));
    let s0 = Conv2dParams {
        stride: 0,
        padding: 1,
    };
    assert!(err(&mut r, &x, &w, None, None, &out, s0).contains("stride"));
    // The output may not alias an input.
    let same = t(&[1, 3, 8, 8]);
    let w33 = t(&[3, 3, 3, 3]);
    assert!(err(&mut r, &same, &w33, None, None, &same, p).contains("share memory"));
    assert!(conv2d_out_shape(&[1, 3, 8, 8], &[3, 3, 3], p).is_err());
    if !subgroup8() {
        assert!(conv2d_with(&mut r, &x, &w, None, None, &out, p, KernelPath::Subgroup8).is_err());
    }
    assert!(r.is_empty());
}

#[test]
fn out_shape_follows_the_formula() {
    let s2 = Conv2dParams {
        stride: 2,
        padding: 1,
    };
    assert_eq!(
        conv2d_out_shape(&[2, 5, 13, 10], &[7, 5, 3, 3], s2).unwrap(),
        [2, 7, 7, 5]
    );
    let s1 = Conv2dParams {
        stride: 1,
        padding: 30,
    };
    assert_eq!(
        conv2d_out_shape(&[1, 1, 40, 37], &[1, 1, 61, 61], s1).unwrap(),
        [1, 1, 40, 37]
    );
}
