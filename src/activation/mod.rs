//! Element-wise activations with vectorised kernels on the CPU backend (GELU, ReLU, SiLU): what they
//! share. A [`Pointwise`] function supplies its value and derivative per element; here they become
//! one loop per instruction set, mapped over a tensor in parallel chunks, and on `Autodiff<Flex>`
//! wrapped as one custom autodiff operation (the input is kept, the backward pass is one kernel call).
//! On other backends [`apply`] hands the tensor back and the caller uses Burn's own operation.
//! [`softmax`] works on rows instead of elements, with its own kernels and this module's exponential.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::simd::Isa;

pub mod gelu;
pub mod relu;
pub mod silu;
pub mod softmax;

/// An element-wise function and its derivative, one element at a time. The kernels below run them in
/// one loop each, compiled for every instruction set ([`Isa`]) and picked at run time; both must be
/// branch-free `#[inline(always)]` arithmetic, so that the loops vectorise.
pub(crate) trait Pointwise: std::fmt::Debug + Send + Sync + 'static {
    /// `f(v)`.
    fn value(v: f32) -> f32;
    /// `g f'(v)`.
    fn gradient(v: f32, g: f32) -> f32;
}

#[inline(always)]
fn forward_generic<K: Pointwise>(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = K::value(v);
    }
}

