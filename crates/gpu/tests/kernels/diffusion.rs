//! The reverse-diffusion step kernels against their CPU twins; the counter-indexed table row.

use equireg_gpu::DType;
use equireg_gpu::ops::diffusion::{
    StepState, TweedieOptions, advance_step, guided_update, loss_cotangent, posterior_step,
    set_timesteps, x0_cotangent,
};
use equireg_gpu::reference::diffusion as cpu;

use crate::common::{assert_close, gpu, random, rec};

/// Three rows with distinct values; the kernels must pick the one the counter names.
fn table() -> Vec<[f32; 8]> {
    vec![
        [999.0, 1.7, 1.3, 0.2, 0.9, -3.0, -4.5, 1.0],
        [500.0, 1.2, 0.6, 0.4, 0.7, -5.0, -6.0, 1.0],
        [0.0, 1.01, 0.1, 1.0, 0.0, -9.0, -9.0, 0.0],
    ]
}

fn upload_table() -> equireg_gpu::Tensor {
    let rows = table();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    gpu().upload(&[rows.len(), 8], &flat).unwrap()
}

#[test]
fn timesteps_follow_the_counter_and_advance() {
    let g = gpu();
    let tab = upload_table();
    let step = g.upload_u32(&[1], &[0]).unwrap();
    let t = g.alloc(&[3], DType::F32).unwrap();
    for (k, want) in [999.0f32, 500.0, 0.0, 0.0].into_iter().enumerate() {
        let mut r = rec();
        set_timesteps(
            &mut r,
            StepState {
                table: &tab,
                step: &step,
            },
            &t,
        )
        .unwrap();
        advance_step(&mut r, &step).unwrap();
        r.submit().unwrap();
        assert_eq!(g.download(&t).unwrap(), vec![want; 3], "step {k}");
    }
    assert_eq!(g.download_u32(&step).unwrap(), vec![4]);
}

#[test]
fn posterior_step_and_x0_cotangent_match_reference() {
    let g = gpu();
    let tab = upload_table();
    for (shape, mc, learned, clip, row) in [
        ([2usize, 3, 5, 7], 6usize, true, true, 0usize),
        ([1, 3, 4, 9], 3, false, true, 1),
        ([2, 2, 3, 3], 4, true, false, 2),
    ] {
        let n: usize = shape.iter().product();
        let model_len = n / shape[1] * mc;
        let x = random(n, 1);
        // Spread eps so that some x0 fall outside the clip range and some inside.
        let model: Vec<f32> = random(model_len, 2).iter().map(|v| 1.5 * v).collect();
        let noise = random(n, 3);
        let dx0 = random(n, 4);
        let step = g.upload_u32(&[1], &[row as u32]).unwrap();
        let st = StepState {
            table: &tab,
            step: &step,
        };
        let xt = g.upload(&shape, &x).unwrap();
        let mt = g
            .upload(&[shape[0], mc, shape[2], shape[3]], &model)
            .unwrap();
        let zt = g.upload(&shape, &noise).unwrap();
        let dt = g.upload(&shape, &dx0).unwrap();
        let x0 = g.alloc(&shape, DType::F32).unwrap();
        let prev = g.alloc(&shape, DType::F32).unwrap();
        let dm = g.upload(mt.shape(), &vec![7.0; model_len]).unwrap();
        let direct = g.alloc(&shape, DType::F32).unwrap();
        let opts = TweedieOptions {
            learned_variance: learned,
            clip,
        };
        let mut r = rec();
        posterior_step(&mut r, st, &xt, &mt, &zt, &x0, &prev, opts).unwrap();
        x0_cotangent(&mut r, st, &xt, &mt, &dt, &dm, &direct, clip).unwrap();
        r.submit().unwrap();
        let rw = table()[row];
        let (w0, wp) = cpu::posterior_step(&rw, shape, mc, &x, &model, &noise, learned, clip);
        let (wdm, wd) = cpu::x0_cotangent(&rw, shape, mc, &x, &model, &dx0, clip);
        let what = format!("{shape:?} mc {mc}");
        assert_close(
            &g.download(&x0).unwrap(),
            &w0,
            1e-6,
            1e-5,
            &format!("x0 {what}"),
        );
        assert_close(
            &g.download(&prev).unwrap(),
            &wp,
            1e-5,
            1e-4,
            &format!("x_prev {what}"),
        );
        // The variance channels of the cotangent are overwritten with 0 (not left at 7).
        assert_close(
            &g.download(&dm).unwrap(),
            &wdm,
            1e-6,
            1e-5,
            &format!("dmodel {what}"),
        );
        assert_close(
            &g.download(&direct).unwrap(),
            &wd,
            1e-6,
            1e-5,
            &format!("direct {what}"),
        );
        if clip {
            let clipped = w0.iter().filter(|v| v.abs() == 1.0).count();
            assert!(
                clipped > 0 && clipped < n,
                "{what}: the test must clip some values"
            );
        }
    }
}

