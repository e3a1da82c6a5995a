//! The Darcy residual and its gradient against the CPU twin, the twin's gradient against
//! finite differences of its loss, and the errors of bad settings.

use equireg_gpu::DType;
use equireg_gpu::ops::pde_residual::{DarcyResidualParams, darcy_residual, darcy_residual_grad};
use equireg_gpu::reference::pde_residual as cpu;

use crate::common::{assert_close, gpu, random, rec};

const SHAPE: [usize; 4] = [2, 2, 11, 9];

fn settings(delta: f32) -> DarcyResidualParams {
    DarcyResidualParams {
        a_mean: 7.5,
        a_scale: 4.0,
        u_mean: 0.5,
        u_scale: 0.3,
        spacing: 0.125,
        crop: 2,
        weight: 0.7,
        delta,
    }
}

#[test]
fn darcy_residual_and_gradient_match_the_cpu_twin() {
    let g = gpu();
    let [n, _, h, w] = SHAPE;
    let x = random(SHAPE.iter().product(), 31);
    let start = random(SHAPE.iter().product(), 32);
    for delta in [0.0, 1.0] {
        let p = settings(delta);
        let xt = g.upload(&SHAPE, &x).unwrap();
        let r = g.alloc(&[n, h, w], DType::F32).unwrap();
        let gr = g.alloc(&[n, h, w], DType::F32).unwrap();
        let s = g.alloc(&SHAPE, DType::F32).unwrap();
        // dx accumulates: start it from non-zero values.
        let dx = g.upload(&SHAPE, &start).unwrap();
        let mut rc = rec();
        darcy_residual(&mut rc, &xt, &p, &r, &gr).unwrap();
        darcy_residual_grad(&mut rc, &xt, &p, &gr, &s, &dx).unwrap();
        rc.submit().unwrap();
        let want = cpu::darcy_residual(&x, SHAPE, &p);
        let want_r: Vec<f32> = want
            .iter()
            .flat_map(|(r, _)| r.iter().map(|v| *v as f32))
            .collect();
        let got_r = g.download(&r).unwrap();
        let scale = want_r.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_close(&got_r, &want_r, 2e-6 * scale, 1e-5, "residual");
        // Large residuals: Huber's gradient is clamped on some pixels and not others.
        if delta > 0.0 {
            assert!(want_r.iter().any(|v| v.abs() > 1.0) && want_r.iter().any(|v| v.abs() < 1.0));
        }
        let grad = cpu::darcy_residual_grad(&x, SHAPE, &p);
        let want_dx: Vec<f32> = grad
            .iter()
            .zip(&start)
            .map(|(g, s)| (*g + *s as f64) as f32)
            .collect();
        let got_dx = g.download(&dx).unwrap();
        let gscale = grad.iter().fold(0f64, |m, v| m.max(v.abs())) as f32;
        assert_close(&got_dx, &want_dx, 2e-5 * gscale.max(1.0), 1e-5, "gradient");
    }
}

#[test]
fn darcy_gradient_matches_finite_differences() {
    let x = random(SHAPE.iter().product(), 41);
    for delta in [0.0f32, 1.0] {
        let p = settings(delta);
        let grad = cpu::darcy_residual_grad(&x, SHAPE, &p);
        let loss = |x: &[f32]| -> f64 {
            cpu::darcy_residual(x, SHAPE, &p)
                .iter()
                .map(|(_, l)| l)
                .sum()
        };
        // Every element of one sample's channels near the border and inside.
        let plane = SHAPE[2] * SHAPE[3];
        for k in (0..x.len()).step_by(7) {
            let eps = 1.0f32 / 512.0;
            let mut up = x.clone();
            up[k] += eps;
            let mut down = x.clone();
            down[k] -= eps;
            let fd = (loss(&up) - loss(&down)) / (2.0 * eps as f64);
            let tol = 1e-4 * (1.0 + grad[k].abs())
                + if delta > 0.0 {
                    2e-3 * grad[k].abs()
                } else {
                    0.0
                };
            assert!(
                (fd - grad[k]).abs() <= tol.max(1e-6),
                "delta {delta}, element {k} (channel {}): fd {fd} vs {}",
                k / plane % 2,
                grad[k]
            );
        }
    }
}

#[test]
fn darcy_residual_refuses_bad_settings() {
    let g = gpu();
    let x = g.alloc(&SHAPE, DType::F32).unwrap();
    let r = g.alloc(&[2, 11, 9], DType::F32).unwrap();
    let gr = g.alloc(&[2, 11, 9], DType::F32).unwrap();
    let mut rc = rec();
    let mut p = settings(1.0);
    p.crop = 5;
    assert!(
        darcy_residual(&mut rc, &x, &p, &r, &gr)
            .unwrap_err()
            .to_string()
            .contains("interior")
    );
    let mut p = settings(1.0);
    p.delta = -1.0;
    assert!(darcy_residual(&mut rc, &x, &p, &r, &gr).is_err());
    let mut p = settings(1.0);
    p.weight = f32::NAN;
    assert!(darcy_residual(&mut rc, &x, &p, &r, &gr).is_err());
    let three = g.alloc(&[2, 3, 11, 9], DType::F32).unwrap();
    assert!(
        darcy_residual(&mut rc, &three, &settings(1.0), &r, &gr)
            .unwrap_err()
            .to_string()
            .contains("[N, 2, H, W]")
    );
    assert!(rc.is_empty());
}
