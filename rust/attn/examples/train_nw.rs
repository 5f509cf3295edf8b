//! `cargo run --example train_nw`: D2L §10.2.4, the parametric
//! Nadaraya–Watson regression, trained in Rust with libattn's forward and
//! `nadaraya_watson_backward`.
//!
//! D2L's data: 50 sorted inputs x ~ U[0, 5), targets y = 2 sin x + x^0.8 +
//! N(0, 0.5²). Each training input attends to the other 49 points (D2L's
//! leave-one-out keys and values), f_w(x_i) = Σ_j softmax_j(−((x_i −
//! x_j)·w)²/2)·y_j, and the width w is learnt by full-batch SGD (lr 0.5, 5
//! epochs) on L(w) = Σ_i (f_w(x_i) − y_i)², D2L's `l.sum().backward()`.
//! ∂L/∂w is the sum over the points of `nadaraya_watson_backward`'s d_w with
//! d_out = 2 (f − y). It prints the loss of every epoch and the learned w,
//! and fails (exit status 1) unless the loss falls.

use attn::Context;
use std::f64::consts::PI;
use std::process::ExitCode;

const N: usize = 50;
const EPOCHS: usize = 5;
const LR: f64 = 0.5;

/// splitmix64, for a data set that is the same on every run.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// N(0, sd²) by Box–Muller.
    fn normal(&mut self, sd: f64) -> f64 {
        let (u1, u2) = (1.0 - self.uniform(), self.uniform());
        sd * (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }
}

fn truth(x: f64) -> f64 {
    2.0 * x.sin() + x.powf(0.8)
}

/// The loss at w and its gradient ∂L/∂w, one training point at a time
/// (each has its own keys: the other 49 points).
fn loss_and_gradient(ctx: &mut Context, x: &[f32], y: &[f32], w: f32) -> attn::Result<(f64, f64)> {
    let (mut loss, mut grad) = (0.0f64, 0.0f64);
    let (mut keys, mut values) = (Vec::with_capacity(N - 1), Vec::with_capacity(N - 1));
    for i in 0..N {
        keys.clear();
        values.clear();
        for j in (0..N).filter(|&j| j != i) {
            keys.push(x[j]);
            values.push(y[j]);
        }
        let query = [x[i]];
        let mut f = [0.0f32];
        attn::nadaraya_watson(ctx, &query, &keys, &values, w, &mut f, None)?;
        let r = f[0] as f64 - y[i] as f64;
        loss += r * r;
        let d_out = [(2.0 * r) as f32];
        let mut d_w = 0.0f32;
        attn::nadaraya_watson_backward(
            ctx,
            &query,
            &keys,
            &values,
            w,
            &d_out,
            None,
            None,
            None,
            Some(&mut d_w),
        )?;
        grad += d_w as f64;
    }
    Ok((loss, grad))
}

/// Mean squared error against the noiseless truth on x = 0, 0.1, ..., 4.9,
/// every training point a key (D2L's test plot).
fn test_error(ctx: &mut Context, x: &[f32], y: &[f32], w: f32) -> attn::Result<f64> {
    let x_test: Vec<f32> = (0..50).map(|i| 0.1 * i as f32).collect();
    let mut f = vec![0.0f32; x_test.len()];
    attn::nadaraya_watson(ctx, &x_test, x, y, w, &mut f, None)?;
    let sq: f64 = x_test.iter().zip(&f).map(|(&t, &p)| (p as f64 - truth(t as f64)).powi(2)).sum();
    Ok(sq / x_test.len() as f64)
}

fn main() -> Result<ExitCode, attn::Error> {
    let mut rng = Rng(2024);
    let mut x: Vec<f32> = (0..N).map(|_| (5.0 * rng.uniform()) as f32).collect();
    x.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let y: Vec<f32> = x.iter().map(|&v| (truth(v as f64) + rng.normal(0.5)) as f32).collect();
    // D2L draws the initial w with torch.rand((1,)): U[0, 1).
    let mut w = rng.uniform() as f32;

    let mut ctx = Context::new()?;
    println!("libattn {}: D2L 10.2.4, parametric Nadaraya-Watson regression", attn::version());
    println!(
        "{} points, leave-one-out keys, SGD lr {} for {} epochs, initial w {:.4}",
        N, LR, EPOCHS, w
    );
    let mut losses = Vec::new();
    for epoch in 1..=EPOCHS {
        let (loss, grad) = loss_and_gradient(&mut ctx, &x, &y, w)?;
        w = (w as f64 - LR * grad) as f32;
        losses.push(loss);
        println!("epoch {}, loss {:.6}, dL/dw {:+.6}, w {:.4}", epoch, loss, grad, w);
    }
    let (final_loss, _) = loss_and_gradient(&mut ctx, &x, &y, w)?;
    println!("learned w = {:.4}", w);
    println!("loss {:.6} (epoch 1) -> {:.6} (learned w)", losses[0], final_loss);
    println!(
        "test MSE against 2 sin x + x^0.8: {:.4} with w = 1, {:.4} with the learned w",
        test_error(&mut ctx, &x, &y, 1.0)?,
        test_error(&mut ctx, &x, &y, w)?
    );
    if final_loss.is_finite() && final_loss < losses[0] {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the loss did not fall: {:.6} -> {:.6}", losses[0], final_loss);
        Ok(ExitCode::FAILURE)
    }
}
