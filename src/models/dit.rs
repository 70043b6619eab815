//! A small DiT (Peebles & Xie) for class-conditional flow matching on latent tokens [B, L, C]: tokens
//! projected to the width with learned position embeddings, blocks of self-attention and an MLP, each
//! modulated by adaLN-Zero from the conditioning `c = time_embedding(t) + label_embedding(y)`
//! (shift, scale, gate per branch; the modulation projections and the final Linear start at zero, so a
//! fresh network outputs exactly 0), a final adaLN-modulated Linear back to C.
//!
//! Labels are `0..classes`, and `classes` is the null label of classifier-free guidance (the label
//! dropped in training, the unconditional branch in sampling). Time convention as in `flow`: t = 0
//! noise, t = 1 data.

use burn::module::{Module, Param};
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};

use super::layers::{add_positions, self_attention};
use crate::activation::gelu::gelu;
use crate::dense::linear;
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

use crate::flow::net::{FREQ_DIM, Init, LN_EPS, TimestepEmbedder, init_linear};
use crate::tensors::repeat_unit_dim;
use crate::train::blocks::{on_shard_threads, row_blocks, shards_for};

/// Sizes of a DiT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DitShape {
    pub tokens: usize,
    pub channels: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub classes: usize,
}

/// LayerNorm over the last dimension without affine parameters.
fn norm<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let mean = x.clone().mean_dim(2);
    let centred = x - mean;
    let var = centred.clone().powi_scalar(2).mean_dim(2);
    centred / (var + LN_EPS).sqrt()
}

/// `x * (1 + scale) + shift` with per-sample [B, w] modulation of [B, L, w].
fn modulate<B: Backend>(x: Tensor<B, 3>, shift: Tensor<B, 2>, scale: Tensor<B, 2>) -> Tensor<B, 3> {
    let [_, l, _] = x.dims();
    x * per_token(scale + 1.0, l) + per_token(shift, l)
}

/// A per-sample [B, w] tensor laid out for each of `l` tokens, [B, l, w], contiguous: the elementwise
/// products with [B, l, w] activations then take the backends' same-shape paths (on flex a broadcast
/// over the middle dimension walks an index iterator per element, several times slower). Its
/// gradient is the sum over the tokens, as the broadcast's would be.
fn per_token<B: Backend>(v: Tensor<B, 2>, l: usize) -> Tensor<B, 3> {
    repeat_unit_dim(v.unsqueeze_dim::<3>(1), 1, l)
}

/// Zero-initialised projections `w -> w`, one per modulation tensor.
fn ada<B: Backend>(w: usize, k: usize, device: &B::Device) -> Vec<Linear<B>> {
    (0..k)
        .map(|_| init_linear(w, w, Init::Zeros, device))
        .collect()
}

#[derive(Module, Debug)]
pub struct DitBlock<B: Backend> {
    attn: MultiHeadAttention<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
    /// shift, scale, gate of the attention branch, then of the MLP branch.
    ada: Vec<Linear<B>>,
}

impl<B: Backend> DitBlock<B> {
    fn forward(&self, x: Tensor<B, 3>, c_act: Tensor<B, 2>) -> Tensor<B, 3> {
        let m: Vec<Tensor<B, 2>> = self.ada.iter().map(|l| linear(l, c_act.clone())).collect();
        let l = x.dims()[1];
        let gate = |g: &Tensor<B, 2>| per_token(g.clone(), l);
        let h = modulate(norm(x.clone()), m[0].clone(), m[1].clone());
        let h = self_attention(&self.attn, h);
        let x = x + gate(&m[2]) * h;
        let h = modulate(norm(x.clone()), m[3].clone(), m[4].clone());
        let h = linear(&self.fc2, gelu(linear(&self.fc1, h)));
        x + gate(&m[5]) * h
    }
}

#[derive(Module, Debug)]
pub struct Dit<B: Backend> {
    input: Linear<B>,
    pos: Param<Tensor<B, 2>>,
    time: TimestepEmbedder<B>,
    label: Embedding<B>,
    blocks: Vec<DitBlock<B>>,
    final_ada: Vec<Linear<B>>,
    output: Linear<B>,
    classes: usize,
}

