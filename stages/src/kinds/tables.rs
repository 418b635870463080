//! `tables`: the tables and figures people read, from the outputs of a group of training
//! stages.
//!
//! Computes, with polars, mean ± sample std over seeds (with n) of the numbers in the runs'
//! `metrics.json`, and GLC's summary of a noise sweep: the test error averaged over the
//! corruption strengths 0, 0.1, ..., 1.0, which is the "area under the error curve" of GLC
//! Table 1 (Hendrycks et al., NeurIPS 2018). The six layouts (GLC Table 1, the official MLC
//! code's protocol, clean data, noisy data, distillation, T estimation) and the contract
//! training kinds follow for them are described in [`crate::report`] and
//! `report/layouts/*.rs`. The only numbers not read from metrics are quotes from GLC Table
//! 1 and the soft-labels paper's "+2.1%", in `report/paper.rs` with their source.
//!
//! Inputs: every input group except `noise` holds training stages (`train`, `train_mlc`,
//! `train_soft_labels`, `distill`) whose `metrics.json` is read (e.g. `runs: train*`);
//! `noise` (optional) holds `inject_noise` stages, read for the true C of the
//! `t_vs_true_c` figure.
//!
//! Outputs: `tables/<name>.csv`, `tables/<name>.tex` (booktabs), `tables/<name>.md`, each
//! starting with a provenance comment (profile, dataset identities, pipeline fingerprint =
//! SHA-256 over the inputs' member names and metrics bytes); `figures/<name>.svg` and
//! `figures/<name>.png`. Same inputs, same bytes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::noise::{Matrix, NoisyLabels};
use crate::report::figures::error_curves::ErrorCurves;
use crate::report::figures::heatmap::Heatmaps;
use crate::report::figures::{write_svg_png, FigureKind};
use crate::report::layouts::{self, TableKind};
use crate::report::matrix_file::{self, CLASS_SIMILARITY_FILE, C_HAT_FILE, T_FINAL_FILE};
use crate::report::run::{load_runs, Run};
use crate::report::{writers, Provenance};
use crate::StageContext;

pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Tables to write. Default: none (but a stage must write at least one table or figure).
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// Figures to draw. Default: none.
    #[serde(default)]
    pub figures: Vec<FigureSpec>,
    /// Pipeline fingerprint stated in the provenance comments. Default: SHA-256 over the
    /// sorted (member name, `metrics.json` bytes) of every input run.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The dataset this report covers, set by a stage matrix axis `dataset` (one value
    /// per report member). The engine binds a group input (`up[*]`) to the upstream members
    /// that agree with the report on the axes both have, so the axis restricts the report
    /// to that dataset's runs; the stage checks that every run read has it. Default: none
    /// (every run of the groups).
    #[serde(default)]
    pub dataset: Option<String>,
    /// The trusted fraction this report covers, set by a stage matrix axis
    /// `trusted_fraction`, like `dataset`. Default: none.
    #[serde(default)]
    pub trusted_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Layout: `glc_table1` | `mlc_code` | `clean` | `noisy` | `distill` | `t_estimation`.
    pub table: TableKind,
    /// File stem under `tables/` (letters, digits, `_`, `-`). Default: the layout's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Methods shown as columns, in order (for `distill`: the teachers' methods; for
    /// `t_estimation`: estimators `mlc`, `glc`, `forward`, `confusion`, `identity`).
    /// Default: the layout's list (`glc_table1`, `clean`) or every method present.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Corruption strengths used (fractions). Default: every strength present.
    #[serde(default)]
    pub strengths: Vec<f64>,
    /// `mlc_code` only: show the metrics extra `best_test_accuracy` (best epoch, selected on
    /// the test split like the official MLC code) instead of the final accuracy.
    /// Default: false.
    #[serde(default)]
    pub best_accuracy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    /// `error_curves` | `t_vs_true_c` | `class_similarity`.
    pub figure: FigureKind,
    /// File stem under `figures/`. Default: the figure's name.
    #[serde(default)]
    pub name: Option<String>,
    /// `error_curves`: methods drawn. Default: every method present.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `t_vs_true_c`, `class_similarity`: only runs whose matrix coordinates equal these
    /// (e.g. `{corruption: flip, strength: 0.6, seed: 1}`). Default: no filter.
    #[serde(default)]
    pub select: BTreeMap<String, Value>,
    /// `t_vs_true_c`, `class_similarity`: at most this many runs drawn (the first by member
    /// name). Default: 2.
    #[serde(default = "two")]
    pub max_runs: usize,
    /// `t_vs_true_c`: which matrix of a run: `t_final` (learned T) or `c_hat` (estimated C).
    /// Default: `t_final`.
    #[serde(default)]
    pub matrix: MatrixChoice,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixChoice {
    #[default]
    TFinal,
    CHat,
}

