//! The training loop every trainer shares: one [`Trainer`] per optimised module does a step's
//! mechanics (backward, global-norm clipping, the one-pass host Adam / AdamW of [`crate::optim`] at the
//! scheduled learning rate, the EMA of the weights), counts the steps on a progress bar and reports the
//! step rate; [`finite`] turns a non-finite loss into [`Error::Diverged`]. What differs between the
//! trainers (batches, losses, what is logged) stays in their stages.
//!
//! Users: the flow prior (`flow::train`, with the data-parallel gradients of `flow::shard`), the toy
//! alignment's free points, the generators (`models::cond`), the classifier, the latent autoencoders,
//! and the tokenizer with its discriminator (two trainers in one loop).

pub mod blocks;
pub mod clip;
pub mod ema;
pub mod schedule;

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

pub use clip::clip_global_norm;
pub use schedule::LrSchedule;

use crate::error::{Error, Result};
use crate::optim::Adam;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// The learning rate of the step.
    pub lr: f64,
    /// The global gradient norm before clipping (computed only when clipping is on).
    pub grad_norm: Option<f64>,
}

/// A module under training with its optimiser state, schedule, clipping and EMA.
pub struct Trainer<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Always `Some` between calls (taken and put back by [`Trainer::apply`]).
    model: Option<M>,
    optim: OptimizerAdaptor<Adam, M, B>,
    schedule: LrSchedule,
    grad_clip: Option<f64>,
    ema: Option<(M, f64)>,
    steps: usize,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Trainer<B, M> {
    /// Trains `model` with `adam` at the rates of `schedule`; no clipping, no EMA, no progress bar.
    pub fn new(model: M, adam: Adam, schedule: LrSchedule) -> Self {
        Trainer {
            model: Some(model),
            optim: adam.init::<B, M>(),
            schedule,
            grad_clip: None,
            ema: None,
            steps: 0,
            bar: None,
            started: Instant::now(),
        }
    }

    /// Clips the global gradient norm to `max_norm` before each step (None: no clipping).
    pub fn with_grad_clip(mut self, max_norm: Option<f64>) -> Self {
        self.grad_clip = max_norm;
        self
    }

    /// Keeps `ema <- decay * ema + (1 - decay) * model` after each step (decay <= 0: no EMA), starting
    /// from the model as it is now.
    pub fn with_ema(mut self, decay: f64) -> Self {
        self.ema = (decay > 0.0).then(|| (ema::ema_copy(self.model()), decay));
        self
    }

    /// Counts the steps on a progress bar of `total` steps named `label`; the step rate starts now.
    pub fn with_progress(mut self, total: usize, label: &str) -> Self {
        self.bar = Some(crate::progress::progress_bar(total as u64, label));
        self.started = Instant::now();
        self
    }

    /// The model as trained so far (the raw weights, not the EMA).
    pub fn model(&self) -> &M {
        // The model is taken only inside `apply`, which puts it back before returning.
        self.model
            .as_ref()
            .unwrap_or_else(|| unreachable!("the trainer's model is always present between steps"))
    }

    /// The learning rate at 0-based `step`.
    pub fn lr(&self, step: usize) -> f64 {
        self.schedule.at(step)
    }

    /// Steps done so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// One step at 0-based `step` on the gradients of `loss` (a scalar of the model's graph).
    pub fn step(&mut self, step: usize, loss: Tensor<B, 1>) -> Update {
        let grads = GradientsParams::from_grads(loss.backward(), self.model());
        self.apply(step, grads)
    }

    /// One step at 0-based `step` on given gradients (e.g. summed over data-parallel graphs).
    pub fn apply(&mut self, step: usize, mut grads: GradientsParams) -> Update {
        let model = self
            .model
            .take()
            .unwrap_or_else(|| unreachable!("the trainer's model is always present between steps"));
        let grad_norm = self
            .grad_clip
            .map(|max| clip_global_norm::<B, M>(&model, &mut grads, Some(max)));
        let lr = self.schedule.at(step);
        let model = self.optim.step(lr, model, grads);
        if let Some((avg, decay)) = self.ema.take() {
            self.ema = Some((ema::ema_update(avg, &model, decay), decay));
        }
        self.model = Some(model);
        self.steps += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Update { lr, grad_norm }
    }

    /// Ends training: the weights to use (the EMA when it is on, else the raw ones) and the steps per
    /// second since the progress bar started (or since the trainer was made).
    pub fn finish(self) -> Trained<M> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let steps_per_s = self.steps as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let model = match (self.ema, self.model) {
            (Some((avg, _)), _) => avg,
            (None, Some(m)) => m,
            (None, None) => unreachable!("the trainer's model is always present between steps"),
        };
        Trained { model, steps_per_s }
    }
}

/// A finished training.
pub struct Trained<M> {
    /// The EMA weights when EMA was on, else the raw ones.
    pub model: M,
    pub steps_per_s: f64,
}

/// `value` when finite, else [`Error::Diverged`] naming the metric `key` and the step.
pub fn finite(step: usize, key: &str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::Diverged {
            step,
            key: key.into(),
            value,
        })
    }
}

#[cfg(test)]
mod tests;
