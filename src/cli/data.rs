//! `flowprior data check`

use tabled::builder::Builder;
use tabled::settings::Style;

use super::Cli;
use crate::data::catalog::{FETCH_COMMAND, check_files, safetensors_header};
use crate::data::{DatasetId, Split};

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Verify presence, size and SHA-256 of every data and weight file, then load each dataset and
    /// check its counts, shapes and labels.
    Check,
}

pub fn run(cli: &Cli, args: &DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Check => check(cli),
    }
}

fn check(cli: &Cli) -> anyhow::Result<()> {
    let dir = cli.data_dir();
    let mut problems = Vec::new();
    let mut b = Builder::default();
    b.push_record(["file", "bytes", "sha256", "source"]);
    for f in check_files(&dir) {
        let state = match (f.present, f.checksum_ok) {
            (false, _) => {
                problems.push(format!("missing {}", dir.join(&f.rel).display()));
                "MISSING"
            }
            (true, false) => {
                problems.push(format!("checksum mismatch {}", dir.join(&f.rel).display()));
                "MISMATCH"
            }
            (true, true) => "ok",
        };
        b.push_record([
            f.rel.clone(),
            f.bytes.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            state.to_string(),
            f.source.clone(),
        ]);
    }
    println!("data folder: {}", dir.display());
    println!("{}", b.build().with(Style::sharp()));

    let mut b = Builder::default();
    b.push_record([
        "dataset",
        "split",
        "images",
        "expected",
        "shape",
        "classes",
        "per class (min-max)",
        "mean pixel",
    ]);
    for ds in [DatasetId::FashionMnist, DatasetId::Mnist5k] {
        for split in [Split::Train, Split::Test] {
            match ds.load(&dir, split) {
                Ok(d) => {
                    let counts = d.class_counts();
                    let (lo, hi) = (
                        counts.iter().min().copied().unwrap_or(0),
                        counts.iter().max().copied().unwrap_or(0),
                    );
                    if d.len() != ds.expected_len(split) {
                        problems.push(format!(
                            "{} {split:?}: {} images, expected {}",
                            ds.name(),
                            d.len(),
                            ds.expected_len(split)
                        ));
                    }
                    b.push_record([
                        ds.name().to_string(),
                        format!("{split:?}").to_lowercase(),
                        d.len().to_string(),
                        ds.expected_len(split).to_string(),
                        format!("{}x{}", d.height, d.width),
                        d.classes.to_string(),
                        format!("{lo}-{hi}"),
                        format!("{:.4}", d.mean_intensity()),
                    ]);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    println!("{}", b.build().with(Style::sharp()));

    let st = dir.join("weights/all-minilm-l6-v2/model.safetensors");
    if st.exists() {
        match safetensors_header(&st) {
            Ok(tensors) => {
                let emb = tensors
                    .iter()
                    .find(|t| t.0 == "embeddings.word_embeddings.weight");
                match emb {
                    Some((_, dtype, shape)) if shape == &[30522, 384] => println!(
                        "MiniLM token table: embeddings.word_embeddings.weight {dtype} {shape:?} ({} tensors)",
                        tensors.len()
                    ),
                    Some((_, _, shape)) => problems.push(format!(
                        "{}: embeddings.word_embeddings.weight has shape {shape:?}, expected [30522, 384]",
                        st.display()
                    )),
                    None => problems.push(format!("{}: no tensor embeddings.word_embeddings.weight", st.display())),
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        println!("data check: all files present and verified");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        anyhow::bail!(
            "data check found {} problem(s); run `{FETCH_COMMAND}` to fetch the data",
            problems.len()
        )
    }
}
