//! Sweep files: parsing and validation.
//!
//! A sweep file (TOML, in `sweeps/`) names the stages to run, a scale preset, seeds, fixed settings and
//! axes whose values are crossed into a grid:
//!
//! ```toml
//! description = "toy targets x seeds"
//! stages = ["toy_prior", "toy_align"]
//! preset = "small"              # smoke | small | paper
//! seeds = [0, 1, 2]
//! backend = "flex"              # optional; --backend wins
//!
//! [fixed]
//! toy_align.align_steps = 500   # <stage>.<setting> = value
//!
//! [axes]
//! toy_prior.target = ["mixture", "moons"]   # <stage>.<setting> = [values...]
//!
//! [[report.tables]]             # see `report`
//! ```
//!
//! Everything is checked before anything runs: unknown keys, wrong types, empty axes and impossible
//! combinations are reported with the file, the key and what was expected.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SweepError;
use crate::backend::BackendKind;
use crate::stage::StageKind;

use super::report_spec::check_report;
pub use super::report_spec::{Better, ColumnSpec, FigureSpec, ReportSpec, TableSpec};
pub use crate::preset::Scale;

/// The file as written (before checks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    #[serde(default)]
    description: String,
    stages: Vec<String>,
    preset: Scale,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    #[serde(default)]
    backend: Option<BackendKind>,
    #[serde(default)]
    fixed: toml::Table,
    #[serde(default)]
    axes: toml::Table,
    #[serde(default)]
    variants: toml::Table,
    #[serde(default)]
    report: ReportSpec,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One setting of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub stage: StageKind,
    pub field: String,
    pub value: serde_json::Value,
}

/// One axis of the grid: a stage setting and its values (`[axes]`), or a variant table
/// (`[variants.NAME]`) whose named values each set several settings at once (Table 1's rows: "AE"
/// sets no prior, "Dino" sets the prior's source and lambda). Values are crossed into the grid in
/// file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    name: String,
    /// The values: the setting's values, or the variants' names (strings).
    pub values: Vec<serde_json::Value>,
    /// The settings each value applies (one for a setting axis).
    pub settings: Vec<Vec<Setting>>,
    /// Whether the axis is a variant table.
    pub variant: bool,
}

impl Axis {
    /// A setting axis.
    pub fn of_setting(stage: StageKind, field: &str, values: Vec<serde_json::Value>) -> Axis {
        Axis {
            name: format!("{}.{field}", stage.name()),
            settings: values
                .iter()
                .map(|v| {
                    vec![Setting {
                        stage,
                        field: field.to_string(),
                        value: v.clone(),
                    }]
                })
                .collect(),
            values,
            variant: false,
        }
    }

    /// `<stage>.<setting>` or the variant table's name, as written in the file.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// What run names show: the setting's name, or the variant table's.
    pub fn short_name(&self) -> &str {
        if self.variant {
            &self.name
        } else {
            self.name
                .split_once('.')
                .map_or(self.name.as_str(), |(_, f)| f)
        }
    }

    /// The stages some value of the axis sets.
    pub fn stages(&self) -> Vec<StageKind> {
        let mut out: Vec<StageKind> = Vec::new();
        for s in self.settings.iter().flatten() {
            if !out.contains(&s.stage) {
                out.push(s.stage);
            }
        }
        out
    }

    /// The settings value `vi` applies to `stage`.
    pub fn applied(&self, vi: usize, stage: StageKind) -> impl Iterator<Item = &Setting> {
        self.settings[vi].iter().filter(move |s| s.stage == stage)
    }
}

/// Command-line overrides of a sweep file's top-level settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    pub preset: Option<Scale>,
    pub backend: Option<BackendKind>,
    /// Seeds instead of the file's `seeds` (e.g. one seed for a CI smoke run).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
}

/// A checked sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The file's stem: what `sweep status` and `report` take.
    pub name: String,
    pub file: PathBuf,
    /// The file's text, kept in the store with the sweep.
    pub text: String,
    pub description: String,
    /// Stages in dependency order.
    pub stages: Vec<StageKind>,
    pub preset: Scale,
    pub seeds: Vec<u64>,
    pub backend: BackendKind,
    pub overrides: Overrides,
    pub fixed: Vec<Setting>,
    pub axes: Vec<Axis>,
    pub report: ReportSpec,
}