fn two() -> usize {
    2
}

fn table_kind_name(k: TableKind) -> &'static str {
    match k {
        TableKind::GlcTable1 => "glc_table1",
        TableKind::MlcCode => "mlc_code",
        TableKind::Clean => "clean",
        TableKind::Noisy => "noisy",
        TableKind::Distill => "distill",
        TableKind::TEstimation => "t_estimation",
    }
}

fn figure_kind_name(k: FigureKind) -> &'static str {
    match k {
        FigureKind::ErrorCurves => "error_curves",
        FigureKind::TVsTrueC => "t_vs_true_c",
        FigureKind::ClassSimilarity => "class_similarity",
    }
}

fn check_name(name: &str, what: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "params: {what} name `{name}` must be non-empty and use only letters, digits, `_` and `-`"
    );
    Ok(())
}

/// Whether a run's coordinates match every `select` entry (numbers compared as numbers).
pub fn selected(run: &Run, select: &BTreeMap<String, Value>) -> bool {
    select.iter().all(|(k, v)| match (run.coords.get(k), v) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    })
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    ensure!(
        !p.tables.is_empty() || !p.figures.is_empty(),
        "params: `tables` and `figures` are both empty"
    );
    let mut names = BTreeSet::new();
    for t in &p.tables {
        let n = t
            .name
            .clone()
            .unwrap_or_else(|| table_kind_name(t.table).into());
        check_name(&n, "table")?;
        ensure!(
            names.insert(("t", n.clone())),
            "params: two tables are named `{n}`"
        );
    }
    for f in &p.figures {
        let n = f
            .name
            .clone()
            .unwrap_or_else(|| figure_kind_name(f.figure).into());
        check_name(&n, "figure")?;
        ensure!(
            names.insert(("f", n.clone())),
            "params: two figures are named `{n}`"
        );
    }
    let refs: Vec<crate::InputRef> = ctx
        .inputs
        .iter()
        .filter(|(name, _)| name.as_str() != "noise")
        .flat_map(|(_, v)| v.iter().cloned())
        .collect();
    ensure!(
        !refs.is_empty(),
        "{} has no input runs (every input group except `noise` holds training stages)",
        ctx.member
    );
    for r in &refs {
        super::metrics_schema::check_dir(&r.dir).with_context(|| format!("input {}", r.member))?;
    }
    let runs = load_runs(&refs)?;
    check_coordinates(p, &runs)?;
    let prov = Provenance::new(&ctx.profile, &runs, p.fingerprint.as_deref());

    let total = (p.tables.len() + p.figures.len()) as u64;
    ctx.progress.phase("tables", "output", total);
    let mut done = 0;
    let tables_dir = ctx.out_dir.join("tables");
    for spec in &p.tables {
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| table_kind_name(spec.table).into());
        let opts = layouts::Options {
            name: name.clone(),
            methods: spec.methods.clone(),
            strengths: spec.strengths.clone(),
            best_accuracy: spec.best_accuracy,
        };
        let table = layouts::build(spec.table, &runs, &opts, prov.clone())
            .with_context(|| format!("building table `{name}`"))?;
        if let Some(bad) = table.numbers().into_iter().find(|x| !x.is_finite()) {
            bail!("table `{name}` holds a non-finite number ({bad}); check the runs' metrics");
        }
        writers::write_all(&table, &tables_dir)
            .with_context(|| format!("writing table `{name}`"))?;
        done += 1;
        ctx.progress.position(done);
    }
    let fig_dir = ctx.out_dir.join("figures");
    for spec in &p.figures {
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| figure_kind_name(spec.figure).into());
        draw_figure(spec, &name, &runs, ctx).with_context(|| format!("drawing figure `{name}`"))?;
        let _ = &fig_dir;
        done += 1;
        ctx.progress.position(done);
    }
    Ok(())
}

