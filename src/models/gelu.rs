//! GELU, `x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`, with a vectorised kernel on the CPU backend.
//!
//! Burn's flex backend evaluates GELU and its gradient one element at a time through a scalar
//! `erf`, which does not vectorise: in the transformers' training step (dit, MAR) that was about
//! an eighth of the time. Here the forward and the backward pass are one branch-free loop each,
//! compiled for AVX-512 / AVX2+FMA / the baseline and picked at run time, with the same erf that
//! PyTorch's CPU GELU kernel uses (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7; the
//! exponential is a Cephes-style polynomial, relative error about 1e-7). The backward pass shares
//! that exponential: erf(x / sqrt 2) and the normal density both need `exp(-x^2 / 2)`.
//!
//! [`gelu`] is what the models call: on `Autodiff<Flex>` a custom autodiff operation with these
//! kernels, on `Flex` the forward kernel, on every other backend Burn's own GELU.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::simd::Isa;

/// GELU (exact, erf form) of `x`, vectorised on the CPU backend (module docs).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::gelu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::gelu(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `exp(v)` for `v <= 0` (Cephes `expf`: range reduction by ln 2, degree-6 polynomial); inputs
/// below -87.3 give about 1e-38 instead of denormals or 0.
#[inline(always)]
fn exp_nonpositive(v: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * C1 is exact.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let v = v.max(-87.3);
    let n = (v * LOG2E + ROUND) - ROUND;
    let r = v - n * C1 - n * C2;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001e-1, which is 0.5 in f32
    let e = p * (r * r) + r + 1.0;
    // 2^n: for n in [-126, 0], n + 127 + 2^23 holds n + 127 in its low mantissa bits.
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    e * scale
}

/// `(erf(u), exp(-u^2))` by Abramowitz & Stegun 7.1.26, as PyTorch's vectorised CPU `erf`.
#[inline(always)]
fn erf_and_gauss(u: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let sign = u.to_bits() & 0x8000_0000;
    let a = u.abs();
    let t = 1.0 / (P * a + 1.0);
    let r = (((A5 * t + A4) * t + A3) * t + A2) * t + A1;
    let g = exp_nonpositive(-(a * a));
    let e = 1.0 - r * t * g;
    (f32::from_bits(e.to_bits() ^ sign), g)
}

#[inline(always)]
fn forward_generic(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let (e, _) = erf_and_gauss(v * FRAC_1_SQRT_2);
        *o = 0.5 * v * (1.0 + e);
    }
}

