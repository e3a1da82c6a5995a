//! The shared sampler step kernels against their CPU twins: the row is selected by the GPU
//! counter (a second row after `advance_step`), epsilon is read from 1- and 2-variance-channel
//! model outputs, and bad shapes are errors.

use equireg_gpu::DType;
use equireg_gpu::ops::diffusion::advance_step;
use equireg_gpu::ops::solver_step::{
    AffineTerms, Column, StepTable, affine_update, step_timesteps, tweedie,
};
use equireg_gpu::reference::solver_step as cpu;

use crate::common::{assert_close, gpu, random, rec};

const SHAPE: [usize; 4] = [2, 3, 5, 7];

/// Two distinct rows with every coefficient non-zero.
fn table_rows() -> Vec<f32> {
    let mut rows = random(2 * Column::COUNT, 91);
    rows[Column::Timestep.index()] = 517.0;
    rows[Column::COUNT + Column::Timestep.index()] = 12.5;
    // Large Tweedie coefficients so that the clamp acts on some elements.
    rows[Column::SqrtRecipAbar.index()] = 3.0;
    rows[Column::COUNT + Column::SqrtRecipAbar.index()] = -2.5;
    rows
}

#[test]
fn step_kernels_match_the_cpu_twins_on_both_rows() {
    let g = gpu();
    let n: usize = SHAPE.iter().product();
    let rows = table_rows();
    let table = g.upload(&[2, Column::COUNT], &rows).unwrap();
    let step = g.upload_u32(&[1], &[0]).unwrap();
    let st = StepTable {
        table: &table,
        step: &step,
    };
    for model_channels in [SHAPE[1], 2 * SHAPE[1]] {
        let mshape = [SHAPE[0], model_channels, SHAPE[2], SHAPE[3]];
        let x = random(n, 1);
        let model = random(mshape.iter().product(), 2);
        let z = random(n, 3);
        let grad = random(n, 4);
        let xt = g.upload(&SHAPE, &x).unwrap();
        let mt = g.upload(&mshape, &model).unwrap();
        let zt = g.upload(&SHAPE, &z).unwrap();
        let gt = g.upload(&SHAPE, &grad).unwrap();
        let x0 = g.alloc(&SHAPE, DType::F32).unwrap();
        let out = g.alloc(&SHAPE, DType::F32).unwrap();
        let t = g.alloc(&[SHAPE[0]], DType::F32).unwrap();
        for row in 0..2 {
            g.write(&step, &[row as u32]).unwrap();
            for clip in [false, true] {
                let mut r = rec();
                step_timesteps(&mut r, st, &t).unwrap();
                tweedie(&mut r, st, &xt, &mt, &x0, clip).unwrap();
                let terms = AffineTerms {
                    x0: &x0,
                    x: &xt,
                    model_out: &mt,
                    noise: &zt,
                    grad: &gt,
                };
                affine_update(&mut r, st, terms, &out).unwrap();
                r.submit().unwrap();
                let row_vals = &rows[row * Column::COUNT..(row + 1) * Column::COUNT];
                let want_x0 = cpu::tweedie(row_vals, SHAPE, model_channels, &x, &model, clip);
                let got_x0 = g.download(&x0).unwrap();
                assert_close(&got_x0, &want_x0, 1e-6, 1e-6, "tweedie");
                if clip {
                    assert!(
                        want_x0.iter().any(|v| v.abs() == 1.0),
                        "the clamp never acted"
                    );
                }
                let want = cpu::affine_update(
                    row_vals,
                    SHAPE,
                    model_channels,
                    &want_x0,
                    &x,
                    &model,
                    &z,
                    &grad,
                );
                assert_close(
                    &g.download(&out).unwrap(),
                    &want,
                    1e-6,
                    1e-6,
                    "affine_update",
                );
                let want_t = row_vals[Column::Timestep.index()];
                assert_eq!(g.download(&t).unwrap(), vec![want_t; SHAPE[0]]);
            }
        }
    }
    // The counter moves rows on the GPU, and a counter past the end stays on the last row.
    g.write(&step, &[1u32]).unwrap();
    let t = g.alloc(&[SHAPE[0]], DType::F32).unwrap();
    let mut r = rec();
    advance_step(&mut r, &step).unwrap();
    step_timesteps(&mut r, st, &t).unwrap();
    r.submit().unwrap();
    assert_eq!(g.download(&t).unwrap(), vec![12.5; SHAPE[0]]);
}