/// Collects problems so that a user sees all of them at once.
pub(super) struct Problems<'a> {
    file: &'a Path,
    list: Vec<String>,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, key: &str, message: impl std::fmt::Display) {
        self.list
            .push(format!("{}: `{key}`: {message}", self.file.display()));
    }
}

impl Sweep {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path, overrides: Overrides) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Sweep::parse(&text, path, overrides)
    }

    /// Checks a sweep file's text; `path` names it in messages and gives the sweep its name.
    pub fn parse(text: &str, path: &Path, overrides: Overrides) -> Result<Sweep, SweepError> {
        let raw: RawSweep = crate::config::parse_toml(text, path)
            .map_err(|e| SweepError::Invalid(vec![e.to_string()]))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut p = Problems {
            file: path,
            list: Vec::new(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            p.add(
                "file name",
                "a sweep is named by its file stem, which must be letters, digits, '-' or '_'",
            );
        }

        // Stages: known, unique, closed under their inputs; kept in dependency order.
        let mut stages: Vec<StageKind> = Vec::new();
        if raw.stages.is_empty() {
            p.add("stages", "expected at least one stage");
        }
        for s in &raw.stages {
            match StageKind::parse(s) {
                Some(k) if stages.contains(&k) => p.add("stages", format!("`{s}` is listed twice")),
                Some(k) => stages.push(k),
                None => p.add(
                    "stages",
                    format!(
                        "unknown stage `{s}`; expected one of {}",
                        StageKind::names()
                    ),
                ),
            }
        }
        for k in stages.iter().filter(|k| k.is_static_inputs()) {
            for need in k.inputs() {
                if !stages.contains(&need) {
                    p.add(
                        "stages",
                        format!(
                            "stage `{}` needs `{}`: add it to the list",
                            k.name(),
                            need.name()
                        ),
                    );
                }
            }
        }
        stages.sort();

        let seeds = overrides.seeds.clone().unwrap_or(raw.seeds);
        let seeds_key = if overrides.seeds.is_some() {
            "--seeds"
        } else {
            "seeds"
        };
        if seeds.is_empty() {
            p.add(seeds_key, "expected at least one seed");
        }
        let mut seen_seeds = seeds.clone();
        seen_seeds.sort();
        seen_seeds.dedup();
        if seen_seeds.len() != seeds.len() {
            p.add(seeds_key, "a seed is listed twice");
        }
        let preset = overrides.preset.unwrap_or(raw.preset);
        let backend = overrides
            .backend
            .or(raw.backend)
            .unwrap_or(BackendKind::Flex);

        let fixed = settings(&raw.fixed, "fixed", &stages, &mut p);
        let mut axes = Vec::new();
        for Setting {
            stage,
            field,
            value,
        } in settings(&raw.axes, "axes", &stages, &mut p)
        {
            let key = format!("axes.{}.{field}", stage.name());
            match value {
                serde_json::Value::Array(values) if !values.is_empty() => {
                    if values
                        .iter()
                        .enumerate()
                        .any(|(i, v)| values[..i].contains(v))
                    {
                        p.add(&key, "a value is listed twice");
                    }
                    axes.push(Axis::of_setting(stage, &field, values))
                }
                serde_json::Value::Array(_) => p.add(&key, "expected a non-empty list of values"),
                other => p.add(&key, format!("expected a list of values, got {other}")),
            }
        }
        axes.extend(variant_axes(&raw.variants, &stages, &mut p));
        // A setting is fixed, or set by one axis: never two of them.
        let mut seen: Vec<(StageKind, &str, String)> = fixed
            .iter()
            .map(|f| (f.stage, f.field.as_str(), "[fixed]".to_string()))
            .collect();
        for a in &axes {
            let mut mine: Vec<(StageKind, &str)> = Vec::new();
            for s in a.settings.iter().flatten() {
                if !mine.contains(&(s.stage, s.field.as_str())) {
                    mine.push((s.stage, s.field.as_str()));
                }
            }
            for (stage, field) in mine {
                if let Some((_, _, other)) =
                    seen.iter().find(|(st, f, _)| *st == stage && *f == field)
                {
                    p.add(
                        &format!("{}.{}", section_of(a), a.name()),
                        format!(
                            "`{}.{field}` is also set in {other}; a setting is either fixed or set by one axis",
                            stage.name()
                        ),
                    );
                } else {
                    seen.push((stage, field, format!("`{}.{}`", section_of(a), a.name())));
                }
            }
        }

        // Each fixed value's type on its own; then each stage's fixed settings together (a rule that
        // ties two settings, e.g. a file source and its path, sees both); then each axis value with
        // the fixed settings. A stage with a wrong type is not checked further (one message per fault).
        let mut broken: Vec<StageKind> = Vec::new();
        for s in &fixed {
            let cfg = configured(s.stage, preset, [(s.field.as_str(), &s.value)]);
            if let Err(m) = s.stage.check_types(&cfg) {
                p.add(&format!("fixed.{}.{}", s.stage.name(), s.field), m);
                broken.push(s.stage);
            }
        }
        let fixed_of = |stage: StageKind| {
            fixed
                .iter()
                .filter(move |s| s.stage == stage)
                .map(|s| (s.field.as_str(), &s.value))
        };
        for &stage in &stages {
            if broken.contains(&stage) {
                continue;
            }
            if let Err(m) = stage.check(&configured(stage, preset, fixed_of(stage))) {
                p.add(&format!("fixed.{}", stage.name()), m);
                broken.push(stage);
            }
        }
        for a in &axes {
            for (i, v) in a.values.iter().enumerate() {
                for stage in a.stages().into_iter().filter(|s| !broken.contains(s)) {
                    let cfg = configured(
                        stage,
                        preset,
                        fixed_of(stage)
                            .chain(a.applied(i, stage).map(|s| (s.field.as_str(), &s.value))),
                    );
                    // Whether a value is valid can depend on another axis (e.g. MAR's settings in a
                    // variant, `generator = "mar"` on another axis): it is a fault only when no
                    // choice of the other axes on this stage makes it valid (the plan then checks
                    // every combination).
                    let checked = stage.check(&cfg).or_else(|m| {
                        let others: Vec<&Axis> = axes
                            .iter()
                            .filter(|b| !std::ptr::eq(*b, a) && b.stages().contains(&stage))
                            .collect();
                        let combos: usize = others.iter().map(|b| b.values.len()).product();
                        if others.is_empty() || combos > 4096 {
                            return Err(m);
                        }
                        let valid = (0..combos).any(|mut k| {
                            let mut settings: Vec<(&str, &serde_json::Value)> = fixed_of(stage)
                                .chain(a.applied(i, stage).map(|s| (s.field.as_str(), &s.value)))
                                .collect();
                            for b in &others {
                                let vi = k % b.values.len();
                                k /= b.values.len();
                                settings.extend(
                                    b.applied(vi, stage).map(|s| (s.field.as_str(), &s.value)),
                                );
                            }
                            stage.check(&configured(stage, preset, settings)).is_ok()
                        });
                        if valid { Ok(()) } else { Err(m) }
                    });
                    if let Err(m) = checked {
                        let at = if a.variant {
                            format!(
                                "{}.{}.{}",
                                section_of(a),
                                a.name(),
                                super::plan::value_text(v)
                            )
                        } else {
                            format!("{}.{}[{i}]", section_of(a), a.name())
                        };
                        p.add(&at, m);
                    }
                }
            }
        }
        check_report(&raw.report, &axes, &stages, &mut p);

        if !p.list.is_empty() {
            return Err(SweepError::Invalid(p.list));
        }
        Ok(Sweep {
            name,
            file: path.to_path_buf(),
            text: text.to_string(),
            description: raw.description,
            stages,
            preset,
            seeds,
            backend,
            overrides,
            fixed,
            axes,
            report: raw.report,
        })
    }

    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|a| a.name() == name)
    }

    /// The stage a report column or figure reads (default: the last stage).
    pub fn metric_stage(&self, stage: Option<&str>) -> StageKind {
        stage
            .and_then(StageKind::parse)
            .or_else(|| self.stages.last().copied())
            .unwrap_or_else(|| StageKind::named(crate::stage::toy::TOY_ALIGN))
    }
}

