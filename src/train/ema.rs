//! Exponential moving average of a module's weights: `ema <- decay * ema + (1 - decay) * model`.
//! The frozen prior is the EMA copy, as in the public code.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

struct Collect<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.params.insert(param.id, t.reshape([n]));
    }
}

struct Blend<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let blended = match self.params.remove(&id) {
            Some(new) => {
                // Detached: the average is not a function to differentiate, and on an autodiff
                // backend an undetached blend would chain every step's graph onto the last one
                // (training slowed down quadratically with the number of steps).
                let shape = tensor.shape();
                tensor.detach() * self.decay + new.reshape(shape).detach() * (1.0 - self.decay)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, blended, mapper)
    }
}

/// Returns `decay * ema + (1 - decay) * model`, parameter by parameter (matched by parameter id, so
/// `ema` must be a clone of `model` taken earlier, e.g. at initialisation).
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, model: &M, decay: f64) -> M {
    let mut collect = Collect {
        params: HashMap::new(),
    };
    model.visit(&mut collect);
    let mut blend = Blend {
        params: collect.params,
        decay,
    };
    ema.map(&mut blend)
}

/// A copy of `model` to average into, equal to it. Burn draws the initial values of some layers
/// (its `Linear`, `Embedding` and attention configs) when a parameter is first read, separately in each
/// clone of a module not yet read: a plain `clone()` of a fresh model would start the average from
/// other random weights. Every parameter of `model` is read here first, so the copy holds its values.
pub fn ema_copy<B: Backend, M: Module<B>>(model: &M) -> M {
    struct Read;
    impl<B: Backend> ModuleVisitor<B> for Read {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Read);
    model.clone()
}
