//! Independent float64 references for the tests, written plainly from the
//! formulas of the papers and of attn.h's comments (never from libattn's
//! output), a fixed random generator, central differences and the
//! tolerance compare. Each test binary uses a part of it.
#![allow(dead_code, clippy::too_many_arguments)]

/// splitmix64: a fixed sequence, so every run sees the same numbers.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// n floats uniform in [-scale, scale), as f32 (what libattn gets).
    pub fn floats(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-scale, scale) as f32).collect()
    }
}

/// The f32 values widened: the references see exactly libattn's inputs.
pub fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Asserts |got − want| <= tol · max(1, max |want|) element by element and
/// returns the largest |got − want| (printed with --nocapture).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{}: lengths", what);
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= tol * scale, "{}[{}]: got {}, want {} (|err| {:.3e})", what, i, g, w, err);
        assert!(g.is_finite() == w.is_finite(), "{}[{}]: got {}, want {}", what, i, g, w);
        worst = worst.max(err);
    }
    println!("{:<44} max |err| {:.2e} (scale {:.2})", what, worst, scale);
    worst
}

/// ∂f/∂x by central differences in f64 (step h).
pub fn num_grad(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let up = f(&x);
            x[i] = x0 - h;
            let down = f(&x);
            x[i] = x0;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Σ a_i · b_i.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// erf by its Maclaurin series (|x| <= 5; 1 beyond, within 2e-12):
/// converges with ~100 terms, well within f64 for these arguments.
pub fn erf(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

/// Everything that shapes an SDPA in the reference.
#[derive(Clone, Debug)]
pub struct Attn {
    pub b: usize,
    pub hq: usize,
    pub hkv: usize,
    pub lq: usize,
    pub lkv: usize,
    pub dqk: usize,
    pub dv: usize,
    pub scale: f64,
    /// 0 none, 1 top-left, 2 bottom-right (attn_causal's values).
    pub causal: i32,
    pub bshd: bool,
    /// Valid lengths per batch row.
    pub lengths: Option<Vec<usize>>,
    /// (left, right), −1 unbounded.
    pub window: (i64, i64),
    pub softcap: f64,
    pub alibi: Option<Vec<f64>>,
    /// Dropout keep mask [b, hq, lq, lkv] and p.
    pub dropout: Option<(Vec<u8>, f64)>,
}

impl Attn {
    pub fn new(
        b: usize,
        hq: usize,
        hkv: usize,
        lq: usize,
        lkv: usize,
        dqk: usize,
        dv: usize,
    ) -> Attn {
        Attn {
            b,
            hq,
            hkv,
            lq,
            lkv,
            dqk,
            dv,
            scale: 1.0 / (dqk as f64).sqrt(),
            causal: 0,
            bshd: false,
            lengths: None,
            window: (-1, -1),
            softcap: 0.0,
            alibi: None,
            dropout: None,
        }
    }

    /// Index of (b, h, s, d) of a tensor with `heads` heads, `len` rows and
    /// `dim` features in the op's layout.
    pub fn at(
        &self,
        b: usize,
        h: usize,
        s: usize,
        d: usize,
        heads: usize,
        len: usize,
        dim: usize,
    ) -> usize {
        if self.bshd {
            ((b * len + s) * heads + h) * dim + d
        } else {
            ((b * heads + h) * len + s) * dim + d
        }
    }

    /// The key axis position facing query i (attn_modifiers.h's p).
    pub fn aligned(&self, i: usize) -> i64 {
        if self.causal == 1 {
            i as i64
        } else {
            i as i64 + self.lkv as i64 - self.lq as i64
        }
    }

    pub fn visible(&self, b: usize, i: usize, j: usize) -> bool {
        let (i, j64) = (i as i64, j as i64);
        let p = self.aligned(i as usize);
        if let Some(l) = &self.lengths {
            if j >= l[b] {
                return false;
            }
        }
        match self.causal {
            1 if j64 > i => return false,
            2 if j64 > i + self.lkv as i64 - self.lq as i64 => return false,
            _ => {}
        }
        let (left, right) = self.window;
        !(left >= 0 && j64 < p - left || right >= 0 && j64 > p + right)
    }

    /// (out in q's layout, lse [b, hq, lq], weights [b, hq, lq, lkv] after
    /// dropout).
    pub fn forward(&self, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut out = vec![0.0; self.b * self.hq * self.lq * self.dv];
        let mut lse = vec![f64::NEG_INFINITY; self.b * self.hq * self.lq];
        let mut weights = vec![0.0; self.b * self.hq * self.lq * self.lkv];
        let group = self.hq / self.hkv;
        for b in 0..self.b {
            for h in 0..self.hq {
                let g = h / group;
                for i in 0..self.lq {
                    let row = (b * self.hq + h) * self.lq + i;
                    let mut s = vec![f64::NEG_INFINITY; self.lkv];
                    for (j, sj) in s.iter_mut().enumerate() {
                        if !self.visible(b, i, j) {
                            continue;
                        }
                        let mut x = 0.0;
                        for d in 0..self.dqk {
                            x += q[self.at(b, h, i, d, self.hq, self.lq, self.dqk)]
                                * k[self.at(b, g, j, d, self.hkv, self.lkv, self.dqk)];
                        }
                        x *= self.scale;
                        if self.softcap > 0.0 {
                            x = self.softcap * (x / self.softcap).tanh();
                        }
                        if let Some(slopes) = &self.alibi {
                            x -= slopes[h] * (self.aligned(i) - j as i64).abs() as f64;
                        }
                        *sj = x;
                    }
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    if m == f64::NEG_INFINITY {
                        continue;
                    }
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    lse[row] = m + z.ln();
                    for j in 0..self.lkv {
                        let mut p = (s[j] - m).exp() / z;
                        if let Some((keep, pd)) = &self.dropout {
                            p *= keep[row * self.lkv + j] as f64 / (1.0 - pd);
                        }
                        weights[row * self.lkv + j] = p;
                        for d in 0..self.dv {
                            out[self.at(b, h, i, d, self.hq, self.lq, self.dv)] +=
                                p * v[self.at(b, g, j, d, self.hkv, self.lkv, self.dv)];
                        }
                    }
                }
            }
        }
        (out, lse, weights)
    }
}

/// x [rows, in] · wᵀ (w [out, in]) + bias [out] → [rows, out].
pub fn linear(x: &[f64], w: &[f64], bias: Option<&[f64]>, n_in: usize, n_out: usize) -> Vec<f64> {
    let rows = x.len() / n_in;
    let mut y = vec![0.0; rows * n_out];
    for r in 0..rows {
        for o in 0..n_out {
            let mut s = bias.map_or(0.0, |b| b[o]);
            for i in 0..n_in {
                s += x[r * n_in + i] * w[o * n_in + i];
            }
            y[r * n_out + o] = s;
        }
    }
    y
}

/// The RoPE rotation of one head vector x [head_dim] at angle set θ_i =
/// pos·inv_freq[i] (Su et al. eq. 34); `half`: pairs (i, i + r/2), else
/// (2i, 2i + 1).
pub fn rope_rotate(x: &mut [f64], pos: f64, inv_freq: &[f64], half: bool) {
    let r = inv_freq.len() * 2;
    for (i, f) in inv_freq.iter().enumerate() {
        let (a, b) = if half { (i, i + r / 2) } else { (2 * i, 2 * i + 1) };
        let t = pos * f;
        let (x1, x2) = (x[a], x[b]);
        x[a] = x1 * t.cos() - x2 * t.sin();
        x[b] = x2 * t.cos() + x1 * t.sin();
    }
}

/// base^(−2i/rotary_dim), i < rotary_dim/2.
pub fn inv_freq(base: f64, rotary_dim: usize) -> Vec<f64> {
    (0..rotary_dim / 2).map(|i| base.powf(-2.0 * i as f64 / rotary_dim as f64)).collect()
}

/// A multi-head layer's shapes, in the reference.
#[derive(Clone, Debug)]
pub struct MhaShape {
    pub e: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub kdim: usize,
    pub vdim: usize,
    pub bias: bool,
    /// attn_causal value.
    pub causal: i32,
    /// RoPE (inv_freq, half) on the projected queries and keys.
    pub rope: Option<(Vec<f64>, bool)>,
    /// Valid lengths per batch row.
    pub lengths: Option<Vec<usize>>,
    /// Dropout keep mask [batch, heads, lq, lkv] and p.
    pub dropout: Option<(Vec<u8>, f64)>,
    /// Score modifiers: window (left, right), softcap, ALiBi slopes.
    pub window: (i64, i64),
    pub softcap: f64,
    pub alibi: Option<Vec<f64>>,
}

impl MhaShape {
    pub fn new(e: usize, heads: usize, kv_heads: usize, kdim: usize, vdim: usize) -> MhaShape {
        MhaShape {
            e,
            heads,
            kv_heads,
            kdim,
            vdim,
            bias: true,
            causal: 0,
            rope: None,
            lengths: None,
            dropout: None,
            window: (-1, -1),
            softcap: 0.0,
            alibi: None,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.e / self.heads
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim()
    }

    pub fn param_count(&self) -> usize {
        let (e, kvd) = (self.e, self.kv_dim());
        2 * e * e + kvd * (self.kdim + self.vdim) + if self.bias { 2 * e + 2 * kvd } else { 0 }
    }

    /// nn.MultiheadAttention's forward from the flat parameters (Wq, Wk, Wv,
    /// [bq, bk, bv], Wo, [bo]): query [batch, lq, e], key [batch, lkv, kdim],
    /// value [batch, lkv, vdim] → [batch, lq, e].
    pub fn forward(
        &self,
        p: &[f64],
        batch: usize,
        lq: usize,
        lkv: usize,
        query: &[f64],
        key: &[f64],
        value: &[f64],
    ) -> Vec<f64> {
        let (e, kvd, hd) = (self.e, self.kv_dim(), self.head_dim());
        let mut o = 0;
        let mut take = |n: usize| {
            let s = &p[o..o + n];
            o += n;
            s
        };
        let (wq, wk, wv) = (take(e * e), take(kvd * self.kdim), take(kvd * self.vdim));
        let (bq, bk, bv) = if self.bias {
            (Some(take(e)), Some(take(kvd)), Some(take(kvd)))
        } else {
            (None, None, None)
        };
        let wo = take(e * e);
        let bo = if self.bias { Some(take(e)) } else { None };
        let mut qp = linear(query, wq, bq, e, e);
        let mut kp = linear(key, wk, bk, self.kdim, kvd);
        let vp = linear(value, wv, bv, self.vdim, kvd);
        let mut a = Attn::new(batch, self.heads, self.kv_heads, lq, lkv, hd, hd);
        a.bshd = true;
        a.causal = self.causal;
        a.lengths = self.lengths.clone();
        a.dropout = self.dropout.clone();
        a.window = self.window;
        a.softcap = self.softcap;
        a.alibi = self.alibi.clone();
        if let Some((freq, half)) = &self.rope {
            for b in 0..batch {
                for i in 0..lq {
                    for h in 0..self.heads {
                        let s = ((b * lq + i) * self.heads + h) * hd;
                        rope_rotate(&mut qp[s..s + hd], a.aligned(i) as f64, freq, *half);
                    }
                }
                for j in 0..lkv {
                    for h in 0..self.kv_heads {
                        let s = ((b * lkv + j) * self.kv_heads + h) * hd;
                        rope_rotate(&mut kp[s..s + hd], j as f64, freq, *half);
                    }
                }
            }
        }
        let (att, _, _) = a.forward(&qp, &kp, &vp);
        linear(&att, wo, bo, e, e)
    }
}

/// torch.nn.LayerNorm over rows of `features`: biased variance.
pub fn layer_norm(x: &[f64], w: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
    let f = w.len();
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks(f).zip(y.chunks_mut(f)) {
        let mean = xr.iter().sum::<f64>() / f as f64;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / f as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for c in 0..f {
            yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
        }
    }
    y
}

/// nn.TransformerEncoderLayer(batch_first=True) without dropout, from the
/// flat parameters of attn_encoder_layer_get_params.
pub struct EncoderShape {
    pub d: usize,
    pub heads: usize,
    pub ff: usize,
    pub gelu: bool,
    pub norm_first: bool,
    pub eps: f64,
    pub causal: bool,
}

impl EncoderShape {
    pub fn param_count(&self) -> usize {
        let (d, ff) = (self.d, self.ff);
        4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
    }

    pub fn forward(&self, p: &[f64], batch: usize, len: usize, x: &[f64]) -> Vec<f64> {
        let (d, ff) = (self.d, self.ff);
        let mut mha = MhaShape::new(d, self.heads, self.heads, d, d);
        mha.causal = if self.causal { 1 } else { 0 };
        let n_mha = mha.param_count();
        let mut o = n_mha;
        let mut take = |n: usize| {
            let s = &p[o..o + n];
            o += n;
            s
        };
        let (w1, b1, w2, b2) = (take(ff * d), take(ff), take(d * ff), take(d));
        let (n1w, n1b, n2w, n2b) = (take(d), take(d), take(d), take(d));
        let sa = |y: &[f64]| mha.forward(&p[..n_mha], batch, len, len, y, y, y);
        let act =
            |v: f64| if self.gelu { 0.5 * v * (1.0 + erf(v / 2f64.sqrt())) } else { v.max(0.0) };
        let feed = |y: &[f64]| {
            let hidden: Vec<f64> = linear(y, w1, Some(b1), d, ff).into_iter().map(act).collect();
            linear(&hidden, w2, Some(b2), ff, d)
        };
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
        if self.norm_first {
            let h = add(x, &sa(&layer_norm(x, n1w, n1b, self.eps)));
            add(&h, &feed(&layer_norm(&h, n2w, n2b, self.eps)))
        } else {
            let h = layer_norm(&add(x, &sa(x)), n1w, n1b, self.eps);
            layer_norm(&add(&h, &feed(&h)), n2w, n2b, self.eps)
        }
    }
}
