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
            active: None,
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
        active: None,
    };
    assert!(adam_step(&mut rec(), state, &m, &u, bad).is_err());
}

#[test]
fn masked_adam_leaves_stopped_samples_alone_and_steps_the_others_as_torch() {
    use equireg_gpu::ops::solver_step::{AdamSettings, AdamState, adam_step};
    let g = gpu();
    let (items, per) = (3usize, 40usize);
    let n = items * per;
    let settings = AdamSettings {
        lr: 0.02,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let u0 = random(n, 41);
    let u = g.upload(&[items, per], &u0).unwrap();
    let m = g.upload(&[items, per], &vec![0.0; n]).unwrap();
    let v = g.upload(&[items, per], &vec![0.0; n]).unwrap();
    let iter = g.upload_u32(&[1], &[0]).unwrap();
    let flags = [1.0f32, 0.0, 1.0];
    let active = g.upload(&[items], &flags).unwrap();
    let (mut cm, mut cv) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut cu: Vec<f64> = u0.iter().map(|&x| x as f64).collect();
    for t in 1..=4u32 {
        let grad = random(n, 50 + t as u64);
        let gt = g.upload(&[items, per], &grad).unwrap();
        let mut r = rec();
        let state = AdamState {
            m: &m,
            v: &v,
            iter: &iter,
            active: Some(&active),
        };
        adam_step(&mut r, state, &gt, &u, settings).unwrap();
        advance_step(&mut r, &iter).unwrap();
        r.submit().unwrap();
        cpu::adam_step_masked(
            t,
            &grad,
            &mut cm,
            &mut cv,
            &mut cu,
            &flags,
            0.02,
            [0.9, 0.999, 1e-8],
        );
    }
    let got = g.download(&u).unwrap();
    let want: Vec<f32> = cu.iter().map(|&x| x as f32).collect();
    assert_close(&got, &want, 2e-6, 2e-6, "masked adam u");
    assert_eq!(
        &got[per..2 * per],
        &u0[per..2 * per],
        "a stopped sample moved"
    );
    assert!(got[..per] != u0[..per], "an active sample did not move");
    // The flags must be one per sample.
    let wrong = g.upload(&[2], &[1.0, 1.0]).unwrap();
    let state = AdamState {
        m: &m,
        v: &v,
        iter: &iter,
        active: Some(&wrong),
    };
    assert!(adam_step(&mut rec(), state, &m, &u, settings).is_err());
}

#[test]
fn stop_flags_latch_below_the_threshold_and_reset_counter_zeroes() {
    use equireg_gpu::ops::solver_step::{reset_counter, stop_flags};
    let g = gpu();
    let norm = [0.5f32, 2.0, 1.0, 3.0];
    let start = [1.0f32, 1.0, 1.0, 0.0];
    let nt = g.upload(&[4], &norm).unwrap();
    let active = g.upload(&[4], &start).unwrap();
    let mut r = rec();
    // Threshold 1.0: 0.25 < 1 stops, 4 and 1 (not below) stay, a stopped one stays stopped.
    stop_flags(&mut r, &nt, &active, 1.0).unwrap();
    r.submit().unwrap();
    let mut want = start;
    cpu::stop_flags(&norm, &mut want, 1.0);
    assert_eq!(g.download(&active).unwrap(), want);
    assert_eq!(want, [0.0, 1.0, 1.0, 0.0]);
    let bad = g.upload(&[3], &[1.0, 1.0, 1.0]).unwrap();
    assert!(stop_flags(&mut rec(), &nt, &bad, 1.0).is_err());
    let counter = g.upload_u32(&[1], &[17]).unwrap();
    let mut r = rec();
    reset_counter(&mut r, &counter).unwrap();
    advance_step(&mut r, &counter).unwrap();
    r.submit().unwrap();
    assert_eq!(g.download_u32(&counter).unwrap(), [1]);
}

#[test]
fn tweedie_cotangent_matches_the_cpu_twin_through_the_named_columns() {
    use equireg_gpu::ops::solver_step::tweedie_cotangent;
    use equireg_gpu::reference::diffusion as dcpu;
    let g = gpu();
    let n: usize = SHAPE.iter().product();
    let rows = table_rows();
    let table = g.upload(&[2, Column::COUNT], &rows).unwrap();
    let step = g.upload_u32(&[1], &[1]).unwrap();
    let mshape = [SHAPE[0], 2 * SHAPE[1], SHAPE[2], SHAPE[3]];
    let x = random(n, 61);
    let model = random(2 * n, 62);
    let dx0 = random(n, 63);
    let (xt, mt, dt) = (
        g.upload(&SHAPE, &x).unwrap(),
        g.upload(&mshape, &model).unwrap(),
        g.upload(&SHAPE, &dx0).unwrap(),
    );
    let dmodel = g.alloc(&mshape, DType::F32).unwrap();
    let direct = g.alloc(&SHAPE, DType::F32).unwrap();
    let mut r = rec();
    let st = StepTable {
        table: &table,
        step: &step,
    };
    tweedie_cotangent(&mut r, st, &xt, &mt, &dt, &dmodel, &direct, true).unwrap();
    r.submit().unwrap();
    let row: [f32; 8] = rows[Column::COUNT..2 * Column::COUNT].try_into().unwrap();
    let (want_dm, want_direct) =
        dcpu::x0_cotangent(&row, SHAPE, 2 * SHAPE[1], &x, &model, &dx0, true);
    assert_close(
        &g.download(&direct).unwrap(),
        &want_direct,
        1e-6,
        1e-6,
        "direct",
    );
    assert_close(
        &g.download(&dmodel).unwrap(),
        &want_dm,
        1e-6,
        1e-6,
        "d model",
    );
}