#[inline(always)]
fn backward_generic<K: Pointwise>(x: &[f32], grad: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        *o = K::gradient(v, g);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Pointwise;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_avx2<K: Pointwise>(x: &[f32], out: &mut [f32]) {
        super::forward_generic::<K>(x, out)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_avx512<K: Pointwise>(x: &[f32], out: &mut [f32]) {
        super::forward_generic::<K>(x, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backward_avx2<K: Pointwise>(x: &[f32], grad: &[f32], out: &mut [f32]) {
        super::backward_generic::<K>(x, grad, out)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_avx512<K: Pointwise>(x: &[f32], grad: &[f32], out: &mut [f32]) {
        super::backward_generic::<K>(x, grad, out)
    }
}

/// `out = f(x)` with the kernel for `isa` (which this CPU must support).
pub(crate) fn forward_with<K: Pointwise>(isa: Isa, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    match isa {
        Isa::Baseline => forward_generic::<K>(x, out),
        // SAFETY: `Isa::available` lists these only where the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::forward_avx2::<K>(x, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::forward_avx512::<K>(x, out) },
    }
}

/// `out = grad * f'(x)` with the kernel for `isa` (which this CPU must support).
pub(crate) fn backward_with<K: Pointwise>(isa: Isa, x: &[f32], grad: &[f32], out: &mut [f32]) {
    assert!(x.len() == out.len() && grad.len() == out.len());
    match isa {
        Isa::Baseline => backward_generic::<K>(x, grad, out),
        // SAFETY: as in `forward_with`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::backward_avx2::<K>(x, grad, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::backward_avx512::<K>(x, grad, out) },
    }
}

/// Checks `K`'s kernels on every instruction set of this CPU against the closed forms `value` and
/// `derivative` (relative error below 1e-6, gradients weighted by a varying `g`), and that every
/// instruction set gives the baseline's results bit for bit (no fused multiply-adds are formed, so
/// they round alike). `x` should have an odd length, so that every vector loop has a remainder.
#[cfg(test)]
pub(crate) fn check_every_isa<K: Pointwise>(
    x: &[f32],
    value: fn(f64) -> f64,
    derivative: fn(f64) -> f64,
) {
    let g: Vec<f32> = x.iter().map(|v| 1.0 + 0.1 * v.sin()).collect();
    let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
    for isa in Isa::available() {
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        forward_with::<K>(isa, x, &mut y);
        backward_with::<K>(isa, x, &g, &mut dx);
        for i in 0..x.len() {
            let (xv, gv) = (f64::from(x[i]), f64::from(g[i]));
            let want = value(xv);
            let got = f64::from(y[i]);
            assert!(
                (got - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{isa:?}: {K:?}({xv}) = {got}, want {want}",
                K = std::any::type_name::<K>()
            );
            let want = gv * derivative(xv);
            let got = f64::from(dx[i]);
            assert!(
                (got - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{isa:?}: {K:?}'({xv}) = {got}, want {want}",
                K = std::any::type_name::<K>()
            );
        }
        match &first {
            None => first = Some((y, dx)),
            Some((y0, dx0)) => {
                assert_eq!(&y, y0, "{isa:?} forward differs from the baseline");
                assert_eq!(&dx, dx0, "{isa:?} backward differs from the baseline");
            }
        }
    }
    // The empty slice.
    forward_with::<K>(Isa::detect(), &[], &mut []);
}

/// A function of 3-d tensors on backend `B` (tests).
#[cfg(test)]
pub(crate) type Op3<B> = fn(Tensor<B, 3>) -> Tensor<B, 3>;

/// Checks an activation as the models call it against Burn's own on the test backend: the forward
/// pass on a non-contiguous (transposed) view of N(0, `spread`^2) values, and the gradient through
/// autodiff against Burn's and against `derivative`. `ours` and `burns` are each the function on the
/// test backend and on its autodiff backend.
#[cfg(test)]
pub(crate) fn check_against_burn(
    ours: (
        Op3<crate::backend::TestBackend>,
        Op3<crate::backend::TestAutodiff>,
    ),
    burns: (
        Op3<crate::backend::TestBackend>,
        Op3<crate::backend::TestAutodiff>,
    ),
    derivative: fn(f64) -> f64,
    spread: f64,
) {
    use crate::backend::{TestAutodiff, TestBackend};
    use burn::tensor::Distribution;
    fn values<const D: usize, B: Backend>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32")
    }
    let device = Default::default();
    let x0 =
        Tensor::<TestBackend, 3>::random([3, 5, 7], Distribution::Normal(0.0, spread), &device);
    let w = Tensor::<TestBackend, 3>::random([3, 7, 5], Distribution::Normal(0.0, 1.0), &device);
    let xt = x0.clone().swap_dims(1, 2);
    for (a, b) in values(ours.0(xt.clone())).iter().zip(&values(burns.0(xt))) {
        assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let grads = |f: Op3<TestAutodiff>| {
        let x = Tensor::<TestAutodiff, 3>::from_data(x0.to_data(), &device).require_grad();
        let wa = Tensor::<TestAutodiff, 3>::from_data(w.to_data(), &device);
        let g = (f(x.clone().swap_dims(1, 2)) * wa).sum().backward();
        values(x.grad(&g).expect("x has a gradient"))
    };
    let (ours, burns) = (grads(ours.1), grads(burns.1));
    let (xv, wv) = (values(x0), values(w.swap_dims(1, 2)));
    for i in 0..xv.len() {
        assert!((ours[i] - burns[i]).abs() < 2e-6 * (1.0 + burns[i].abs()));
        // x[a, b, c] meets w^T[a, b, c] = w[a, c, b].
        let want = f64::from(wv[i]) * derivative(f64::from(xv[i]));
        assert!((f64::from(ours[i]) - want).abs() < 2e-6 * (1.0 + want.abs()));
    }
}

/// `exp(v)` for `v <= 0` (Cephes `expf`: range reduction by ln 2, degree-6 polynomial); inputs
/// below -87.3 give about 1e-38 instead of denormals or 0.
#[inline(always)]
pub(crate) fn exp_nonpositive(v: f32) -> f32 {
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

/// Elements per parallel task: large enough that rayon's overhead is noise.
pub(crate) const CHUNK: usize = 1 << 15;

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

/// `f(x)` over a slice.
pub(crate) fn forward<K: Pointwise>(x: &[f32]) -> Vec<f32> {
    let isa = Isa::current();
    by_chunks(x.len(), [x], |[x], o| forward_with::<K>(isa, x, o))
}

/// `grad * f'(x)` over slices.
pub(crate) fn backward<K: Pointwise>(x: &[f32], grad: &[f32]) -> Vec<f32> {
    let isa = Isa::current();
    by_chunks(x.len(), [x, grad], |[x, g], o| {
        backward_with::<K>(isa, x, g, o)
    })
}

/// `f(x)` through the vectorised kernels when `B` is flex (with or without autodiff) and the tensor
/// is f32; the tensor back otherwise (the caller then uses Burn's own operation).
pub(crate) fn apply<K: Pointwise, B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    #[cfg(feature = "flex")]
    return flex::apply::<K, B, D>(x);
    #[cfg(not(feature = "flex"))]
    Err(x)
}

#[cfg(feature = "flex")]
pub(crate) mod flex {
    //! The kernels on flex's tensors, and the autodiff operation around them.
    use super::Pointwise;
    use crate::tensors::downcast as cast;
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

    type Ad = Autodiff<Flex>;

    /// See [`super::apply`].
    pub(super) fn apply<K: Pointwise, B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        unary_on_flex(x, autodiff::<K>, forward::<K>)
    }

    /// A unary f32 operation on flex: `on_autodiff` when `B` is `Autodiff<Flex>`, `on_flex` when it is
    /// `Flex`; the tensor back on any other backend or dtype.
    pub(crate) fn unary_on_flex<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        on_autodiff: impl FnOnce(FloatTensor<Ad>) -> FloatTensor<Ad>,
        on_flex: impl FnOnce(FlexTensor) -> FlexTensor,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if x.dtype() != DType::F32 {
            return Err(x);
        }
        let x = match cast::<Tensor<B, D>, Tensor<Ad, D>>(x) {
            Ok(t) => {
                let y = on_autodiff(t.into_primitive().tensor());
                return cast(Tensor::<Ad, D>::from_primitive(TensorPrimitive::Float(y)))
                    .map_err(|_| unreachable!("B is Autodiff<Flex>"));
            }
            Err(x) => x,
        };
        match cast::<Tensor<B, D>, Tensor<Flex, D>>(x) {
            Ok(t) => {
                let y = on_flex(t.into_primitive().tensor());
                cast(Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(y)))
                    .map_err(|_| unreachable!("B is Flex"))
            }
            Err(x) => Err(x),
        }
    }

    fn from_vec(values: Vec<f32>, t: &FlexTensor) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, t.shape()))
    }

    fn forward<K: Pointwise>(x: FlexTensor) -> FlexTensor {
        // Contiguous, from offset 0, covering exactly its buffer (flex's `to_contiguous`).
        let x = x.to_contiguous();
        let n = x.shape().num_elements();
        from_vec(super::forward::<K>(&x.storage::<f32>()[..n]), &x)
    }

    fn backward<K: Pointwise>(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let n = x.shape().num_elements();
        assert_eq!(
            n,
            grad.shape().num_elements(),
            "pointwise gradient of another shape"
        );
        from_vec(
            super::backward::<K>(&x.storage::<f32>()[..n], &grad.storage::<f32>()[..n]),
            &x,
        )
    }

    #[derive(Debug)]
    struct PointwiseBackward<K>(std::marker::PhantomData<K>);

    impl<K: Pointwise> Backward<Flex, 1> for PointwiseBackward<K> {
        type State = NodeId;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let input: FlexTensor = checkpointer.retrieve_node_output(ops.state);
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                backward::<K>(input, grad)
            });
        }
    }

    fn autodiff<K: Pointwise>(x: FloatTensor<Ad>) -> FloatTensor<Ad> {
        match PointwiseBackward::<K>(std::marker::PhantomData)
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, forward::<K>(x.primitive.clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward::<K>(x.primitive)),
        }
    }
}
