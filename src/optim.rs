//! Adam and AdamW for every trainer: Burn's `Adam` / `AdamW` arithmetic, computed on the CPU backend
//! (flex) in ONE pass over each parameter's buffers, and as tensor operations elsewhere.
//!
//! Burn's `Adam` / `AdamW` write the update as about a dozen tensor operations per parameter, each a
//! pass over memory that allocates a new tensor, and flex runs them on one thread: at the paper's prior
//! size (34M parameters) the optimiser step was 14% of a training step on one thread and 21% on two
//! (CHANGELOG). On flex each parameter's values, gradient and two moments are read once and written
//! once, in parallel chunks (rayon), working in place on the tensors' own storage where flex owns it
//! alone (`into_data` then hands over the buffer without a copy). On other backends (a GPU: values
//! stay on the device) the same formulas run as tensor operations.
//!
//! The arithmetic is Burn's, operation for operation and in the same f32 rounding order (tested
//! against Burn's `Adam` and `AdamW`, on both paths). Both are PyTorch's Adam; Burn writes the bias
//! corrections differently in the two:
//! ```text
//! m = m b1 + g (1 - b1);   v = v b2 + (g g) (1 - b2)
//! Adam:   u = (m cf) / (sqrt(v) + eps sqrt(1 - b2^t)),   cf = sqrt(1 - b2^t) / (1 - b1^t);   p = p - u lr
//! AdamW:  u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);   p = p (1 - lr wd) - u lr
//! ```

use burn::module::AutodiffModule;
use burn::optim::SimpleOptimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::simd::Isa;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// Burn's Adam (`weight_decay` None) or AdamW (decoupled weight decay `Some(wd)`), with the same
/// settings as there.
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// AdamW's decoupled weight decay; None: Adam (without weight decay).
    pub weight_decay: Option<f32>,
    /// Always the tensor-operation path (tests compare the two paths on flex).
    tensor_ops: bool,
}

impl Default for Adam {
    /// Burn's `AdamConfig::new()`: betas 0.9 / 0.999, epsilon 1e-5, no weight decay.
    fn default() -> Self {
        Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: None,
            tensor_ops: false,
        }
    }
}

/// Per-parameter state: the two moments and the step count.
#[derive(Record, Clone)]
pub struct AdamState<B: Backend, const D: usize> {
    pub moment_1: Tensor<B, D>,
    pub moment_2: Tensor<B, D>,
    pub time: usize,
}

impl Adam {
    pub fn with_beta_1(self, beta_1: f32) -> Self {
        Adam { beta_1, ..self }
    }

    pub fn with_beta_2(self, beta_2: f32) -> Self {
        Adam { beta_2, ..self }
    }

    pub fn with_epsilon(self, epsilon: f32) -> Self {
        Adam { epsilon, ..self }
    }

    /// AdamW with this decoupled weight decay (`None`: Adam).
    pub fn with_weight_decay(self, weight_decay: Option<f32>) -> Self {
        Adam {
            weight_decay,
            ..self
        }
    }

    /// The optimiser for module `M` (Burn's adaptor: it visits the parameters and keeps the states).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }
}

/// The step's scalars (f32, computed as Burn computes them).
struct Consts {
    b1: f32,
    b2: f32,
    f1: f32,
    f2: f32,
    bc1: f32,
    bc2: f32,
    cf: f32,
    eps: f32,
    eps_adam: f32,
    lr: f32,
    decay: f32,
}

/// One chunk's update, in the rounding order of Burn's Adam or AdamW (module docs).
#[inline(always)]
fn kernel<const ADAMW: bool>(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: &Consts) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let mi = *m * k.b1 + g * k.f1;
        let vi = *v * k.b2 + (g * g) * k.f2;
        *m = mi;
        *v = vi;
        let u = if ADAMW {
            (mi / k.bc1) / ((vi / k.bc2).sqrt() + k.eps)
        } else {
            (mi * k.cf) / (vi.sqrt() + k.eps_adam)
        };
        *p = *p * k.decay - u * k.lr;
    }
}

/// [`kernel`] compiled for the wider instruction sets (8 / 16 lanes for the divisions and square
/// roots; the default x86-64 target has 4). Rust never fuses a multiply and an add on its own, so
/// every variant rounds as the generic one does (tested).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Consts, kernel};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2<const ADAMW: bool>(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        k: &Consts,
    ) {
        kernel::<ADAMW>(p, m, v, g, k)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512<const ADAMW: bool>(
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        k: &Consts,
    ) {
        kernel::<ADAMW>(p, m, v, g, k)
    }
}

/// One chunk's update with the kernel for `isa` (which this CPU must support).
fn update_with<const ADAMW: bool>(
    isa: Isa,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    k: &Consts,
) {
    match isa {
        Isa::Baseline => kernel::<ADAMW>(p, m, v, g, k),
        // SAFETY: `Isa::available` lists these only where the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::avx2::<ADAMW>(p, m, v, g, k) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::avx512::<ADAMW>(p, m, v, g, k) },
    }
}