/// Fails unless every run has the report's `dataset` and `trusted_fraction` (when set).
fn check_coordinates(p: &Params, runs: &[Run]) -> Result<()> {
    for r in runs {
        if let Some(d) = &p.dataset {
            ensure!(
                &r.metrics.dataset.name == d,
                "input run {} is of dataset `{}`, but this report covers `{d}` only (params: dataset)",
                r.member,
                r.metrics.dataset.name
            );
        }
        if let Some(f) = p.trusted_fraction {
            let got = r.trusted_fraction();
            ensure!(
                got.is_some_and(|g| (g - f).abs() < 1e-12),
                "input run {} has trusted fraction {got:?}, but this report covers {f} only (params: trusted_fraction)",
                r.member
            );
        }
    }
    Ok(())
}

fn draw_figure(spec: &FigureSpec, name: &str, runs: &[Run], ctx: &StageContext) -> Result<()> {
    let dir = ctx.out_dir.join("figures");
    match spec.figure {
        FigureKind::ErrorCurves => {
            let fig = ErrorCurves::from_runs(runs, &spec.methods)?;
            ensure!(!fig.panels.is_empty(), "no noisy-label runs to draw");
            write_svg_png(&fig, &dir, name)
        }
        FigureKind::TVsTrueC => {
            let file = match spec.matrix {
                MatrixChoice::TFinal => T_FINAL_FILE,
                MatrixChoice::CHat => C_HAT_FILE,
            };
            let noise: Vec<NoisyLabels> = ctx
                .group("noise")
                .iter()
                .map(|r| {
                    NoisyLabels::load(&r.dir).with_context(|| format!("noise input {}", r.member))
                })
                .collect::<Result<_>>()?;
            let mut panels = Vec::new();
            for r in runs
                .iter()
                .filter(|r| selected(r, &spec.select) && r.dir.join(file).exists())
                .take(spec.max_runs)
            {
                let t = matrix_file::load(&r.dir, file)?;
                let c = true_c_for(r, &noise)?;
                ensure!(
                    t.k == c.k,
                    "{}: {file} is {}×{} but the true C is {}×{}",
                    r.member,
                    t.k,
                    t.k,
                    c.k,
                    c.k
                );
                let label = if file == T_FINAL_FILE {
                    "learned T"
                } else {
                    "estimated C"
                };
                panels.push((format!("{label}: {}", r.member), t));
                panels.push((
                    format!("true C: {} {}", r.corruption(), r.strength().unwrap_or(0.0)),
                    c,
                ));
            }
            ensure!(!panels.is_empty(), "no selected run has {file}");
            write_svg_png(&Heatmaps::new(panels, 2)?, &dir, name)
        }
        FigureKind::ClassSimilarity => {
            let mut panels = Vec::new();
            for r in runs
                .iter()
                .filter(|r| selected(r, &spec.select) && r.dir.join(CLASS_SIMILARITY_FILE).exists())
                .take(spec.max_runs)
            {
                panels.push((
                    format!("class similarity: {}", r.member),
                    matrix_file::load(&r.dir, CLASS_SIMILARITY_FILE)?,
                ));
            }
            ensure!(
                !panels.is_empty(),
                "no selected run has {CLASS_SIMILARITY_FILE}"
            );
            let mut fig = Heatmaps::new(panels, 2)?;
            fig.x_desc = "class of the learned label".into();
            fig.y_desc = "class of the example".into();
            write_svg_png(&fig, &dir, name)
        }
    }
}

/// The true C of the noise draw a run trained on: the `noise` input with the same dataset
/// identity, corruption, strength and trusted fraction (the same seed when several match).
fn true_c_for(run: &Run, noise: &[NoisyLabels]) -> Result<Matrix> {
    let n = run
        .metrics
        .noise
        .as_ref()
        .with_context(|| format!("{} is a clean-data run: no true C", run.member))?;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let matches: Vec<&NoisyLabels> = noise
        .iter()
        .filter(|x| {
            x.meta.dataset_identity == run.metrics.dataset.identity
                && x.meta.corruption == n.corruption
                && close(x.meta.strength, n.strength)
                && close(x.meta.trusted_fraction, n.trusted_fraction)
        })
        .collect();
    let pick = matches
        .iter()
        .find(|x| x.meta.seed == run.metrics.seed)
        .or(matches.first());
    match pick {
        Some(x) => Ok(x.true_c.clone()),
        None => bail!(
            "no `noise` input matches run {} ({} {} {}, trusted {}): add its inject_noise stage to the `noise` input group",
            run.member,
            run.metrics.dataset.name,
            n.corruption,
            n.strength,
            n.trusted_fraction
        ),
    }
}
