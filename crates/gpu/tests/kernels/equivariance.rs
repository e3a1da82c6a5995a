//! EquiReg's group actions and fused equivariance pass against the CPU twin (built from the
//! definitions), finite differences of the penalty, and the GPU element draw.

use equireg_gpu::DType;
use equireg_gpu::ops::equivariance::{
    Action, Dihedral, DrawSpec, Element, Form, Items, Reduce, Residual, draw_element,
    equi_cotangent, equi_norms, penalty, transform,
};
use equireg_gpu::reference::equivariance as cpu;
use equireg_gpu::reference::rng::philox4x32_10;

use crate::common::{assert_close, gpu, random, rec};

fn upload_g(e: Element) -> equireg_gpu::Tensor {
    gpu().upload_u32(&[4], &e.words(0)).unwrap()
}

#[test]
fn dihedral_composition_and_inverses() {
    for a in Dihedral::ALL {
        assert_eq!(a.compose(a.inverse()), Dihedral::Identity, "{a:?}");
        for b in Dihedral::ALL {
            // compose agrees with applying one map after the other.
            let x = random(2 * 3 * 5 * 5, 1);
            let shape = [2, 3, 5, 5];
            let e = |d| Element {
                dihedral: d,
                dy: 0,
                dx: 0,
            };
            let two = cpu::apply(
                &cpu::apply(&x, shape, e(b), 1, false),
                shape,
                e(a),
                1,
                false,
            );
            let one = cpu::apply(&x, shape, e(a.compose(b)), 1, false);
            assert_eq!(two, one, "{a:?} . {b:?}");
        }
    }
    assert_eq!(Dihedral::Rot90.compose(Dihedral::Rot90), Dihedral::Rot180);
}

#[test]
fn transforms_match_reference_and_invert() {
    let g = gpu();
    let shape = [3usize, 2, 6, 6];
    let n: usize = shape.iter().product();
    let x = random(n, 2);
    let xt = g.upload(&shape, &x).unwrap();
    for d in Dihedral::ALL {
        for (dy, dx) in [(0, 0), (2, -3), (-7, 13)] {
            let e = Element {
                dihedral: d,
                dy,
                dx,
            };
            let gt = upload_g(e);
            let fwd = g.alloc(&shape, DType::F32).unwrap();
            let back = g.upload(&shape, &vec![1.0; n]).unwrap();
            let all = Items {
                src_item: 0,
                dst_item: 0,
                count: 3,
            };
            let mut r = rec();
            transform(&mut r, &gt, &xt, &fwd, Action::Forward, all, false, 1).unwrap();
            // back = 1 + g^-1(g(x)) through the accumulate path.
            transform(&mut r, &gt, &fwd, &back, Action::Inverse, all, true, 1).unwrap();
            r.submit().unwrap();
            let want = cpu::apply(&x, shape, e, 1, false);
            assert_eq!(g.download(&fwd).unwrap(), want, "{e:?}");
            let plus_one: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
            assert_close(&g.download(&back).unwrap(), &plus_one, 1e-6, 1e-6, "g^-1 g");
        }
    }
    // Item offsets and a coarser grid (shifts divided by 2), non-square with a flip.
    let shape = [4usize, 3, 4, 6];
    let m: usize = shape.iter().product();
    let x = random(m, 3);
    let xt = g.upload(&shape, &x).unwrap();
    let out = g.upload(&shape, &vec![0.0; m]).unwrap();
    let e = Element {
        dihedral: Dihedral::FlipV,
        dy: 4,
        dx: -2,
    };
    let mut r = rec();
    let items = Items {
        src_item: 1,
        dst_item: 2,
        count: 2,
    };
    transform(
        &mut r,
        &upload_g(e),
        &xt,
        &out,
        Action::Forward,
        items,
        false,
        2,
    )
    .unwrap();
    r.submit().unwrap();
    let item = m / 4;
    let want = cpu::apply(&x[item..3 * item], [2, 3, 4, 6], e, 2, false);
    let got = g.download(&out).unwrap();
    assert_eq!(&got[2 * item..], &want[..]);
    assert!(
        got[..2 * item].iter().all(|&v| v == 0.0),
        "other items untouched"
    );
}

