//! Forward passes of Burn's Linear, multi-head attention and transformer encoder over token tensors
//! [B, L, d], written for speed on the CPU backend and equal in value to Burn's own (tested against
//! them, gradients included). The modules themselves are Burn's (same parameters, initialisation and
//! records); only the order of operations differs:
//!
//! - every Linear sees its input as rows [B L, d] ([`crate::dense::linear`]). Burn's Linear on a 3-D
//!   input multiplies per batch element, and its weight gradient is then B products [d_in, d_out]
//!   summed afterwards: a B-fold larger buffer (tens of MiB for an MLP at batch 128, beyond the heap's
//!   reuse threshold) and a reduction, where one [d_in, B L] x [B L, d_out] product does;
//! - attention's query, key and value projections and the MLP's layers run on those rows as well.
//!
//! Also the frozen convolutional networks' BatchNorm folding ([`fold`], [`conv_bn`]).

use super::heads::swap_middle;
use crate::dense::linear;
use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::conv::Conv2d;
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `h` [B, L, w] plus a per-position `pos` [L, w] for every sample. Written as a [B, L w] tensor
/// plus one shared row: flex adds that in one vectorised pass and sums the gradient of `pos` over
/// the first dimension in one, where a [1, L, w] broadcast walks an index iterator per element.
pub fn add_positions<B: Backend>(h: Tensor<B, 3>, pos: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, l, w] = h.dims();
    (h.reshape([b, l * w]) + pos.reshape([1, l * w])).reshape([b, l, w])
}

/// Multi-head self-attention of `mha` over `x` [B, L, d] (no mask): Burn's
/// `mha.forward(MhaInput::self_attn(x)).context`, with the heads split and merged by contiguous
/// copies ([`swap_middle`]).
pub fn self_attention<B: Backend>(mha: &MultiHeadAttention<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let (h, dk) = (mha.n_heads, mha.d_k);
    let heads = |lin: &Linear<B>| swap_middle(linear(lin, x.clone()).reshape([b, l, h, dk]));
    let (q, k, v) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let scores = q.matmul(k.transpose()).div_scalar((dk as f32).sqrt());
    let scores = mha.dropout.forward(scores);
    let weights = if mha.quiet_softmax {
        burn::tensor::activation::quiet_softmax(scores, 3)
    } else {
        // Vectorised rows on the CPU backend (`activation::softmax`), Burn's softmax elsewhere.
        crate::activation::softmax::softmax(scores)
    };
    let context = swap_middle(weights.matmul(v)).reshape([b, l, d]);
    linear(&mha.output, context)
}

/// Burn's `encoder.forward(TransformerEncoderInput::new(x))` without masks. Pre-norm layers apply
/// `norm_2` before attention and `norm_1` before the MLP, as Burn's do.
pub fn encoder<B: Backend>(encoder: &TransformerEncoder<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let mut x = x;
    for layer in &encoder.layers {
        let pre = if layer.norm_first {
            layer.norm_2.forward(x.clone())
        } else {
            x.clone()
        };
        x = x + layer.dropout.forward(self_attention(&layer.mha, pre));
        let pre = if layer.norm_first {
            layer.norm_1.forward(x.clone())
        } else {
            x = layer.norm_1.forward(x);
            x.clone()
        };
        let ff = &layer.pwff;
        let hidden = linear(&ff.linear_inner, pre);
        let hidden = ff.dropout.forward(match &ff.activation {
            // The exact GELU through the vectorised kernel (`activation::gelu`), the same function.
            Activation::Gelu(g) if !g.approximate => crate::activation::gelu::gelu(hidden),
            other => other.forward(hidden),
        });
        x = x + layer.dropout.forward(linear(&ff.linear_outer, hidden));
        if !layer.norm_first {
            x = layer.norm_2.forward(x);
        }
    }
    x
}

/// `bn(conv(x))`, or `conv(x)` once [`fold`] has put the norm inside the convolution.
pub fn conv_bn<B: Backend>(
    c: &Conv2d<B>,
    bn: &Option<BatchNorm<B>>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let h = crate::conv::conv2d(c, x);
    match bn {
        Some(bn) => bn.forward(h),
        None => h,
    }
}