fn update(adamw: bool, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: &Consts) {
    let isa = Isa::current();
    if adamw {
        update_with::<true>(isa, p, m, v, g, k)
    } else {
        update_with::<false>(isa, p, m, v, g, k)
    }
}

/// A tensor's values as an owned f32 buffer (flex: the tensor's own storage when not shared).
fn owned_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> TensorData {
    t.into_data().convert::<f32>()
}

fn f32_mut(data: &mut TensorData) -> &mut [f32] {
    // `owned_f32` converted the data to f32, so the cast cannot fail.
    data.as_mut_slice::<f32>()
        .unwrap_or_else(|e| unreachable!("f32 data: {e:?}"))
}

impl<B: Backend> SimpleOptimizer<B> for Adam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (p, state) = if self.tensor_ops || !crate::backend::is_flex::<B>() {
            self.step_tensor_ops(lr, tensor, grad, state)
        } else {
            self.step_host(lr, tensor, grad, state)
        };
        (p, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        AdamState {
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
            time: state.time,
        }
    }
}

impl Adam {
    /// The step's scalars at step `time` (1-based), as Burn computes them.
    fn consts(&self, lr: f64, time: usize) -> Consts {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let t = time as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let bc2_sqrt = bc2.sqrt();
        Consts {
            b1,
            b2,
            f1: 1.0 - b1,
            f2: 1.0 - b2,
            bc1,
            bc2,
            cf: bc2_sqrt / bc1,
            eps: self.epsilon,
            eps_adam: self.epsilon * bc2_sqrt,
            lr: lr as f32,
            // AdamW's decay factor; 1 when the rate is exactly 0 (Burn then leaves the weights as
            // they are, and x * 1 is x).
            decay: self
                .weight_decay
                .map_or(1.0, |wd| (1.0 - lr * f64::from(wd)) as f32),
        }
    }

    /// The update as tensor operations (any backend), in the order of [`kernel`].
    fn step_tensor_ops<B: Backend, const D: usize>(
        &self,
        lr: f64,
        p: Tensor<B, D>,
        g: Tensor<B, D>,
        state: Option<AdamState<B, D>>,
    ) -> (Tensor<B, D>, AdamState<B, D>) {
        let (m, v, time) = match state {
            Some(s) => (Some(s.moment_1), Some(s.moment_2), s.time + 1),
            None => (None, None, 1),
        };
        let k = self.consts(lr, time);
        // With no state the moments are 0, and 0 * b + x is x exactly.
        let gm = g.clone().mul_scalar(k.f1);
        let m = m.map_or(gm.clone(), |m| m.mul_scalar(k.b1) + gm);
        let gv = (g.clone() * g).mul_scalar(k.f2);
        let v = v.map_or(gv.clone(), |v| v.mul_scalar(k.b2) + gv);
        let u = if self.weight_decay.is_some() {
            m.clone().div_scalar(k.bc1) / (v.clone().div_scalar(k.bc2).sqrt().add_scalar(k.eps))
        } else {
            m.clone().mul_scalar(k.cf) / v.clone().sqrt().add_scalar(k.eps_adam)
        };
        let p = p.mul_scalar(k.decay) - u.mul_scalar(k.lr);
        let state = AdamState {
            moment_1: m,
            moment_2: v,
            time,
        };
        (p, state)
    }

