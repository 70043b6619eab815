//! Backend selection at run time. Each backend is compiled in by a cargo feature:
//!
//! | `--backend` | cargo feature | Burn backend | device |
//! |---|---|---|---|
//! | `flex` (default) | `flex` (default) | `Autodiff<Flex>`: pure-Rust CPU | CPU |
//! | `cuda` | `cuda` | `Autodiff<Cuda>` (cubecl) | `cuda:N` |
//! | `tch` | `tch` | `Autodiff<LibTorch>` | `cpu` or `cuda:N` |
//!
//! Jobs are written once, generic over `B: AutodiffBackend`, as a [`BackendJob`]; [`run_job`]
//! monomorphises them for the chosen backend.

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// The backend the unit tests run on: flex; CUDA with the `gpu-tests` feature; libtorch on the CPU
/// with `tch-tests` (docs/backends.md; `gpu-tests` wins if both are on).
#[cfg(all(test, not(any(feature = "gpu-tests", feature = "tch-tests"))))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, feature = "gpu-tests"))]
pub(crate) type TestBackend = burn::backend::Cuda;
#[cfg(all(test, feature = "tch-tests", not(feature = "gpu-tests")))]
pub(crate) type TestBackend = burn::backend::LibTorch;
/// [`TestBackend`] with autodiff.
#[cfg(test)]
pub(crate) type TestAutodiff = burn::backend::Autodiff<TestBackend>;
/// Relative error of one f32 matrix product on [`TestBackend`], for tests whose tolerance must allow
/// for it: flex and libtorch on the CPU multiply in f32; on tensor-core GPUs CUDA's matmul kernels
/// (cubek-matmul) run f32 operands as TF32 (10-bit mantissa, unit roundoff 2^-11), as PyTorch does
/// with `allow_tf32`.
#[cfg(all(test, not(feature = "gpu-tests")))]
pub(crate) const TEST_MATMUL_REL: f64 = 1e-6;
#[cfg(all(test, feature = "gpu-tests"))]
pub(crate) const TEST_MATMUL_REL: f64 = 2e-3;

/// Whether `B` (an inner backend, without autodiff) is flex, the CPU backend: the training code then
/// splits a batch over threads (`flow::shard`) and steps the optimiser on the host (`optim::Adam`).
pub fn is_flex<B: burn::tensor::backend::Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>()
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// A backend the CLI can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Pure-Rust CPU backend (burn-flex).
    #[default]
    Flex,
    /// NVIDIA GPUs through CubeCL's CUDA runtime.
    Cuda,
    /// libtorch (CPU or CUDA) through tch.
    Tch,
}

/// Errors choosing a backend.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackendError {
    #[error(
        "backend `{backend}` is not compiled into this binary: rebuild with `cargo build --features {feature}` \
         (see docs/backends.md)"
    )]
    NotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("device `{device}` is not valid for backend `{backend}`: expected {expected}")]
    BadDevice {
        backend: &'static str,
        device: String,
        expected: &'static str,
    },
    #[error("unknown backend `{0}`: expected one of flex, cuda, tch")]
    Unknown(String),
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Cuda => "cuda",
            BackendKind::Tch => "tch",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        self.name()
    }

    /// Whether this binary was built with the backend's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::Tch => cfg!(feature = "tch"),
        }
    }

    /// Backends compiled into this binary.
    pub fn compiled() -> Vec<BackendKind> {
        [BackendKind::Flex, BackendKind::Cuda, BackendKind::Tch]
            .into_iter()
            .filter(|b| b.is_compiled())
            .collect()
    }

    pub fn parse(s: &str) -> Result<BackendKind, BackendError> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "cuda" => Ok(BackendKind::Cuda),
            "tch" | "libtorch" => Ok(BackendKind::Tch),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }

    pub fn ensure_compiled(self) -> Result<(), BackendError> {
        if self.is_compiled() {
            Ok(())
        } else {
            Err(BackendError::NotCompiled {
                backend: self.name(),
                feature: self.feature(),
            })
        }
    }
}

