//! The velocity network "SimpleMLPAdaLN" of the paper's flow prior (and of MAR's diffusion head):
//!
//! ```text
//! h0  = Linear(d -> w)(x)
//! c   = Linear(w -> w)(SiLU(Linear(256 -> w)(sinusoidal_256(t))))        time embedding of the raw t
//! for each block:  shift, scale, gate = Linear(w -> 3w)(SiLU(c))          (zero-initialised)
//!                  h = h + gate * MLP(LN_1e-6(h) * (1 + scale) + shift)     MLP = Linear, SiLU, Linear
//! out = Linear(w -> d)(LN_noaffine_1e-6(h) * (1 + scale) + shift)          shift, scale = Linear(w -> 2w)(SiLU(c))
//! ```
//! Initialisation as in the public code: Xavier-uniform weights and zero biases for every Linear,
//! N(0, 0.02^2) weights for the two time-embedding Linears, and zeros for every adaLN projection and for
//! the final Linear, so a fresh network outputs exactly 0.

use crate::activation::silu::silu;
use crate::dense::linear;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Size of the sinusoidal time features.
pub const FREQ_DIM: usize = 256;
/// Maximum period of the sinusoidal time features.
pub const MAX_PERIOD: f64 = 10_000.0;
/// LayerNorm epsilon of every norm in the network.
pub const LN_EPS: f64 = 1e-6;

/// Shape of a velocity network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowNetConfig {
    /// Dimension of the points the flow models.
    pub dim: usize,
    /// Hidden width.
    pub width: usize,
    /// Residual blocks.
    pub depth: usize,
}

impl FlowNetConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> SimpleMlpAdaLn<B> {
        SimpleMlpAdaLn::new(*self, device)
    }
}

pub(crate) enum Init {
    Xavier,
    Normal(f64),
    Zeros,
}

/// A Linear layer (weights stored [d_in, d_out] as Burn does) with the given weight init and zero bias.
pub(crate) fn init_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    init: Init,
    device: &B::Device,
) -> Linear<B> {
    let shape = [d_in, d_out];
    let weight = match init {
        Init::Xavier => {
            let bound = (6.0 / (d_in + d_out) as f64).sqrt();
            Tensor::<B, 2>::random(shape, Distribution::Uniform(-bound, bound), device)
        }
        Init::Normal(std) => Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, std), device),
        Init::Zeros => Tensor::<B, 2>::zeros(shape, device),
    };
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(Tensor::<B, 1>::zeros([d_out], device))),
    }
}

/// Sinusoidal features of a batch of times `t` ([N]): `[cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})]`
/// with `f_i = exp(-ln(max_period) i / h)`, `h = dim / 2` (a zero column is appended for odd `dim`).
pub fn timestep_embedding<B: Backend>(
    t: Tensor<B, 1>,
    dim: usize,
    max_period: f64,
) -> Tensor<B, 2> {
    let device = t.device();
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze::<2>();
    let args = t.unsqueeze_dim::<2>(1) * freqs;
    let mut parts = vec![args.clone().cos(), args.sin()];
    if dim % 2 == 1 {
        let n = parts[0].dims()[0];
        parts.push(Tensor::zeros([n, 1], &device));
    }
    Tensor::cat(parts, 1)
}

/// `x * (1 + scale) + shift`.
fn modulate<B: Backend>(x: Tensor<B, 2>, shift: Tensor<B, 2>, scale: Tensor<B, 2>) -> Tensor<B, 2> {
    x * (scale + 1.0) + shift
}

/// LayerNorm over the last dimension without affine parameters (biased variance, like PyTorch).
pub fn layer_norm_plain<B: Backend>(x: Tensor<B, 2>, eps: f64) -> Tensor<B, 2> {
    let mean = x.clone().mean_dim(1);
    let centred = x - mean;
    let var = centred.clone().powi_scalar(2).mean_dim(1);
    centred / (var + eps).sqrt()
}

/// Time embedding: sinusoidal features, Linear, SiLU, Linear.
#[derive(Module, Debug)]
pub struct TimestepEmbedder<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> TimestepEmbedder<B> {
    pub fn forward(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let f = timestep_embedding(t, FREQ_DIM, MAX_PERIOD);
        linear(&self.fc2, silu(linear(&self.fc1, f)))
    }
}