/// The file section an axis comes from.
fn section_of(a: &Axis) -> &'static str {
    if a.variant { "variants" } else { "axes" }
}

/// `[variants.NAME]` tables: `LABEL = { <stage>.<setting> = value, ... }` per variant, in file order.
fn variant_axes(table: &toml::Table, stages: &[StageKind], p: &mut Problems<'_>) -> Vec<Axis> {
    let mut out = Vec::new();
    for (name, body) in table {
        let key = format!("variants.{name}");
        if name.is_empty() || name.contains('.') || StageKind::parse(name).is_some() {
            p.add(
                &key,
                "a variant table's name is a plain word (not a stage, no '.'); it names the axis in reports",
            );
            continue;
        }
        let Some(variants) = body.as_table() else {
            p.add(
                &key,
                "expected a table of variants: `LABEL = { <stage>.<setting> = value, ... }`",
            );
            continue;
        };
        if variants.is_empty() {
            p.add(&key, "expected at least one variant");
            continue;
        }
        let mut values = Vec::new();
        let mut settings_per = Vec::new();
        for (label, settings_table) in variants {
            let vkey = format!("{key}.{label}");
            let Some(t) = settings_table.as_table() else {
                p.add(
                    &vkey,
                    "expected the variant's settings: `{ <stage>.<setting> = value, ... }`",
                );
                continue;
            };
            values.push(serde_json::Value::from(label.clone()));
            settings_per.push(settings(t, &vkey, stages, p));
        }
        out.push(Axis {
            name: name.clone(),
            values,
            settings: settings_per,
            variant: true,
        });
    }
    out
}