#[test]
fn loss_cotangent_and_update_match_reference() {
    let g = gpu();
    let (n, len) = (3, 37);
    let mut res = random(n * len, 5);
    res[len..2 * len].iter_mut().for_each(|v| *v = 0.0); // a zero residual: gradient 0
    let rt = g.upload(&[n, len], &res).unwrap();
    let norms: Vec<f32> = res
        .chunks(len)
        .map(|c| c.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    let nt = g.upload(&[n], &norms).unwrap();
    let out = g.alloc(&[n, len], DType::F32).unwrap();
    let shape = [2usize, 3, 4, 5];
    let m: usize = shape.iter().product();
    let (p, d, u) = (random(m, 6), random(m, 7), random(m, 8));
    let (pt, dt, ut) = (
        g.upload(&shape, &p).unwrap(),
        g.upload(&shape, &d).unwrap(),
        g.upload(&shape, &u).unwrap(),
    );
    let xt = g.alloc(&shape, DType::F32).unwrap();
    let mut r = rec();
    loss_cotangent(&mut r, &rt, &nt, &out).unwrap();
    guided_update(&mut r, &pt, &dt, &ut, &xt, 0.37).unwrap();
    r.submit().unwrap();
    assert_close(
        &g.download(&out).unwrap(),
        &cpu::loss_cotangent(&res, n),
        1e-6,
        1e-5,
        "cot",
    );
    assert_close(
        &g.download(&xt).unwrap(),
        &cpu::guided_update(&p, &d, &u, 0.37),
        1e-6,
        1e-5,
        "update",
    );
}

#[test]
fn bad_shapes_are_errors() {
    let g = gpu();
    let tab = upload_table();
    let step = g.upload_u32(&[1], &[0]).unwrap();
    let st = StepState {
        table: &tab,
        step: &step,
    };
    let x = g.alloc(&[1, 3, 4, 4], DType::F32).unwrap();
    let bad_model = g.alloc(&[1, 5, 4, 4], DType::F32).unwrap();
    let eps_only = g.alloc(&[1, 3, 4, 4], DType::F32).unwrap();
    let o: Vec<_> = (0..3)
        .map(|_| g.alloc(&[1, 3, 4, 4], DType::F32).unwrap())
        .collect();
    let opts = TweedieOptions {
        learned_variance: true,
        clip: true,
    };
    let mut r = rec();
    assert!(posterior_step(&mut r, st, &x, &bad_model, &o[0], &o[1], &o[2], opts).is_err());
    // A learned variance needs the variance channels.
    assert!(posterior_step(&mut r, st, &x, &eps_only, &o[0], &o[1], &o[2], opts).is_err());
    let f32_step = g.upload(&[1], &[0.0]).unwrap();
    let st_bad = StepState {
        table: &tab,
        step: &f32_step,
    };
    assert!(set_timesteps(&mut r, st_bad, &o[0]).is_err());
    assert!(advance_step(&mut r, &f32_step).is_err());
}