fn check_fused(form: Form, reduce: Reduce, rho_is_g: bool, f_shape: [usize; 4], e: Element) {
    let g = gpu();
    let n = match form {
        Form::Equi => f_shape[0] / 2,
        Form::EquiPlus => f_shape[0],
    };
    let x_shape = match form {
        Form::Equi => [n, 3, 8, 8],
        Form::EquiPlus => f_shape,
    };
    let fl: usize = f_shape.iter().product();
    let xl: usize = x_shape.iter().product();
    let f = random(fl, 10);
    let x = random(xl, 11);
    let alpha = 0.37;
    let shift_div = if form == Form::Equi { 2 } else { 1 };
    let (ft, xt, gt) = (
        g.upload(&f_shape, &f).unwrap(),
        g.upload(&x_shape, &x).unwrap(),
        upload_g(e),
    );
    let sq = g.alloc(&[n], DType::F32).unwrap();
    let pen = g.alloc(&[n], DType::F32).unwrap();
    let df = g.alloc(&f_shape, DType::F32).unwrap();
    let dx = g.upload(&x_shape, &vec![0.5; xl]).unwrap();
    let res = Residual {
        g: &gt,
        f_out: &ft,
        x: &xt,
        form,
        rho_is_g,
        shift_div: shift_div as u32,
    };
    let mut r = rec();
    equi_norms(&mut r, res, &sq).unwrap();
    equi_cotangent(&mut r, res, &sq, reduce, alpha, &df, &dx, true).unwrap();
    let item = f_shape[1] * f_shape[2] * f_shape[3];
    penalty(&mut r, &sq, &pen, reduce, alpha, item).unwrap();
    r.submit().unwrap();
    let (wp, wdf, wdx) = cpu::penalty_and_cotangents(
        &f,
        f_shape,
        &x,
        e,
        form,
        reduce,
        alpha as f64,
        rho_is_g,
        shift_div,
    );
    let what = format!("{form:?} {reduce:?} rho {rho_is_g} {e:?}");
    let wp32: Vec<f32> = wp.iter().map(|&v| v as f32).collect();
    assert_close(
        &g.download(&pen).unwrap(),
        &wp32,
        1e-5,
        1e-5,
        &format!("penalty {what}"),
    );
    assert_close(
        &g.download(&df).unwrap(),
        &wdf,
        1e-6,
        1e-5,
        &format!("df {what}"),
    );
    let wdx_acc: Vec<f32> = wdx.iter().map(|v| v + 0.5).collect();
    assert_close(
        &g.download(&dx).unwrap(),
        &wdx_acc,
        1e-6,
        1e-5,
        &format!("dx {what}"),
    );

    // Finite differences of the reference penalty along a random direction of (f, x).
    let (uf, ux) = (random(fl, 12), random(xl, 13));
    let h = 1e-3f32;
    let total = |s: f32| -> f64 {
        let f2: Vec<f32> = f.iter().zip(&uf).map(|(a, b)| a + s * b).collect();
        let x2: Vec<f32> = x.iter().zip(&ux).map(|(a, b)| a + s * b).collect();
        let (p, _, _) = cpu::penalty_and_cotangents(
            &f2,
            f_shape,
            &x2,
            e,
            form,
            reduce,
            alpha as f64,
            rho_is_g,
            shift_div,
        );
        p.iter().sum()
    };
    let fd = (total(h) - total(-h)) / (2.0 * h as f64);
    let dot: f64 = wdf
        .iter()
        .zip(&uf)
        .map(|(a, b)| (a * b) as f64)
        .sum::<f64>()
        + wdx
            .iter()
            .zip(&ux)
            .map(|(a, b)| (a * b) as f64)
            .sum::<f64>();
    assert!(
        (fd - dot).abs() <= 2e-3 * fd.abs().max(1.0),
        "{what}: finite difference {fd} vs gradient {dot}"
    );
}

#[test]
fn fused_pass_matches_reference_and_finite_differences() {
    let elems = [
        Element {
            dihedral: Dihedral::FlipH,
            dy: 0,
            dx: 0,
        },
        Element {
            dihedral: Dihedral::Rot90,
            dy: 0,
            dx: 0,
        },
        Element {
            dihedral: Dihedral::AntiTranspose,
            dy: 4,
            dx: -6,
        },
    ];
    for e in elems {
        for reduce in [Reduce::Norm, Reduce::SqNorm, Reduce::Mse] {
            // f with a spatial output 2x coarser than the image (shifts halved on its grid).
            check_fused(Form::Equi, reduce, true, [4, 5, 4, 4], e);
            // x - g^-1 f(g x) with f keeping the shape; non-multiple-of-WG sizes.
            check_fused(Form::EquiPlus, reduce, true, [2, 3, 6, 6], e);
        }
    }
    // f returning a vector: invariance (rho = identity).
    check_fused(Form::Equi, Reduce::Norm, false, [4, 7, 1, 1], elems[1]);
}

#[test]
fn elements_are_drawn_from_the_step_counter() {
    let g = gpu();
    let codes = [
        Dihedral::Rot90.code(),
        Dihedral::Rot270.code(),
        Dihedral::FlipH.code(),
    ];
    let table = g.upload_u32(&[3], &codes).unwrap();
    let out = g.alloc(&[4], DType::U32).unwrap();
    let spec = DrawSpec {
        seed: 99,
        stream: 5,
        max_shift: 3,
        shift_multiple: 4,
    };
    let mut seen = [0usize; 3];
    for step in 0..40u32 {
        let st = g.upload_u32(&[1], &[step]).unwrap();
        let mut r = rec();
        draw_element(&mut r, &table, &st, &out, spec).unwrap();
        r.submit().unwrap();
        let w = g.download_u32(&out).unwrap();
        let ph = philox4x32_10([0, 5, step, 0], [99, 0]);
        let idx = ph[0] % 3;
        let dy = ((ph[1] % 7) as i32 - 3) * 4;
        let dx = ((ph[2] % 7) as i32 - 3) * 4;
        assert_eq!(
            w,
            vec![codes[idx as usize], dy as u32, dx as u32, idx],
            "step {step}"
        );
        seen[idx as usize] += 1;
    }
    assert!(
        seen.iter().all(|&c| c > 0),
        "every element is drawn: {seen:?}"
    );
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let gt = upload_g(Element {
        dihedral: Dihedral::FlipH,
        dy: 0,
        dx: 0,
    });
    let x = g.alloc(&[2, 3, 4, 4], DType::F32).unwrap();
    let f_wrong = g.alloc(&[3, 3, 4, 4], DType::F32).unwrap();
    let sq = g.alloc(&[2], DType::F32).unwrap();
    let res = Residual {
        g: &gt,
        f_out: &f_wrong,
        x: &x,
        form: Form::Equi,
        rho_is_g: true,
        shift_div: 1,
    };
    let mut r = rec();
    assert!(equi_norms(&mut r, res, &sq).is_err());
    let out = g.alloc(&[1, 3, 4, 4], DType::F32).unwrap();
    let items = Items {
        src_item: 0,
        dst_item: 0,
        count: 2,
    };
    assert!(transform(&mut r, &gt, &x, &out, Action::Forward, items, false, 1).is_err());
}
