use equireg_gpu::DType;
use equireg_gpu::ops::transforms::{Transform, apply_transform};
use equireg_gpu::reference::transforms as cpu;

use crate::common::{gpu, random, rec};

// Batch > 1 and a non-square plane, so a swapped H/W or a wrong plane stride shows.
const SHAPE: [usize; 4] = [2, 3, 5, 7];

fn numel() -> usize {
    SHAPE.iter().product()
}

/// Applies `ts` in order on the GPU (one recorder, one submit) and returns the result.
fn gpu_chain(x: &[f32], shape: [usize; 4], ts: &[Transform]) -> Vec<f32> {
    let g = gpu();
    let mut cur = g.upload(&shape, x).unwrap();
    let mut r = rec();
    for &t in ts {
        let (h, w) = t.output_hw(cur.shape()[2], cur.shape()[3]);
        let next = g.alloc(&[shape[0], shape[1], h, w], DType::F32).unwrap();
        apply_transform(&mut r, &cur, &next, t).unwrap();
        cur = next;
    }
    r.submit().unwrap();
    g.download(&cur).unwrap()
}

fn all_transforms() -> Vec<Transform> {
    let mut ts = vec![
        Transform::Identity,
        Transform::FlipH,
        Transform::FlipV,
        Transform::Transpose,
    ];
    ts.extend((0..6).map(|k| Transform::Rot90 { k }));
    for (dy, dx) in [
        (0, 0),
        (1, 2),
        (-2, -3),
        (5, 7),
        (7, -9),
        (-12, 15),
        (-1_000_003, 2_000_001),
        (i32::MAX, i32::MIN + 1),
    ] {
        ts.push(Transform::Translate { dy, dx });
    }
    ts
}

#[test]
fn every_transform_matches_reference() {
    let x = random(numel(), 11);
    for t in all_transforms() {
        let got = gpu_chain(&x, SHAPE, &[t]);
        // A gather copies values, so the match is exact.
        assert_eq!(got, cpu::apply_transform(&x, SHAPE, t), "{t:?}");
    }
}

#[test]
fn reference_follows_torch_conventions() {
    // x = [[0, 1, 2], [3, 4, 5]]; the expected planes are torch's results, worked by hand.
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let cases: [(Transform, [f32; 6]); 8] = [
        // torch.rot90(x, 1): the last column becomes the first row.
        (Transform::Rot90 { k: 1 }, [2., 5., 1., 4., 0., 3.]),
        (Transform::Rot90 { k: 2 }, [5., 4., 3., 2., 1., 0.]),
        // torch.rot90(x, 3) == torch.rot90(x, -1): clockwise.
        (Transform::Rot90 { k: 3 }, [3., 0., 4., 1., 5., 2.]),
        (Transform::FlipH, [2., 1., 0., 5., 4., 3.]),
        (Transform::FlipV, [3., 4., 5., 0., 1., 2.]),
        (Transform::Transpose, [0., 3., 1., 4., 2., 5.]),
        // torch.roll(x, (0, 1), dims=(-2, -1)): the last column wraps to the front.
        (
            Transform::Translate { dy: 0, dx: 1 },
            [2., 0., 1., 5., 3., 4.],
        ),
        (
            Transform::Translate { dy: 1, dx: -1 },
            [4., 5., 3., 1., 2., 0.],
        ),
    ];
    for (t, want) in cases {
        assert_eq!(cpu::apply_transform(&x, [1, 1, 2, 3], t), want, "{t:?}");
        assert_eq!(gpu_chain(&x, [1, 1, 2, 3], &[t]), want, "{t:?} on the GPU");
    }
}

#[test]
fn inverse_undoes_every_transform() {
    let x = random(numel(), 12);
    for t in all_transforms() {
        assert_eq!(
            gpu_chain(&x, SHAPE, &[t, t.inverse()]),
            x,
            "{t:?} then {:?}",
            t.inverse()
        );
        if !matches!(t, Transform::Rot90 { k } if k >= 4) {
            assert_eq!(t.inverse().inverse(), t, "{t:?}");
        }
    }
}

#[test]
fn group_relations_hold() {
    let x = random(numel(), 13);
    let r1 = Transform::Rot90 { k: 1 };
    let r2 = Transform::Rot90 { k: 2 };
    assert_eq!(gpu_chain(&x, SHAPE, &[r1, r1, r1, r1]), x, "rot90^4");
    assert_eq!(
        gpu_chain(&x, SHAPE, &[r1, r1]),
        gpu_chain(&x, SHAPE, &[r2]),
        "rot90^2 vs rot90 k=2"
    );
    assert_eq!(
        gpu_chain(&x, SHAPE, &[Transform::FlipH, Transform::FlipV]),
        gpu_chain(&x, SHAPE, &[r2]),
        "FlipH then FlipV vs rot90 k=2"
    );
    assert_eq!(
        gpu_chain(&x, SHAPE, &[Transform::Transpose, Transform::FlipV]),
        gpu_chain(&x, SHAPE, &[r1]),
        "transpose then FlipV vs rot90 k=1"
    );
    let (a, b) = (
        Transform::Translate { dy: -3, dx: 4 },
        Transform::Translate { dy: 9, dx: -13 },
    );
    assert_eq!(
        gpu_chain(&x, SHAPE, &[a, b]),
        gpu_chain(&x, SHAPE, &[Transform::Translate { dy: 6, dx: -9 }]),
        "translations add"
    );
    assert_ne!(
        gpu_chain(&x, SHAPE, &[r1, r1]),
        x,
        "rot90^2 is not the identity"
    );
}

#[test]
fn output_hw_swaps_for_odd_turns_and_transpose() {
    for k in 0..8 {
        let want = if k % 2 == 1 { (7, 5) } else { (5, 7) };
        assert_eq!(Transform::Rot90 { k }.output_hw(5, 7), want, "k = {k}");
    }
    assert_eq!(Transform::Transpose.output_hw(5, 7), (7, 5));
    for t in [
        Transform::Identity,
        Transform::FlipH,
        Transform::FlipV,
        Transform::Translate { dy: 3, dx: -8 },
    ] {
        assert_eq!(t.output_hw(5, 7), (5, 7), "{t:?}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let x = g.alloc(&SHAPE, DType::F32).unwrap();
    let same = g.alloc(&SHAPE, DType::F32).unwrap();
    let rank3 = g.alloc(&[3, 5, 7], DType::F32).unwrap();
    let ints = g.alloc(&SHAPE, DType::U32).unwrap();
    let mut r = rec();
    let rot = Transform::Rot90 { k: 1 };
    let e = apply_transform(&mut r, &x, &same, rot)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out has shape"), "{e}");
    let e = apply_transform(&mut r, &rank3, &rank3.reshape(&[3, 5, 7]).unwrap(), rot)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 dimensions"), "{e}");
    let e = apply_transform(&mut r, &x, &x, Transform::FlipH)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must not share memory"), "{e}");
    let e = apply_transform(&mut r, &ints, &same, Transform::FlipH)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32"), "{e}");
    let t = Transform::Translate {
        dy: 0,
        dx: i32::MIN,
    };
    let e = apply_transform(&mut r, &x, &same, t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("i32::MIN"), "{e}");
    assert!(r.is_empty());
}
