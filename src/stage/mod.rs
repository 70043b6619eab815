//! Stages: the kinds of work a sweep runs (and `flowprior stage run` runs alone). Each kind is one
//! module here holding its configuration with its presets per [`Scale`], its job (which claims its run
//! with [`crate::jobs::run_or_reuse`]), and, in its `stage` submodule, its [`Stage`] implementation:
//! its name, the stages it reads, how its configuration is checked, the run identity a configuration
//! has, and how it runs. The sweep engine (spec, plan, exec, report) knows stages only through
//! [`StageKind`], a handle into [`REGISTRY`].
//!
//! Adding a stage kind: a new module here with a unit struct implementing [`Stage`], and one line in
//! [`REGISTRY`] (in dependency order: after every stage it reads). docs/architecture.md walks through
//! a real one.

/// The two checks of a stage whose configuration is one serde type `$cfg` with a `validate` method:
/// [`Stage::check_types`] (deserialises) and [`Stage::check`] (deserialises, then validates).
macro_rules! checks_as {
    ($cfg:ty) => {
        fn check_types(&self, cfg: &serde_json::Value) -> std::result::Result<(), String> {
            crate::stage::typed::<$cfg>(cfg).map(drop)
        }

        fn check(&self, cfg: &serde_json::Value) -> std::result::Result<(), String> {
            crate::stage::typed::<$cfg>(cfg)?.validate()
        }
    };
}

/// What every stage module uses: the trait and its argument types, the helpers below, running a job
/// on a backend, and the result types.
mod prelude {
    pub use super::{Scale, SpecEnv, SpecInput, Stage, StageCtx, StageInput, StageRun};
    pub(super) use super::{bad, to_json, typed, upstream};
    pub use crate::backend::{BackendKind, DeviceSpec, run_job};
    pub use crate::error::Result;
    pub use crate::store::RunSpec;
    pub use serde_json::Value;
}

pub mod classifier;
pub mod dino;
pub mod feature_nets;
pub mod generator;
pub mod latent_ae;
pub mod prior;
pub mod tokenizer;
pub mod toy;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::backend::{BackendKind, DeviceSpec};
use crate::error::{Error, Result};
use crate::jobs::{Claim, JobRun, Upstream};
pub use crate::preset::Scale;
use crate::store::{RunSpec, Store};

