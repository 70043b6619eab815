//! The one scale vocabulary of the project: every stage, every sweep and every command that trains
//! (`toy`, `sweep run --preset`, `stage run --preset`) maps it to its own sizes. docs/sweeps.md has
//! the table of what each preset means per stage.

use serde::{Deserialize, Serialize};

/// Scale preset: each stage maps it to its own sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Seconds to minutes per stage: CI and tests; checks the pipeline, gives no results (`tiny` is
    /// accepted for it too).
    #[value(alias = "tiny")]
    #[serde(alias = "tiny")]
    Smoke,
    /// Between smoke and small, sized so that table1 and the ablations with 3 seeds take about 90
    /// minutes each on a 2-core machine (e.g. a 500-step tokenizer at batch 32: about 2 minutes);
    /// what `table1` and `ablations` default to. docs/sweeps.md gives its sizes and how they were chosen.
    Cpu,
    /// Small models (e.g. a 3000-step tokenizer: about an hour on 2 CPU cores); `--dry-run`
    /// estimates a sweep's time from runs recorded on this machine.
    Small,
    /// The paper's sizes (GPU-scale).
    Paper,
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Smoke => "smoke",
            Scale::Cpu => "cpu",
            Scale::Small => "small",
            Scale::Paper => "paper",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scale;

    #[test]
    fn tiny_is_another_name_for_smoke() {
        use clap::ValueEnum;
        assert_eq!(Scale::from_str("tiny", false), Ok(Scale::Smoke));
        let s: Scale = serde_json::from_str("\"tiny\"").expect("alias");
        assert_eq!(s, Scale::Smoke);
        assert_eq!(
            serde_json::to_string(&Scale::Smoke).expect("json"),
            "\"smoke\""
        );
    }
}
