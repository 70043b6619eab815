//! Adam and AdamW for the CPU backend (flex), computed in ONE pass over each parameter's buffers.
//!
//! Burn's `Adam` / `AdamW` write the update as about a dozen tensor operations per parameter, each a
//! pass over memory that allocates a new tensor, and flex runs them on one thread: at the paper's prior
//! size (34M parameters) the optimiser step was 14% of a training step on one thread and 21% on two
//! (docs/benchmarks.md). Here each parameter's values, gradient and two moments are read once and
//! written once, in parallel chunks (rayon), working in place on the tensors' own storage where flex
//! owns it alone (`into_data` then hands over the buffer without a copy).
//!
//! The arithmetic is Burn's, operation for operation and in the same f32 rounding order, so it gives
//! Burn's results bit for bit (tested against Burn's `Adam` and `AdamW`). Both are PyTorch's Adam;
//! Burn writes the bias corrections differently in the two:
//! ```text
//! m = m b1 + g (1 - b1);   v = v b2 + (g g) (1 - b2)
//! Adam:   u = (m cf) / (sqrt(v) + eps sqrt(1 - b2^t)),   cf = sqrt(1 - b2^t) / (1 - b1^t);   p = p - u lr
//! AdamW:  u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps);   p = p (1 - lr wd) - u lr
//! ``` It is only chosen on flex
//! ([`crate::backend::is_flex`]); on a GPU the values would have to travel to the host and back.

use burn::module::AutodiffModule;
use burn::optim::SimpleOptimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;

/// Burn's Adam (`weight_decay` None) or AdamW (decoupled weight decay `Some(wd)`), with the same
/// settings as there.
#[derive(Debug, Clone, Copy)]
pub struct HostAdam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// AdamW's decoupled weight decay; None: Adam (without weight decay).
    pub weight_decay: Option<f32>,
}

/// Per-parameter state: the two moments and the step count.
#[derive(Record, Clone)]
pub struct HostAdamState<B: Backend, const D: usize> {
    pub moment_1: Tensor<B, D>,
    pub moment_2: Tensor<B, D>,
    pub time: usize,
}

impl HostAdam {
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

/// [`kernel`] compiled for AVX2 (8 lanes for the divisions and square roots; the default x86-64
/// target has 4). Rust never fuses a multiply and an add on its own, so the results are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2<const ADAMW: bool>(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    k: &Consts,
) {
    kernel::<ADAMW>(p, m, v, g, k)
}

fn update(adamw: bool, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: &Consts) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above), the only requirement of `kernel_avx2`.
        unsafe {
            if adamw {
                kernel_avx2::<true>(p, m, v, g, k)
            } else {
                kernel_avx2::<false>(p, m, v, g, k)
            }
        }
        return;
    }
    if adamw {
        kernel::<true>(p, m, v, g, k)
    } else {
        kernel::<false>(p, m, v, g, k)
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

impl<B: Backend> SimpleOptimizer<B> for HostAdam {
    type State<const D: usize> = HostAdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
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

        let (b1, b2) = (self.beta_1, self.beta_2);
        let t = time as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let bc2_sqrt = bc2.sqrt();
        let k = Consts {
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
        };
        let adamw = self.weight_decay.is_some();
        f32_mut(&mut p)
            .par_chunks_mut(CHUNK)
            .zip(f32_mut(&mut m).par_chunks_mut(CHUNK))
            .zip(f32_mut(&mut v).par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(adamw, p, m, v, g, &k));

        let state = HostAdamState {
            moment_1: Tensor::from_data(m, &device),
            moment_2: Tensor::from_data(v, &device),
            time,
        };
        (Tensor::from_data(p, &device), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        HostAdamState {
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
            time: state.time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiff;
    use crate::flow::SimpleMlpAdaLn;
    use crate::flow::shard::flow_matching_grads_with;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::{AdamConfig, AdamWConfig, Optimizer};

    type B = TestAutodiff;

    fn weights(net: &SimpleMlpAdaLn<B>) -> Vec<f64> {
        struct All(Vec<f64>);
        impl ModuleVisitor<B> for All {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                self.0.extend(crate::tensors::to_host(p.val()));
            }
        }
        let mut all = All(Vec::new());
        net.visit(&mut all);
        all.0
    }

    /// A random network and one batch's draws, made once per test: the runs compared start from the
    /// same weights and see the same losses (the backend's RNG is shared with tests running alongside).
    struct Fixture {
        net: SimpleMlpAdaLn<B>,
        x1: Tensor<B, 2>,
        x0: Tensor<B, 2>,
        t: Tensor<B, 1>,
    }

    fn fixture() -> Fixture {
        let device = Default::default();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        Fixture {
            net: crate::flow::tests::random_net::<B>(3),
            x1: Tensor::random([40, 3], normal, &device),
            x0: Tensor::random([40, 3], normal, &device),
            t: Tensor::random([40], burn::tensor::Distribution::Uniform(0.0, 1.0), &device),
        }
    }

    /// The weights after one optimiser step per learning rate in `lrs`, from the fixture's network.
    fn run<O: Optimizer<SimpleMlpAdaLn<B>, B>>(f: &Fixture, mut optim: O, lrs: &[f64]) -> Vec<f64> {
        let mut net = f.net.clone();
        for &lr in lrs {
            let grads =
                flow_matching_grads_with(&net, f.x1.clone(), f.x0.clone(), f.t.clone(), 1).grads;
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

    #[test]
    fn host_adam_steps_equal_burns_adam() {
        let lrs = [1e-2, 5e-3, 1e-2, 2e-3, 1e-2];
        let f = fixture();
        let start = weights(&f.net);
        let ours = run(
            &f,
            HostAdam {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay: None,
            }
            .init(),
            &lrs,
        );
        let burn = run(&f, AdamConfig::new().with_epsilon(1e-8).init(), &lrs);
        assert_close(&ours, &burn, "Adam");
        // The steps moved the weights (a no-op optimiser would fail above only by luck).
        let moved = ours.iter().zip(&start).filter(|(a, b)| a != b).count();
        assert!(
            moved > ours.len() / 2,
            "{moved} of {} weights moved",
            ours.len()
        );
    }

    #[test]
    fn host_adamw_steps_equal_burns_adamw() {
        let lrs = [1e-2, 5e-3, 1e-2, 2e-3, 1e-2];
        let f = fixture();
        let ours = run(
            &f,
            HostAdam {
                beta_1: 0.9,
                beta_2: 0.95,
                epsilon: 1e-8,
                weight_decay: Some(0.1),
            }
            .init(),
            &lrs,
        );
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
        assert_close(&ours, &burn, "AdamW");
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
        let far = ours
            .iter()
            .zip(&adam)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(far > 1e-4, "AdamW and Adam agree to {far}");
    }
}
