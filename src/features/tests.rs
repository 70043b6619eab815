//! Every reader on small files the tests write, and the errors a user sees for wrong files.

use std::collections::HashMap;

use polars::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;

fn npy_bytes(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn npy_in_c_and_fortran_order_and_three_dtypes() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = dir.path().join("c.npy");
    write_npy(&c, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).expect("write");
    let f = read_features(&c, None).expect("read");
    assert_eq!((f.n, f.tokens, f.dim), (2, 1, 3));
    assert_eq!(f.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    // The same matrix in Fortran order, as float64: columns stored first.
    let body: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let p = dir.path().join("f.npy");
    std::fs::write(&p, npy_bytes("<f8", true, "(2, 3)", &body)).expect("write");
    assert_eq!(read_features(&p, None).expect("read").data, f.data);

    // [N, L, D] in float16.
    let body: Vec<u8> = (0..12)
        .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
        .collect();
    let p = dir.path().join("h.npy");
    std::fs::write(&p, npy_bytes("<f2", false, "(2, 3, 2)", &body)).expect("write");
    let h = read_features(&p, None).expect("read");
    assert_eq!((h.n, h.tokens, h.dim, h.n_rows()), (2, 3, 2, 6));
    assert_eq!(h.data[11], 11.0);
}

#[test]
fn npy_errors_name_the_file_and_what_was_expected() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("ints.npy");
    std::fs::write(&p, npy_bytes("<i4", false, "(2,)", &[0; 8])).expect("write");
    let e = read_features(&p, None).expect_err("ints").to_string();
    assert!(
        e.contains("ints.npy: dtype: expected little-endian float32") && e.contains("'<i4'"),
        "{e}"
    );
    let p = dir.path().join("vec.npy");
    write_npy(&p, &[1.0, 2.0], &[2]).expect("write");
    let e = read_features(&p, None).expect_err("1-D").to_string();
    assert!(
        e.contains("vec.npy: shape: expected a matrix [N, D] or [N, L, D]") && e.contains("[2]"),
        "{e}"
    );
    let e = read_features(&dir.path().join("x.csv"), None)
        .expect_err("csv")
        .to_string();
    assert!(
        e.contains("x.csv: file type: expected .npy, .safetensors or .parquet"),
        "{e}"
    );
}

#[test]
fn safetensors_tensors_by_key_in_f32_and_bf16() {
    let dir = tempfile::tempdir().expect("tmp");
    let table: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let codebook: Vec<u8> = (0..4)
        .flat_map(|i| half::bf16::from_f32(i as f32 * 0.5).to_le_bytes())
        .collect();
    let tensors = vec![
        (
            "model.embed_tokens.weight",
            TensorView::new(Dtype::F32, vec![3, 2], &table).expect("view"),
        ),
        (
            "quantize.embedding.weight",
            TensorView::new(Dtype::BF16, vec![2, 2], &codebook).expect("view"),
        ),
    ];
    let p = dir.path().join("ckpt.safetensors");
    safetensors::tensor::serialize_to_file(tensors, None::<HashMap<String, String>>, &p)
        .expect("write");
    let t = read_features(&p, Some("model.embed_tokens.weight")).expect("table");
    assert_eq!((t.n, t.dim), (3, 2));
    assert_eq!(t.data[5], 5.0);
    let q = read_features(&p, Some("quantize.embedding.weight")).expect("codebook");
    assert_eq!(q.data, vec![0.0, 0.5, 1.0, 1.5]);
    let e = read_features(&p, Some("embed"))
        .expect_err("missing key")
        .to_string();
    assert!(
        e.contains("ckpt.safetensors: key `embed`: expected a tensor of the file")
            && e.contains("model.embed_tokens.weight, quantize.embedding.weight"),
        "{e}"
    );
    let e = read_features(&p, None).expect_err("no key").to_string();
    assert!(
        e.contains("ckpt.safetensors: key: expected the name of the tensor"),
        "{e}"
    );
}

#[test]
fn parquet_as_a_list_column_or_numeric_columns() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("f.parquet");
    let rows: Vec<Series> = (0..3)
        .map(|i| Series::new("".into(), vec![i as f32, i as f32 + 0.5]))
        .collect();
    let mut df = DataFrame::new(
        3,
        vec![
            Column::new("emb".into(), rows),
            Column::new("a".into(), vec![1.0f64, 2.0, 3.0]),
            Column::new("b".into(), vec![4i64, 5, 6]),
        ],
    )
    .expect("frame");
    ParquetWriter::new(std::fs::File::create(&p).expect("create"))
        .finish(&mut df)
        .expect("write");
    let f = read_features(&p, Some("emb")).expect("list column");
    assert_eq!((f.n, f.dim), (3, 2));
    assert_eq!(f.data, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let e = read_features(&p, Some("nope"))
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("f.parquet: column `nope`: expected a column of the file")
            && e.contains("emb, a, b"),
        "{e}"
    );
    let e = read_features(&p, Some("a"))
        .expect_err("not a list")
        .to_string();
    assert!(
        e.contains("column `a`: expected a list of numbers per row"),
        "{e}"
    );
    // Without a key every column must be numeric: the list column is not.
    let mut num = df.drop("emb").expect("drop");
    let q = dir.path().join("n.parquet");
    ParquetWriter::new(std::fs::File::create(&q).expect("create"))
        .finish(&mut num)
        .expect("write");
    let g = read_features(&q, None).expect("numeric columns");
    assert_eq!(g.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn scaling_to_unit_std() {
    let mut f = FeatureSet::from_shape(vec![1.0, 3.0, 5.0, 7.0], &[2, 2]).expect("shape");
    let std = f.scale_to_unit_std();
    assert!((std - 5f64.sqrt()).abs() < 1e-12);
    let mean = f.data.iter().sum::<f32>() / 4.0;
    let var = f.data.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4.0;
    assert!((var - 1.0).abs() < 1e-6);
}
