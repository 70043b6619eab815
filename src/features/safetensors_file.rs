//! A named tensor from a `.safetensors` checkpoint (f32, f16, bf16 or f64), e.g. a token-embedding table
//! (`model.embed_tokens.weight` in Qwen, `embeddings.word_embeddings.weight` in MiniLM) or a VQ codebook
//! (`quantize.embedding.weight`).

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::{FeatureError, FeatureSet, shaped};

pub fn read_tensor(path: &Path, key: &str) -> Result<FeatureSet, FeatureError> {
    let bytes = std::fs::read(path).map_err(|e| FeatureError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| FeatureError::Read {
        path: path.to_path_buf(),
        message: format!("not a safetensors file: {e}"),
    })?;
    let t = st.tensor(key).map_err(|_| {
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        let shown = names
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        FeatureError::format(
            path,
            &format!("key `{key}`"),
            "a tensor of the file",
            format!(
                "no such tensor; the file has {} tensors: {shown}{}",
                names.len(),
                if names.len() > 12 { ", ..." } else { "" }
            ),
        )
    })?;
    let raw = t.data();
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => {
            return Err(FeatureError::format(
                path,
                &format!("dtype of `{key}`"),
                "F32, F16, BF16 or F64",
                format!("{other:?}"),
            ));
        }
    };
    shaped(path, &format!("shape of `{key}`"), data, t.shape())
}
