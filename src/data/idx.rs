//! The IDX format of (Fashion-)MNIST, optionally gzipped: a big-endian header (magic 0x00000803 for
//! u8 images of rank 3, 0x00000801 for u8 labels of rank 1; dimension sizes as u32) followed by the
//! raw u8 values in row-major order.

use std::io::Read;
use std::path::Path;

use super::DataError;

/// Decoded IDX u8 tensor: its dimensions and values.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a file whole, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                message: format!("bad gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes holding u8 values of the given rank.
pub fn parse_idx(bytes: &[u8], rank: usize, path: &Path) -> Result<IdxArray, DataError> {
    let err = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 4 {
        return Err(err(format!(
            "file too short for an IDX header ({} bytes)",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!(
            "not an IDX file: magic starts {:02x}{:02x}, expected 0000",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!(
            "IDX element type 0x{:02x}, expected 0x08 (unsigned byte)",
            bytes[2]
        )));
    }
    if bytes[3] as usize != rank {
        return Err(err(format!("IDX rank {}, expected {rank}", bytes[3])));
    }
    if bytes.len() < 4 + 4 * rank {
        return Err(err(format!(
            "file too short for an IDX header ({} bytes)",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count: usize = dims.iter().product();
    let body = &bytes[4 + 4 * rank..];
    if body.len() != count {
        return Err(err(format!(
            "header says {dims:?} = {count} values but the file holds {}",
            body.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads an IDX image file: (count, height, width, pixels).
pub fn read_images(path: &Path) -> Result<IdxArray, DataError> {
    parse_idx(&read_maybe_gz(path)?, 3, path)
}

/// Reads an IDX label file.
pub fn read_labels(path: &Path) -> Result<IdxArray, DataError> {
    parse_idx(&read_maybe_gz(path)?, 1, path)
}

/// Encodes u8 values as IDX (used by tests and fixtures).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_gzipped_and_plain_idx() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let bytes = encode_idx(&[2, 3, 4], &pixels);
        // Header written by hand, independently of encode_idx.
        assert_eq!(
            &bytes[..16],
            &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]
        );
        let plain = dir.path().join("x-idx3-ubyte");
        std::fs::write(&plain, &bytes).unwrap();
        let gz = dir.path().join("x-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
        for p in [&plain, &gz] {
            let a = read_images(p).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, pixels);
        }
    }

    #[test]
    fn rejects_wrong_rank_and_truncation() {
        let p = Path::new("labels.idx");
        let labels = encode_idx(&[3], &[1, 2, 3]);
        let e = parse_idx(&labels, 3, p).unwrap_err().to_string();
        assert!(e.contains("rank 1, expected 3"), "{e}");
        let e = parse_idx(&labels[..labels.len() - 1], 1, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 values but the file holds 2"), "{e}");
        assert!(e.starts_with("labels.idx"), "{e}");
    }
}