#[inline(always)]
fn backward_generic(x: &[f32], grad: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        // erf(x / sqrt 2) needs exp(-x^2 / 2): the normal density's exponential.
        let (e, gauss) = erf_and_gauss(v * FRAC_1_SQRT_2);
        *o = g * (0.5 * (1.0 + e) + v * FRAC_1_SQRT_2PI * gauss);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_avx2(x: &[f32], out: &mut [f32]) {
        super::forward_generic(x, out)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_avx512(x: &[f32], out: &mut [f32]) {
        super::forward_generic(x, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backward_avx2(x: &[f32], grad: &[f32], out: &mut [f32]) {
        super::backward_generic(x, grad, out)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_avx512(x: &[f32], grad: &[f32], out: &mut [f32]) {
        super::backward_generic(x, grad, out)
    }
}

/// `out = gelu(x)` with the kernel for `isa` (which this CPU must support).
pub(crate) fn forward_with(isa: Isa, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    match isa {
        Isa::Baseline => forward_generic(x, out),
        // SAFETY: `Isa::available` lists these only where the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::forward_avx2(x, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::forward_avx512(x, out) },
    }
}

/// `out = grad * gelu'(x)` with the kernel for `isa` (which this CPU must support).
pub(crate) fn backward_with(isa: Isa, x: &[f32], grad: &[f32], out: &mut [f32]) {
    assert!(x.len() == out.len() && grad.len() == out.len());
    match isa {
        Isa::Baseline => backward_generic(x, grad, out),
        // SAFETY: as in `forward_with`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::backward_avx2(x, grad, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::backward_avx512(x, grad, out) },
    }
}

/// Elements per parallel task: large enough that rayon's overhead is noise.
const CHUNK: usize = 1 << 15;

/// `out[i] = f(chunk of the inputs)` in chunks of [`CHUNK`], over the rayon pool when it has more
/// than one thread. `inputs` are slices of `n` elements each.
fn by_chunks<const K: usize>(
    n: usize,
    inputs: [&[f32]; K],
    f: impl Fn([&[f32]; K], &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out = vec![0.0; n];
    let chunk = |i: usize, o: &mut [f32]| {
        let at = i * CHUNK;
        f(inputs.map(|x| &x[at..at + o.len()]), o)
    };
    if rayon::current_num_threads() > 1 && n > CHUNK {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| chunk(i, o));
    } else {
        f(inputs, &mut out);
    }
    out
}

/// `gelu(x)` over a slice.
pub(crate) fn forward(x: &[f32]) -> Vec<f32> {
    let isa = Isa::current();
    by_chunks(x.len(), [x], |[x], o| forward_with(isa, x, o))
}

/// `grad * gelu'(x)` over slices.
pub(crate) fn backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    let isa = Isa::current();
    by_chunks(x.len(), [x, grad], |[x, g], o| backward_with(isa, x, g, o))
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels on flex's tensors, and the autodiff operation around them.
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};
    use burn_flex::FlexTensor;
    use std::any::Any;

    type Ad = Autodiff<Flex>;

    /// `Ok(value)` when `T` is `U`, the value back otherwise.
    fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
        let boxed: Box<dyn Any> = Box::new(value);
        match boxed.downcast::<U>() {
            Ok(u) => Ok(*u),
            Err(boxed) => Err(*boxed
                .downcast::<T>()
                .unwrap_or_else(|_| unreachable!("a box holds the type it was made with"))),
        }
    }

    /// GELU through the vectorised kernels when `B` is flex (with or without autodiff) and the
    /// tensor is f32; the tensor back otherwise.
    pub(super) fn gelu<B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if x.dtype() != DType::F32 {
            return Err(x);
        }
        let x = match cast::<Tensor<B, D>, Tensor<Ad, D>>(x) {
            Ok(t) => {
                let y = autodiff_gelu(t.into_primitive().tensor());
                return cast(Tensor::<Ad, D>::from_primitive(TensorPrimitive::Float(y)))
                    .map_err(|_| unreachable!("B is Autodiff<Flex>"));
            }
            Err(x) => x,
        };
        match cast::<Tensor<B, D>, Tensor<Flex, D>>(x) {
            Ok(t) => {
                let y = forward(t.into_primitive().tensor());
                cast(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(y)))
                    .map_err(|_| unreachable!("B is Flex"))
            }
            Err(x) => Err(x),
        }
    }

    fn from_vec(values: Vec<f32>, t: &FlexTensor) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, t.shape()))
    }

    pub(super) fn forward(x: FlexTensor) -> FlexTensor {
        // Contiguous, from offset 0, covering exactly its buffer (flex's `to_contiguous`).
        let x = x.to_contiguous();
        let n = x.shape().num_elements();
        from_vec(super::forward(&x.storage::<f32>()[..n]), &x)
    }

    pub(super) fn backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let n = x.shape().num_elements();
        assert_eq!(
            n,
            grad.shape().num_elements(),
            "GELU gradient of another shape"
        );
        from_vec(
            super::backward(&x.storage::<f32>()[..n], &grad.storage::<f32>()[..n]),
            &x,
        )
    }

    #[derive(Debug)]
    struct GeluBackward;

    impl Backward<Flex, 1> for GeluBackward {
        type State = NodeId;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let input: FlexTensor = checkpointer.retrieve_node_output(ops.state);
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| backward(input, grad));
        }
    }

    fn autodiff_gelu(x: FloatTensor<Ad>) -> FloatTensor<Ad> {
        match GeluBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, forward(x.primitive.clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
        }
    }
}

#[cfg(test)]
mod tests;