#[test]
fn step_kernels_refuse_bad_shapes() {
    let g = gpu();
    let n: usize = SHAPE.iter().product();
    let table = g.upload(&[2, Column::COUNT], &table_rows()).unwrap();
    let narrow = g.upload(&[2, 3], &[0.0; 6]).unwrap();
    let step = g.upload_u32(&[1], &[0]).unwrap();
    let fstep = g.upload(&[1], &[0.0]).unwrap();
    let x = g.upload(&SHAPE, &random(n, 5)).unwrap();
    let model = g.upload(&[2, 5, 5, 7], &random(2 * 5 * 35, 6)).unwrap();
    let good_model = g.upload(&SHAPE, &random(n, 7)).unwrap();
    let x0 = g.alloc(&SHAPE, DType::F32).unwrap();
    let mut r = rec();
    let st = StepTable {
        table: &table,
        step: &step,
    };
    assert!(tweedie(&mut r, st, &x, &model, &x0, true).is_err());
    let bad = StepTable {
        table: &narrow,
        step: &step,
    };
    assert!(tweedie(&mut r, bad, &x, &good_model, &x0, true).is_err());
    let bad = StepTable {
        table: &table,
        step: &fstep,
    };
    assert!(tweedie(&mut r, bad, &x, &good_model, &x0, true).is_err());
    // out aliasing an input is refused.
    let terms = AffineTerms {
        x0: &x0,
        x: &x,
        model_out: &good_model,
        noise: &x0,
        grad: &x0,
    };
    assert!(affine_update(&mut r, st, terms, &x).is_err());
}

#[test]
fn adam_steps_match_torchs_update_over_several_iterations() {
    use equireg_gpu::ops::solver_step::{AdamSettings, AdamState, adam_step};
    let g = gpu();
    let n = 1000;
    let settings = AdamSettings {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
    };
    let u0 = random(n, 21);
    let u = g.upload(&[n], &u0).unwrap();
    let m = g.upload(&[n], &vec![0.0; n]).unwrap();
    let v = g.upload(&[n], &vec![0.0; n]).unwrap();
    let iter = g.upload_u32(&[1], &[0]).unwrap();
    let (mut cm, mut cv) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut cu: Vec<f64> = u0.iter().map(|&x| x as f64).collect();
    for t in 1..=5u32 {
        // Gradients of both signs and of very different sizes (some near eps).
        let grad: Vec<f32> = random(n, 30 + t as u64)
            .iter()
            .enumerate()
            .map(|(i, x)| x * 10f32.powi((i % 7) as i32 - 5))
            .collect();
        let gt = g.upload(&[n], &grad).unwrap();
        let mut r = rec();
        let state = AdamState {
            m: &m,
            v: &v,
            iter: &iter,
        };
        adam_step(&mut r, state, &gt, &u, settings).unwrap();
        advance_step(&mut r, &iter).unwrap();
        r.submit().unwrap();
        cpu::adam_step(t, &grad, &mut cm, &mut cv, &mut cu, 0.1, 0.9, 0.99, 1e-8);
    }
    let want: Vec<f32> = cu.iter().map(|&x| x as f32).collect();
    assert_close(&g.download(&u).unwrap(), &want, 2e-6, 2e-6, "adam u");
    let bad = AdamSettings {
        beta2: 1.0,
        ..settings
    };
    let state = AdamState {
        m: &m,
        v: &v,
        iter: &iter,
    };
    assert!(adam_step(&mut rec(), state, &m, &u, bad).is_err());
}