impl<B: Backend> Dit<B> {
    pub fn new(s: DitShape, device: &B::Device) -> Self {
        let w = s.width;
        Dit {
            input: init_linear(s.channels, w, Init::Xavier, device),
            pos: Param::from_tensor(Tensor::random(
                [s.tokens, w],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            time: TimestepEmbedder {
                fc1: init_linear(FREQ_DIM, w, Init::Normal(0.02), device),
                fc2: init_linear(w, w, Init::Normal(0.02), device),
            },
            label: EmbeddingConfig::new(s.classes + 1, w).init(device),
            blocks: (0..s.depth)
                .map(|_| DitBlock {
                    attn: MultiHeadAttentionConfig::new(w, s.heads)
                        .with_dropout(0.0)
                        .init(device),
                    fc1: init_linear(w, 4 * w, Init::Xavier, device),
                    fc2: init_linear(4 * w, w, Init::Xavier, device),
                    ada: ada(w, 6, device),
                })
                .collect(),
            final_ada: ada(w, 2, device),
            output: init_linear(w, s.channels, Init::Zeros, device),
            classes: s.classes,
        }
    }

    /// The null label (classifier-free guidance's unconditional branch).
    pub fn null_label(&self) -> usize {
        self.classes
    }

    /// v(x, t, y) for latent tokens `x` [B, L, C], times `t` [B] and labels `y` [B] (`classes` = null).
    pub fn forward(&self, x: Tensor<B, 3>, t: Tensor<B, 1>, y: Tensor<B, 1, Int>) -> Tensor<B, 3> {
        let [b, _, _] = x.dims();
        let c = self.time.forward(t)
            + self
                .label
                .forward(y.unsqueeze_dim::<2>(1))
                .reshape([b, self.pos.val().dims()[1]]);
        let c_act = silu(c);
        let mut h = add_positions(linear(&self.input, x), self.pos.val());
        for block in &self.blocks {
            h = block.forward(h, c_act.clone());
        }
        let shift = linear(&self.final_ada[0], c_act.clone());
        let scale = linear(&self.final_ada[1], c_act);
        linear(&self.output, modulate(norm(h), shift, scale))
    }

    /// The guided velocity `v_u + s (v_c - v_u)` (one batched pass over both branches); `s = 1` is
    /// the conditional velocity itself, and skips the unconditional branch.
    pub fn guided(
        &self,
        x: Tensor<B, 3>,
        t: Tensor<B, 1>,
        y: Tensor<B, 1, Int>,
        s: f64,
    ) -> Tensor<B, 3> {
        if s == 1.0 {
            return self.forward(x, t, y);
        }
        let [b, _, _] = x.dims();
        let null = y.ones_like() * self.classes as i64;
        let v = self.forward(
            Tensor::cat(vec![x.clone(), x], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Tensor::cat(vec![y, null], 0),
        );
        let vc = v.clone().narrow(0, 0, b);
        let vu = v.narrow(0, b, b);
        vu.clone() + (vc - vu) * s
    }

    /// Euler integration from noise `x0` [B, L, C] (t = 0) to data (t = 1) in `steps` steps, guided
    /// with scale `s`. Samples are independent of each other: on flex the rows are cut into blocks
    /// integrated side by side, one per thread (`train::blocks::on_shard_threads`).
    pub fn sample(
        &self,
        x0: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        steps: usize,
        s: f64,
    ) -> Tensor<B, 3> {
        let [b, _, _] = x0.dims();
        let blocks = row_blocks(b, shards_for::<B>(b));
        if blocks.len() <= 1 {
            return self.sample_rows(x0, y, steps, s);
        }
        let work = blocks
            .into_iter()
            .map(|rows| (x0.clone().slice(rows.clone()), y.clone().slice(rows)))
            .collect();
        Tensor::cat(
            on_shard_threads(work, |(x0, y)| self.sample_rows(x0, y, steps, s)),
            0,
        )
    }

    /// [`Dit::sample`] in one pass over every row.
    fn sample_rows(
        &self,
        x0: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        steps: usize,
        s: f64,
    ) -> Tensor<B, 3> {
        let [b, _, _] = x0.dims();
        let device = x0.device();
        let steps = steps.max(1);
        let h = 1.0 / steps as f64;
        let mut x = x0;
        for i in 0..steps {
            let t = Tensor::<B, 1>::full([b], i as f64 * h, &device);
            x = x.clone() + self.guided(x, t, y.clone(), s) * h;
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::Perturb;
    use burn::tensor::TensorData;

    type B = crate::backend::TestBackend;

    fn shape() -> DitShape {
        DitShape {
            tokens: 3,
            channels: 2,
            width: 16,
            depth: 2,
            heads: 2,
            classes: 4,
        }
    }

    fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec().expect("f32")
    }

    fn all_weights(net: &Dit<B>) -> Vec<f32> {
        use burn::module::{ModuleVisitor, Param};
        struct All(Vec<f32>);
        impl ModuleVisitor<B> for All {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                self.0.extend(host(p.val()));
            }
        }
        let mut all = All(Vec::new());
        net.visit(&mut all);
        all.0
    }

    /// The EMA copy of a fresh generator holds its weights; a plain clone of a fresh one draws its
    /// lazily initialised layers (attention, label embedding) again. If Burn stops doing so, the
    /// second assertion fails and `ema_copy` is no longer needed.
    #[test]
    fn the_ema_copy_of_a_fresh_generator_equals_it() {
        let device = Default::default();
        let net = Dit::<B>::new(shape(), &device);
        let copy = crate::train::ema::ema_copy(&net);
        assert_eq!(all_weights(&copy), all_weights(&net));
        let fresh = Dit::<B>::new(shape(), &device);
        let clone = fresh.clone();
        assert_ne!(all_weights(&clone), all_weights(&fresh));
    }

    #[test]
    fn fresh_network_outputs_zero_and_guidance_combines_the_branches() {
        let device = Default::default();
        let net = Dit::<B>::new(shape(), &device);
        let x = Tensor::<B, 3>::random([5, 3, 2], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1>::random([5], Distribution::Uniform(0.0, 1.0), &device);
        let y =
            Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4], [5]), &device);
        assert!(
            host(net.forward(x.clone(), t.clone(), y.clone()))
                .iter()
                .all(|v| *v == 0.0)
        );
        // A non-zero network: perturb every parameter.
        let net = net.map(&mut Perturb);
        let vc = host(net.forward(x.clone(), t.clone(), y.clone()));
        assert!(vc.iter().any(|v| v.abs() > 1e-4));
        // Scale 1 is the conditional prediction; scale s is v_u + s (v_c - v_u) of separate passes.
        assert_eq!(host(net.guided(x.clone(), t.clone(), y.clone(), 1.0)), vc);
        let null = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![4i64; 5], [5]), &device);
        let vu = host(net.forward(x.clone(), t.clone(), null));
        let g = host(net.guided(x, t, y, 3.0));
        for ((g, c), u) in g.iter().zip(&vc).zip(&vu) {
            assert!(
                (g - (u + 3.0 * (c - u))).abs() < 1e-4,
                "{g} vs {}",
                u + 3.0 * (c - u)
            );
        }
    }

    /// Sampling in row blocks (three threads) gives each row what one pass over the batch gives.
    #[test]
    fn row_blocks_sample_as_one_pass() {
        let device = Default::default();
        let net = Dit::<B>::new(shape(), &device);
        let net = net.map(&mut Perturb);
        let n = 100;
        let x0 = Tensor::<B, 3>::random([n, 3, 2], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<B, 1, Int>::from_data(
            TensorData::new((0..n as i64).map(|i| i % 5).collect::<Vec<_>>(), [n]),
            &device,
        );
        let whole = host(net.sample_rows(x0.clone(), y.clone(), 4, 2.0));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a pool");
        let blocked = pool.install(|| {
            assert_eq!(
                row_blocks(n, shards_for::<B>(n)).len(),
                if crate::backend::is_flex::<B>() { 3 } else { 1 }
            );
            host(net.sample(x0, y, 4, 2.0))
        });
        assert_eq!(whole.len(), blocked.len());
        let scale = whole.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in blocked.iter().zip(&whole) {
            assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
        }
    }
}