/// A Linear `w -> k w` stored as k separate `w -> w` Linears (the same function as one wide Linear
/// whose output is cut into k chunks, the public code's layout): the chunks are then contiguous
/// products of their own, and backpropagation does not scatter k gradients into one wide zero tensor,
/// which made the chunked form markedly slower on the CPU backend (see docs/benchmarks.md).
#[derive(Module, Debug)]
pub struct SplitLinear<B: Backend> {
    pub parts: Vec<Linear<B>>,
}

impl<B: Backend> SplitLinear<B> {
    fn zeros(w: usize, k: usize, device: &B::Device) -> Self {
        SplitLinear {
            parts: (0..k)
                .map(|_| init_linear(w, w, Init::Zeros, device))
                .collect(),
        }
    }

    /// The k outputs, in the order of the wide Linear's chunks.
    pub fn forward(&self, x: Tensor<B, 2>) -> Vec<Tensor<B, 2>> {
        self.parts.iter().map(|p| linear(p, x.clone())).collect()
    }
}

/// Residual block with adaLN modulation (shift, scale, gate).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub in_ln: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub ada: SplitLinear<B>,
}

impl<B: Backend> ResBlock<B> {
    pub fn forward(&self, x: Tensor<B, 2>, c_act: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut m = self.ada.forward(c_act).into_iter();
        let (shift, scale, gate) = match (m.next(), m.next(), m.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => unreachable!("the block's adaLN has three parts"),
        };
        let h = modulate(self.in_ln.forward(x.clone()), shift, scale);
        let h = linear(&self.fc2, silu(linear(&self.fc1, h)));
        x + gate * h
    }
}

/// Final layer: plain LayerNorm, adaLN modulation (shift, scale), Linear to the output dimension.
#[derive(Module, Debug)]
pub struct FinalLayer<B: Backend> {
    pub ada: SplitLinear<B>,
    pub linear: Linear<B>,
}

impl<B: Backend> FinalLayer<B> {
    pub fn forward(&self, x: Tensor<B, 2>, c_act: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut m = self.ada.forward(c_act).into_iter();
        let (shift, scale) = match (m.next(), m.next()) {
            (Some(a), Some(b)) => (a, b),
            _ => unreachable!("the final layer's adaLN has two parts"),
        };
        linear(
            &self.linear,
            modulate(layer_norm_plain(x, LN_EPS), shift, scale),
        )
    }
}

/// The velocity network v(x, t).
#[derive(Module, Debug)]
pub struct SimpleMlpAdaLn<B: Backend> {
    pub time_embed: TimestepEmbedder<B>,
    pub input_proj: Linear<B>,
    pub blocks: Vec<ResBlock<B>>,
    pub final_layer: FinalLayer<B>,
}

impl<B: Backend> SimpleMlpAdaLn<B> {
    pub fn new(cfg: FlowNetConfig, device: &B::Device) -> Self {
        let w = cfg.width;
        SimpleMlpAdaLn {
            time_embed: TimestepEmbedder {
                fc1: init_linear(FREQ_DIM, w, Init::Normal(0.02), device),
                fc2: init_linear(w, w, Init::Normal(0.02), device),
            },
            input_proj: init_linear(cfg.dim, w, Init::Xavier, device),
            blocks: (0..cfg.depth)
                .map(|_| ResBlock {
                    in_ln: LayerNormConfig::new(w).with_epsilon(LN_EPS).init(device),
                    fc1: init_linear(w, w, Init::Xavier, device),
                    fc2: init_linear(w, w, Init::Xavier, device),
                    ada: SplitLinear::zeros(w, 3, device),
                })
                .collect(),
            final_layer: FinalLayer {
                ada: SplitLinear::zeros(w, 2, device),
                linear: init_linear(w, cfg.dim, Init::Zeros, device),
            },
        }
    }

    /// v(x, t) for points `x` [N, d] at times `t` [N] (t = 0 noise, t = 1 data).
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        self.forward_cond(x, self.time_embed.forward(t))
    }

    /// The network with a given conditioning vector `c` [N, w] in place of the time embedding alone
    /// (MAR's flow head passes `time_embedding(t) + Linear(z)`).
    pub fn forward_cond(&self, x: Tensor<B, 2>, c: Tensor<B, 2>) -> Tensor<B, 2> {
        let c_act = silu(c);
        let mut h = linear(&self.input_proj, x);
        for block in &self.blocks {
            h = block.forward(h, c_act.clone());
        }
        self.final_layer.forward(h, c_act)
    }
}