/// Folds the BatchNorm that follows `c` (if `bn` holds one) into the convolution and leaves `None`
/// in `bn`: for a frozen network, whose norms use their running statistics. With
/// `s = gamma / sqrt(var + eps)`: `w' = w s` per output channel and `b' = (b - mean) s + beta` (`b` = 0
/// without a bias): the same function up to float rounding, without a per-channel broadcast after
/// the convolution (on the CPU backend such broadcasts took about 80% of EfficientNet-Lite0's forward
/// pass).
pub fn fold<B: Backend>(c: &mut Conv2d<B>, bn: &mut Option<BatchNorm<B>>) {
    let Some(bn) = bn.take() else {
        return;
    };
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    let shift = match &c.bias {
        // b' = (b - mean) * s + beta: a bias before the norm is shifted and scaled with it.
        Some(b) => shift + b.val() * scale.clone(),
        None => shift,
    };
    let o = scale.dims()[0];
    c.weight = c.weight.clone().map(|w| w * scale.reshape([o, 1, 1, 1]));
    c.bias = Some(burn::module::Param::from_tensor(shift));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiff as AB;
    use burn::nn::attention::{MhaInput, MultiHeadAttentionConfig};
    use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
    use burn::tensor::Distribution;

    fn host<B2: Backend, const D: usize>(t: Tensor<B2, D>) -> Vec<f32> {
        t.into_data().to_vec().expect("f32")
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}[{i}]: {x} vs Burn's {y} (scale {scale})"
            );
        }
    }

    /// Output and input gradient of `ours` and `burns` on the same input, with a weighted sum as
    /// the loss (so every output element's gradient differs).
    fn compare(
        ours: impl Fn(Tensor<AB, 3>) -> Tensor<AB, 3>,
        burns: impl Fn(Tensor<AB, 3>) -> Tensor<AB, 3>,
        dims: [usize; 3],
        what: &str,
    ) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let x = Tensor::<AB, 3>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        // One set of loss weights for both (drawn once: tests running at once share the generator).
        let w = Tensor::<AB, 3>::random(
            ours(x.clone()).dims(),
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |f: &dyn Fn(Tensor<AB, 3>) -> Tensor<AB, 3>| {
            let x = x.clone().detach().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * w.clone()).sum().backward();
            (host(y), host(x.grad(&grads).expect("x grad")))
        };
        let (y1, g1) = run(&ours);
        let (y2, g2) = run(&burns);
        close(&y1, &y2, 1e-5, &format!("{what} output"));
        close(&g1, &g2, 1e-5, &format!("{what} input gradient"));
        (y1, g1)
    }

    /// h + pos per position, and pos's gradient is the sum of the loss weights over the batch
    /// (closed form on host values).
    #[test]
    fn positions_add_to_every_sample_and_their_gradient_sums_the_batch() {
        let device = Default::default();
        let (b, l, w) = (3usize, 4usize, 5usize);
        let h = Tensor::<AB, 3>::random([b, l, w], Distribution::Normal(0.0, 1.0), &device);
        let pos =
            Tensor::<AB, 2>::random([l, w], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<AB, 3>::random([b, l, w], Distribution::Normal(0.0, 1.0), &device);
        let y = add_positions(h.clone(), pos.clone());
        let (hv, pv, wv, yv) = (
            host(h),
            host(pos.clone()),
            host(weights.clone()),
            host(y.clone()),
        );
        for (i, &v) in yv.iter().enumerate() {
            assert_eq!(v, hv[i] + pv[i % (l * w)], "value {i}");
        }
        let grads = (y * weights).sum().backward();
        let got = host(pos.grad(&grads).expect("pos has a gradient"));
        for (p, &g) in got.iter().enumerate() {
            let want: f32 = (0..b).map(|s| wv[s * l * w + p]).sum();
            assert!((g - want).abs() < 1e-5, "pos gradient {p}: {g} vs {want}");
        }
    }

    #[test]
    fn self_attention_equals_burns() {
        let device = Default::default();
        let mha = MultiHeadAttentionConfig::new(8, 2)
            .with_dropout(0.0)
            .init::<AB>(&device);
        compare(
            |x| self_attention(&mha, x),
            |x| mha.forward(MhaInput::self_attn(x)).context,
            [3, 5, 8],
            "attention",
        );
    }

    #[test]
    fn encoder_equals_burns_pre_and_post_norm() {
        let device = Default::default();
        for norm_first in [true, false] {
            let enc = TransformerEncoderConfig::new(8, 32, 2, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .init::<AB>(&device);
            let (y, _) = compare(
                |x| encoder(&enc, x),
                |x| enc.forward(TransformerEncoderInput::new(x)),
                [2, 7, 8],
                &format!("encoder (norm_first {norm_first})"),
            );
            assert!(y.iter().any(|v| v.abs() > 1e-3), "a non-trivial output");
        }
    }
}
