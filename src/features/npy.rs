//! NumPy `.npy` files (format versions 1-3): little-endian f32, f64 or f16, C or Fortran order.

use std::path::Path;

use super::{FeatureError, FeatureSet, shaped};

fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

/// Reads an `.npy` file as a feature matrix.
pub fn read_npy(path: &Path) -> Result<FeatureSet, FeatureError> {
    let bytes = std::fs::read(path).map_err(|e| FeatureError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let bad = |what: &str, expected: &str, found: String| {
        FeatureError::format(path, what, expected, found)
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(
            "magic",
            "an .npy file (\\x93NUMPY)",
            "something else".into(),
        ));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad("version", "1, 2 or 3", v.to_string())),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("header", "a text header", "a truncated file".into()))?;
    let descr = header_field(header, "descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("descr", "a dtype", header.to_string()))?;
    let fortran = header_field(header, "fortran_order")
        .map(|r| r.starts_with("True"))
        .ok_or_else(|| bad("fortran_order", "True or False", header.to_string()))?;
    let shape: Vec<usize> = header_field(header, "shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
        })
        .and_then(Result::ok)
        .ok_or_else(|| bad("shape", "a tuple of sizes", header.to_string()))?;
    let body = &bytes[start + len..];
    let count: usize = shape.iter().product();
    let data: Vec<f32> = match descr {
        "<f4" | "|f4" => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "<f8" => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        "<f2" => body
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(bad(
                "dtype",
                "little-endian float32, float64 or float16 ('<f4', '<f8', '<f2')",
                format!("'{other}'"),
            ));
        }
    };
    if data.len() != count {
        return Err(bad(
            "data",
            &format!("{count} values for shape {shape:?}"),
            format!("{} values", data.len()),
        ));
    }
    let data = if fortran && shape.len() > 1 {
        // Column-major to row-major.
        let mut out = vec![0f32; count];
        let mut strides = vec![1usize; shape.len()];
        for i in 1..shape.len() {
            strides[i] = strides[i - 1] * shape[i - 1];
        }
        let mut idx = vec![0usize; shape.len()];
        for o in out.iter_mut() {
            *o = data[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()];
            for ax in (0..shape.len()).rev() {
                idx[ax] += 1;
                if idx[ax] < shape[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
        out
    } else {
        data
    };
    shaped(path, "shape", data, &shape)
}

/// Writes a C-order float32 `.npy` file (version 1).
pub fn write_npy(path: &Path, data: &[f32], shape: &[usize]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad so that the data starts at a multiple of 64 bytes, header ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, out)
}