/// The preset's configuration of `stage` with `settings` replaced.
fn configured<'a>(
    stage: StageKind,
    preset: Scale,
    settings: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>,
) -> serde_json::Value {
    let mut cfg = stage.defaults(preset);
    if let Some(obj) = cfg.as_object_mut() {
        for (field, value) in settings {
            obj.insert(field.to_string(), value.clone());
        }
    }
    cfg
}

/// Flattens `[section] <stage>.<field> = value` into (stage, field, value), reporting unknown stages,
/// stages not in the sweep, unknown fields and settings that belong at the top level.
fn settings(
    table: &toml::Table,
    section: &str,
    stages: &[StageKind],
    p: &mut Problems<'_>,
) -> Vec<Setting> {
    let mut out = Vec::new();
    for (stage_name, fields) in table {
        let key = format!("{section}.{stage_name}");
        let Some(stage) = StageKind::parse(stage_name) else {
            p.add(
                &key,
                format!(
                    "unknown stage; settings are written `<stage>.<setting>` with a stage among {}",
                    StageKind::names()
                ),
            );
            continue;
        };
        if !stages.contains(&stage) {
            p.add(&key, "this stage is not in `stages`");
            continue;
        }
        let Some(fields) = fields.as_table() else {
            p.add(
                &key,
                "expected a table of settings (`<stage>.<setting> = value`)",
            );
            continue;
        };
        let known = stage.defaults(Scale::Smoke);
        for (field, value) in fields {
            let key = format!("{key}.{field}");
            if field == "seed" || field == "backend" {
                p.add(
                    &key,
                    format!(
                        "set with the top-level `{field}{}` key",
                        if field == "seed" { "s" } else { "" }
                    ),
                );
                continue;
            }
            let optional = stage.optional_settings();
            if known.get(field).is_none() && !optional.contains(&field.as_str()) {
                let mut names: Vec<&str> = known
                    .as_object()
                    .map(|o| {
                        o.keys()
                            .map(String::as_str)
                            .filter(|k| *k != "seed" && *k != "backend")
                            .collect()
                    })
                    .unwrap_or_default();
                names.extend(optional);
                names.sort_unstable();
                p.add(
                    &key,
                    format!(
                        "unknown setting of stage `{}`; expected one of {}",
                        stage.name(),
                        names.join(", ")
                    ),
                );
                continue;
            }
            match serde_json::to_value(value) {
                Ok(value) => out.push(Setting {
                    stage,
                    field: field.clone(),
                    value,
                }),
                Err(e) => p.add(&key, format!("unsupported value: {e}")),
            }
        }
    }
    out
}