    /// The update in one pass over host buffers (flex).
    fn step_host<B: Backend, const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<AdamState<B, D>>,
    ) -> (Tensor<B, D>, AdamState<B, D>) {
        let device = tensor.device();
        let shape = tensor.shape();
        let n = shape.num_elements();
        let (mut m, mut v, time) = match state {
            Some(s) => (owned_f32(s.moment_1), owned_f32(s.moment_2), s.time + 1),
            None => {
                let zeros = || TensorData::new(vec![0.0f32; n], shape.clone());
                (zeros(), zeros(), 1)
            }
        };
        let mut p = owned_f32(tensor);
        let g = owned_f32(grad);
        let gs = g
            .as_slice::<f32>()
            .unwrap_or_else(|e| unreachable!("f32 data: {e:?}"));

        let k = self.consts(lr, time);
        let adamw = self.weight_decay.is_some();
        f32_mut(&mut p)
            .par_chunks_mut(CHUNK)
            .zip(f32_mut(&mut m).par_chunks_mut(CHUNK))
            .zip(f32_mut(&mut v).par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(adamw, p, m, v, g, &k));

        let state = AdamState {
            moment_1: Tensor::from_data(m, &device),
            moment_2: Tensor::from_data(v, &device),
            time,
        };
        (Tensor::from_data(p, &device), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiff;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer};

    type A = TestAutodiff;

    /// A small two-layer network (the optimiser only sees its parameters and their gradients).
    #[derive(Module, Debug)]
    struct Net<B: burn::tensor::backend::Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    fn weights(net: &Net<A>) -> Vec<f64> {
        struct All(Vec<f64>);
        impl ModuleVisitor<A> for All {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
                self.0.extend(crate::tensors::to_host(p.val()));
            }
        }
        let mut all = All(Vec::new());
        net.visit(&mut all);
        all.0
    }

    /// A random network and one batch, made once per test: the runs compared start from the same
    /// weights and see the same losses (the backend's RNG is shared with tests running alongside).
    struct Fixture {
        net: Net<A>,
        x: Tensor<A, 2>,
        y: Tensor<A, 2>,
    }

    fn fixture() -> Fixture {
        let device = Default::default();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let net = Net {
            a: LinearConfig::new(3, 16).init(&device),
            b: LinearConfig::new(16, 2).init(&device),
        };
        // Burn draws a parameter's initial values when it is first read, separately in each clone
        // unless drawn before: read them once here, so that every run starts from the same weights.
        let _ = weights(&net);
        Fixture {
            net,
            x: Tensor::random([40, 3], normal, &device),
            y: Tensor::random([40, 2], normal, &device),
        }
    }

    /// The weights after one optimiser step per learning rate in `lrs`, from the fixture's network
    /// (mean squared error of `b(tanh(a(x)))` against `y`).
    fn run<O: Optimizer<Net<A>, A>>(f: &Fixture, mut optim: O, lrs: &[f64]) -> Vec<f64> {
        let mut net = f.net.clone();
        for &lr in lrs {
            let out = net.b.forward(net.a.forward(f.x.clone()).tanh());
            let loss = (out - f.y.clone()).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
        }
        weights(&net)
    }

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len());
        let moved = a.iter().zip(b).filter(|(x, y)| x != y).count();
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
            .fold(0.0f64, f64::max);
        assert!(
            worst < 1e-5,
            "{what}: relative difference {worst} ({moved} differ)"
        );
    }

    /// Both paths: the one-pass host update, and the tensor operations other backends run.
    fn both_paths(adam: Adam) -> [Adam; 2] {
        [
            adam,
            Adam {
                tensor_ops: true,
                ..adam
            },
        ]
    }

    #[test]
    fn adam_steps_equal_burns_adam_on_both_paths() {
        let lrs = [1e-2, 5e-3, 1e-2, 2e-3, 1e-2];
        let f = fixture();
        let start = weights(&f.net);
        let burn = run(&f, AdamConfig::new().with_epsilon(1e-8).init(), &lrs);
        for adam in both_paths(Adam::default().with_epsilon(1e-8)) {
            let ours = run(&f, adam.init(), &lrs);
            assert_close(&ours, &burn, &format!("Adam {adam:?}"));
            // The steps moved the weights (a no-op optimiser would fail above only by luck).
            let moved = ours.iter().zip(&start).filter(|(a, b)| a != b).count();
            assert!(
                moved > ours.len() / 2,
                "{moved} of {} weights moved",
                ours.len()
            );
        }
        // The defaults are Burn's (epsilon 1e-5).
        let burn_default = run(&f, AdamConfig::new().init(), &lrs);
        assert_close(
            &run(&f, Adam::default().init(), &lrs),
            &burn_default,
            "defaults",
        );
    }

    #[test]
    fn adamw_steps_equal_burns_adamw_on_both_paths() {
        let lrs = [1e-2, 5e-3, 1e-2, 2e-3, 1e-2];
        let f = fixture();
        let burn = run(
            &f,
            AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.95)
                .with_epsilon(1e-8)
                .with_weight_decay(0.1)
                .init(),
            &lrs,
        );
        let adamw = Adam::default()
            .with_beta_2(0.95)
            .with_epsilon(1e-8)
            .with_weight_decay(Some(0.1));
        let mut results = Vec::new();
        for adam in both_paths(adamw) {
            let ours = run(&f, adam.init(), &lrs);
            assert_close(&ours, &burn, &format!("AdamW {adam:?}"));
            results.push(ours);
        }
        // Weight decay matters at this setting: Adam's steps end elsewhere.
        let adam = run(
            &f,
            AdamConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.95)
                .with_epsilon(1e-8)
                .init(),
            &lrs,
        );
        let far = results[0]
            .iter()
            .zip(&adam)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(far > 1e-4, "AdamW and Adam agree to {far}");
    }

    #[test]
    fn every_instruction_set_updates_bit_for_bit_as_the_generic_kernel() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        // An odd length exercises every variant's tail as well as its full vectors.
        let n = 1037;
        let (p0, m0, g) = (draw(n), draw(n), draw(n));
        let v0: Vec<f32> = draw(n).iter().map(|x| x * x).collect();
        for adam in [
            Adam::default(),
            Adam::default().with_weight_decay(Some(0.01)),
        ] {
            let k = adam.consts(3e-4, 5);
            let run = |isa: Isa| {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                if adam.weight_decay.is_some() {
                    update_with::<true>(isa, &mut p, &mut m, &mut v, &g, &k);
                } else {
                    update_with::<false>(isa, &mut p, &mut m, &mut v, &g, &k);
                }
                [p, m, v].map(|x| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            };
            let base = run(Isa::Baseline);
            for isa in Isa::available() {
                assert!(run(isa) == base, "{isa:?} differs from the generic kernel");
            }
        }
    }
}