/// One kind of stage.
pub trait Stage: Sync {
    /// The name sweep files, the store (`runs.stage`) and reports use.
    fn name(&self) -> &'static str;
    /// The stages whose finished runs some configuration of this one reads, by name.
    fn inputs(&self) -> &'static [&'static str] {
        &[]
    }
    /// The stages a given configuration reads (default: every one of [`Stage::inputs`]).
    fn inputs_for(&self, _cfg: &Value) -> Vec<&'static str> {
        self.inputs().to_vec()
    }
    /// Whether every configuration reads all of [`Stage::inputs`] (checkable from a sweep's `stages`
    /// alone); otherwise the inputs are checked per grid point.
    fn is_static_inputs(&self) -> bool {
        true
    }
    /// Settings a sweep may set that [`Stage::defaults`] leaves out (absent from a configuration
    /// unless set, so that adding them kept older runs' identities).
    fn optional_settings(&self) -> &'static [&'static str] {
        &[]
    }
    /// The configuration at a scale preset, as a JSON object (every setting present except the
    /// optional ones).
    fn defaults(&self, scale: Scale) -> Value;
    /// Checks only that every setting has the right type.
    fn check_types(&self, cfg: &Value) -> std::result::Result<(), String>;
    /// Checks a configuration: every setting of the right type, values valid together.
    fn check(&self, cfg: &Value) -> std::result::Result<(), String>;
    /// The run of a configuration whose inputs are `inputs` (in [`Stage::inputs_for`] order): the
    /// same spec the stage's own command builds, so a sweep and a direct command share runs.
    fn run_spec(
        &self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String>;
    /// Provenance lines for reports: (what, value).
    fn provenance(&self, _cfg: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The image datasets a configuration reads from the data folder (checked before a sweep runs).
    /// By default the one its `dataset` setting names, if it has one.
    fn datasets(&self, cfg: &Value) -> Vec<crate::data::DatasetId> {
        cfg.get("dataset")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .into_iter()
            .collect()
    }
    /// Runs (or finds finished, or finds held elsewhere) the run of `cfg`, whose inputs are the
    /// finished runs `inputs`, on `backend` / `device`.
    fn run(
        &self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        inputs: &[StageInput<'_>],
        backend: BackendKind,
        device: DeviceSpec,
    ) -> Result<StageRun>;
}

/// Every stage kind, in dependency order (inputs before the stages that read them).
pub static REGISTRY: &[&dyn Stage] = &[
    &classifier::stage::Classifier,
    &toy::prior_stage::ToyPrior,
    &toy::align_stage::ToyAlign,
    &latent_ae::stage::VAE,
    &latent_ae::stage::VQ,
    &dino::stage::Dino,
    &prior::stage::Prior,
    &tokenizer::stage::Tokenizer,
    &generator::stage::Generator,
];

/// A stage kind: a handle into [`REGISTRY`]. Ordered as the registry (dependency order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageKind(usize);

impl std::fmt::Debug for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl StageKind {
    fn stage(self) -> &'static dyn Stage {
        REGISTRY[self.0]
    }

    /// Every stage kind, in dependency order.
    pub fn all() -> impl Iterator<Item = StageKind> {
        (0..REGISTRY.len()).map(StageKind)
    }

    pub fn name(self) -> &'static str {
        self.stage().name()
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::all().find(|k| k.name() == s)
    }

    /// The stage named `name`, which must exist (for names the code itself writes).
    pub fn named(name: &str) -> StageKind {
        StageKind::parse(name).unwrap_or_else(|| panic!("no stage named `{name}` in the registry"))
    }

    /// "a, b, c": every stage name, for messages.
    pub fn names() -> String {
        StageKind::all()
            .map(StageKind::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn kinds(names: &[&'static str]) -> Vec<StageKind> {
        names.iter().map(|n| StageKind::named(n)).collect()
    }

    /// The stages whose finished runs this stage may read.
    pub fn inputs(self) -> Vec<StageKind> {
        StageKind::kinds(self.stage().inputs())
    }

    /// The stages a configuration of this stage reads.
    pub fn inputs_for(self, cfg: &Value) -> Vec<StageKind> {
        StageKind::kinds(&self.stage().inputs_for(cfg))
    }

    /// See [`Stage::is_static_inputs`].
    pub fn is_static_inputs(self) -> bool {
        self.stage().is_static_inputs()
    }

    /// This stage and every stage it may read, directly or not.
    pub fn upstream(self) -> Vec<StageKind> {
        let mut out = vec![self];
        for k in self.inputs() {
            for u in k.upstream() {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        out
    }

    /// See [`Stage::optional_settings`].
    pub fn optional_settings(self) -> &'static [&'static str] {
        self.stage().optional_settings()
    }

    /// See [`Stage::defaults`].
    pub fn defaults(self, scale: Scale) -> Value {
        self.stage().defaults(scale)
    }

    /// See [`Stage::check_types`].
    pub fn check_types(self, cfg: &Value) -> std::result::Result<(), String> {
        self.stage().check_types(cfg)
    }

    /// See [`Stage::check`].
    pub fn check(self, cfg: &Value) -> std::result::Result<(), String> {
        self.stage().check(cfg)
    }

    /// The backend a configuration names (flex when it names none).
    pub fn backend(self, cfg: &Value) -> BackendKind {
        cfg.get("backend")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(BackendKind::Flex)
    }

    /// See [`Stage::run_spec`].
    pub fn run_spec(
        self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        self.stage().run_spec(cfg, inputs, env)
    }

    /// See [`Stage::provenance`].
    pub fn provenance(self, cfg: &Value) -> Vec<(&'static str, String)> {
        self.stage().provenance(cfg)
    }

    /// The image datasets a configuration reads (see [`Stage::datasets`]).
    pub fn datasets(self, cfg: &Value) -> Vec<crate::data::DatasetId> {
        self.stage().datasets(cfg)
    }

    /// Runs (or finds finished, or finds held elsewhere) the stage's run for `cfg`, whose inputs are
    /// the finished runs `inputs` (in [`StageKind::inputs_for`] order), on the backend it names.
    pub fn run(
        self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        inputs: &[StageInput<'_>],
    ) -> Result<StageRun> {
        let backend = self.backend(cfg);
        let device = DeviceSpec::parse(backend, ctx.device.as_deref())?;
        self.stage().run(ctx, cfg, inputs, backend, device)
    }
}

/// An input's configuration and hash, as identifying a dependent run needs them.
#[derive(Clone, Copy)]
pub struct SpecInput<'a> {
    pub config: &'a Value,
    pub hash: &'a str,
}

/// What identifying a stage run needs beyond its settings: the data folder, to name the content of
/// the files a stage reads (each file hashed once per expansion).
pub struct SpecEnv<'a> {
    pub data_dir: &'a Path,
    hashes: std::cell::RefCell<std::collections::HashMap<PathBuf, String>>,
}

impl<'a> SpecEnv<'a> {
    pub fn new(data_dir: &'a Path) -> SpecEnv<'a> {
        SpecEnv {
            data_dir,
            hashes: Default::default(),
        }
    }

    /// A file's content identity (see [`crate::util::file_identity`]), hashed once.
    pub fn file_identity(&self, path: &Path) -> String {
        self.hashes
            .borrow_mut()
            .entry(path.to_path_buf())
            .or_insert_with(|| crate::util::file_identity(path))
            .clone()
    }
}

/// Where and how stages run.
pub struct StageCtx<'a> {
    pub store: &'a Store,
    pub data_dir: PathBuf,
    /// `--device`, when given.
    pub device: Option<String>,
    pub claim: Claim,
}

/// How a stage's run went (its run id either way).
pub enum StageRun {
    /// This process ran it to the end.
    Ran(i64),
    /// It was finished already or another live process holds it: nothing ran.
    Taken(i64),
}

impl StageRun {
    fn of(reused: bool, run: i64) -> StageRun {
        if reused {
            StageRun::Taken(run)
        } else {
            StageRun::Ran(run)
        }
    }
}

impl From<JobRun<i64>> for StageRun {
    fn from(r: JobRun<i64>) -> StageRun {
        match r {
            JobRun::Ran(id) => StageRun::Ran(id),
            JobRun::Reused { run, .. } => StageRun::Taken(run.id),
        }
    }
}

/// A finished upstream run a stage reads: its plan configuration (without inputs), its configuration
/// hash and its run id.
pub struct StageInput<'a> {
    pub config: &'a Value,
    pub hash: &'a str,
    pub run: i64,
}

/// A configuration as its typed struct; the error names the key and what was expected.
fn typed<T: DeserializeOwned>(cfg: &Value) -> std::result::Result<T, String> {
    serde_json::from_value(cfg.clone()).map_err(|e| e.to_string())
}

/// A finished input run with its configuration typed.
fn upstream<C: DeserializeOwned>(i: &StageInput<'_>) -> std::result::Result<Upstream<C>, String> {
    Ok(Upstream {
        run: i.run,
        hash: i.hash.to_string(),
        config: typed(i.config)?,
    })
}

/// A preset configuration as JSON (see [`crate::util::config_json`]).
fn to_json<T: serde::Serialize>(v: &T) -> Value {
    crate::util::config_json(v)
}

/// The error for a stage configuration or input that cannot be used.
fn bad(stage: &'static str) -> impl Fn(String) -> Error {
    move |m| Error::input(Path::new(stage), m)
}

/// The text of a top-level setting, for provenance lines.
fn setting_text(cfg: &Value, key: &str) -> String {
    cfg.get(key)
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_in_dependency_order_with_unique_names() {
        let names: Vec<&str> = StageKind::all().map(StageKind::name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for k in StageKind::all() {
            for i in k.inputs() {
                assert!(
                    i < k,
                    "{} reads {}, registered after it",
                    k.name(),
                    i.name()
                );
            }
            // Every preset configuration of every stage passes its own checks.
            for s in [Scale::Smoke, Scale::Cpu, Scale::Small, Scale::Paper] {
                let cfg = k.defaults(s);
                k.check_types(&cfg).expect("types");
                k.check(&cfg)
                    .unwrap_or_else(|e| panic!("{} at {}: {e}", k.name(), s.name()));
            }
        }
        assert_eq!(
            StageKind::parse("tokenizer").map(StageKind::name),
            Some("tokenizer")
        );
        assert_eq!(StageKind::parse("nope"), None);
    }

    #[test]
    fn every_stage_with_a_dataset_setting_declares_the_dataset() {
        for k in StageKind::all() {
            let cfg = k.defaults(Scale::Smoke);
            let declared: Vec<Value> = k
                .datasets(&cfg)
                .iter()
                .map(|d| serde_json::to_value(d).expect("serialise"))
                .collect();
            match cfg.get("dataset") {
                Some(set) => assert_eq!(declared, vec![set.clone()], "{}", k.name()),
                None => assert!(declared.is_empty(), "{}: {declared:?}", k.name()),
            }
        }
    }
}