/// A device request: `cpu`, or `cuda:N` / `cuda` (index 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses a device string for a backend; `None` picks the backend's natural device.
    pub fn parse(backend: BackendKind, device: Option<&str>) -> Result<DeviceSpec, BackendError> {
        let bad = |expected| BackendError::BadDevice {
            backend: backend.name(),
            device: device.unwrap_or_default().to_string(),
            expected,
        };
        let parsed = match device.map(str::trim) {
            None | Some("") => None,
            Some("cpu") => Some(DeviceSpec::Cpu),
            Some("cuda") => Some(DeviceSpec::Cuda(0)),
            Some(s) => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Some(DeviceSpec::Cuda(i)),
                _ => return Err(bad("`cpu`, `cuda` or `cuda:N`")),
            },
        };
        match (backend, parsed) {
            (BackendKind::Flex, None | Some(DeviceSpec::Cpu)) => Ok(DeviceSpec::Cpu),
            (BackendKind::Flex, Some(_)) => Err(bad("`cpu` (flex runs on the CPU only)")),
            (BackendKind::Cuda, None) => Ok(DeviceSpec::Cuda(0)),
            (BackendKind::Cuda, Some(DeviceSpec::Cpu)) => Err(bad("`cuda` or `cuda:N`")),
            (BackendKind::Cuda, Some(d)) => Ok(d),
            (BackendKind::Tch, None) => Ok(DeviceSpec::Cpu),
            (BackendKind::Tch, Some(d)) => Ok(d),
        }
    }

    /// The device kind PyTorch names it by (the benchmarks' references run there): `cpu` or `cuda`.
    pub fn torch_name(self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "cpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }
}

/// Work that runs on any autodiff backend.
pub trait BackendJob {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on the chosen backend and device, or says which cargo feature is missing.
pub fn run_job<J: BackendJob>(
    backend: BackendKind,
    device: DeviceSpec,
    job: J,
) -> Result<J::Output, BackendError> {
    backend.ensure_compiled()?;
    match backend {
        BackendKind::Flex => run_flex(job),
        BackendKind::Cuda => run_cuda(job, device),
        BackendKind::Tch => run_tch(job, device),
    }
}

#[cfg(not(all(feature = "flex", feature = "cuda", feature = "tch")))]
fn not_compiled<T>(backend: BackendKind) -> Result<T, BackendError> {
    Err(BackendError::NotCompiled {
        backend: backend.name(),
        feature: backend.feature(),
    })
}

#[cfg(feature = "flex")]
fn run_flex<J: BackendJob>(job: J) -> Result<J::Output, BackendError> {
    type B = burn::backend::Autodiff<burn::backend::Flex>;
    Ok(job.run::<B>(burn::backend::flex::FlexDevice))
}

#[cfg(not(feature = "flex"))]
fn run_flex<J: BackendJob>(_job: J) -> Result<J::Output, BackendError> {
    not_compiled(BackendKind::Flex)
}

#[cfg(feature = "cuda")]
fn run_cuda<J: BackendJob>(job: J, device: DeviceSpec) -> Result<J::Output, BackendError> {
    type B = burn::backend::Autodiff<burn::backend::Cuda>;
    let index = match device {
        DeviceSpec::Cuda(i) => i,
        DeviceSpec::Cpu => 0,
    };
    Ok(job.run::<B>(burn::backend::cuda::CudaDevice::new(index)))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: BackendJob>(_job: J, _device: DeviceSpec) -> Result<J::Output, BackendError> {
    not_compiled(BackendKind::Cuda)
}

#[cfg(feature = "tch")]
fn run_tch<J: BackendJob>(job: J, device: DeviceSpec) -> Result<J::Output, BackendError> {
    type B = burn::backend::Autodiff<burn::backend::LibTorch>;
    let d = match device {
        DeviceSpec::Cpu => burn::backend::libtorch::LibTorchDevice::Cpu,
        DeviceSpec::Cuda(i) => burn::backend::libtorch::LibTorchDevice::Cuda(i),
    };
    Ok(job.run::<B>(d))
}

#[cfg(not(feature = "tch"))]
fn run_tch<J: BackendJob>(_job: J, _device: DeviceSpec) -> Result<J::Output, BackendError> {
    not_compiled(BackendKind::Tch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_backend_names_its_feature() {
        for b in [BackendKind::Flex, BackendKind::Cuda, BackendKind::Tch] {
            match b.ensure_compiled() {
                Ok(()) => assert!(b.is_compiled()),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(&format!("--features {}", b.feature())),
                        "{text}"
                    );
                }
            }
        }
        assert!(BackendKind::compiled().contains(&BackendKind::Flex) == cfg!(feature = "flex"));
    }

    #[test]
    fn device_strings() {
        assert_eq!(
            DeviceSpec::parse(BackendKind::Flex, None),
            Ok(DeviceSpec::Cpu)
        );
        assert!(DeviceSpec::parse(BackendKind::Flex, Some("cuda:0")).is_err());
        assert_eq!(
            DeviceSpec::parse(BackendKind::Cuda, Some("cuda:2")),
            Ok(DeviceSpec::Cuda(2))
        );
        assert_eq!(
            DeviceSpec::parse(BackendKind::Tch, Some("cuda")),
            Ok(DeviceSpec::Cuda(0))
        );
        assert!(DeviceSpec::parse(BackendKind::Tch, Some("gpu7")).is_err());
        assert_eq!(BackendKind::parse("LibTorch"), Ok(BackendKind::Tch));
        assert!(BackendKind::parse("metal").is_err());
    }
}
