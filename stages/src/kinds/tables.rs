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
//! Inputs: every input group holds training stages (`train`, `train_mlc`,
//! `train_soft_labels`, `distill`, `command`) whose `metrics.json` is read (e.g.
//! `runs: train*`), except the groups of `inject_noise` stages (`noise`, or any other name:
//! their outputs hold `noise.json` and no `metrics.json`), read for the true C of the
//! `t_vs_true_c` figure.
//!
//! Typos are refused, not tabulated: a `methods` entry of a table or figure that names no
//! input run (for `distill`, no student's teacher; for `t_estimation`, `identity` or a
//! run's method) would be an empty column, and a group of runs that no table or figure
//! shows would be dropped silently. Both are errors naming the entry or the input: when the
//! pipeline loads, from the methods the input stages' params declare
//! ([`Params::check_inputs`]), and when the stage runs, from the metrics themselves.
//!
//! Outputs: `tables/<name>.csv`, `tables/<name>.tex` (booktabs), `tables/<name>.md`, each
//! starting with a provenance comment (profile, dataset identities, pipeline fingerprint =
//! SHA-256 over the inputs' member names and metrics bytes); `figures/<name>.svg` and
//! `figures/<name>.png`. Same inputs, same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::context::StageContext;
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::metrics;
use crate::noise::{Matrix, NoisyLabels, META_FILE};
use crate::report::figures::error_curves::ErrorCurves;
use crate::report::figures::heatmap::Heatmaps;
use crate::report::figures::{write_svg_png, FigureKind};
use crate::report::layouts::{self, clean, glc_table1, t_estimation, TableKind};
use crate::report::matrix_file::{self, CLASS_SIMILARITY_FILE, C_HAT_FILE, T_FINAL_FILE};
use crate::report::run::{load_runs, RunRecord};
use crate::report::{writers, Provenance};
use crate::stage_kind::StageKind;

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
    /// `mlc_code` only: show the metrics extra `best_test_accuracy` (the best of the
    /// last phase's evaluations, at epoch ends and every `eval_interval` iterations,
    /// selected on the test split like the official MLC code) instead of the final
    /// accuracy.
    /// Default: false.
    #[serde(default)]
    pub best_accuracy: bool,
    /// Sentences added to the caption after the layout's own: where the runs follow a
    /// recipe that is guessed or borrowed rather than read in the source
    /// (`docs/protocols.md`), so the table says so wherever it is copied. Each is one
    /// non-empty line ending with a full stop. Default: none.
    #[serde(default)]
    pub notes: Vec<String>,
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

impl StageKind for Params {
    const VERSION: u32 = 1;

    /// What deserializing cannot say: at least one table or figure, each named with
    /// letters, digits, `_` and `-` only, no two alike.
    fn check(&self) -> Result<(), String> {
        if self.tables.is_empty() && self.figures.is_empty() {
            return Err("`tables` and `figures` are both empty".into());
        }
        let mut names = BTreeSet::new();
        let tables = self.tables.iter().enumerate().map(|(i, t)| {
            let n = t
                .name
                .clone()
                .unwrap_or_else(|| table_kind_name(t.table).into());
            (format!("tables[{i}].name"), "table", n)
        });
        let figures = self.figures.iter().enumerate().map(|(i, f)| {
            let n = f
                .name
                .clone()
                .unwrap_or_else(|| figure_kind_name(f.figure).into());
            (format!("figures[{i}].name"), "figure", n)
        });
        for (field, what, n) in tables.chain(figures) {
            let ok = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "field `{field}`: {what} name `{n}` must be non-empty and use only \
                     letters, digits, `_` and `-`"
                ));
            }
            if !names.insert((what, n.clone())) {
                return Err(format!("field `{field}`: two {what}s are named `{n}`"));
            }
        }
        for (i, t) in self.tables.iter().enumerate() {
            for (j, note) in t.notes.iter().enumerate() {
                let one_sentence =
                    !note.trim().is_empty() && !note.contains(['\n', '\r']) && note.ends_with('.');
                if !one_sentence {
                    return Err(format!(
                        "field `tables[{i}].notes[{j}]`: `{note}` must be one non-empty line \
                         ending with a full stop"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The checks of [`Params::check_lists`] when the pipeline loads, from what the input
    /// stages declare: the method a member's kind and params say its metrics will carry,
    /// whether it reads noisy labels (a training kind does when it has a `noise` input; a
    /// program's is not known), a distilled student's teacher's method. An input of a kind
    /// that writes no metrics (other than `inject_noise`) is refused.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        let mut groups = Vec::new();
        for name in inputs.member().inputs.keys() {
            let bound = inputs.bound(name);
            if name == "noise" || bound.iter().all(|d| d.kind == Kind::InjectNoise) {
                continue;
            }
            let mut runs = Vec::new();
            for d in bound {
                let Some(method) = d.method.map(str::to_string) else {
                    return Err(format!(
                        "input `{name}` reads `{}`, a `{}` stage, which writes no metrics.json: \
                         a tables stage reads training stages, and inject_noise stages for the \
                         true C",
                        d.name,
                        d.kind.name()
                    ));
                };
                let teacher = inputs
                    .of(d)
                    .bound("teacher")
                    .first()
                    .and_then(|t| t.method.map(str::to_string));
                runs.push(RunView {
                    method: Some(method),
                    noisy: (d.kind != Kind::Command).then(|| d.inputs.contains_key("noise")),
                    teacher,
                    // MLC's runs carry the identity's distances; a program's may.
                    identity: match d.kind {
                        Kind::TrainMlc => Some(true),
                        Kind::Command => None,
                        _ => Some(false),
                    },
                    coords: d.coords,
                    dir: None,
                    kind: Some(d.kind),
                });
            }
            groups.push((name.clone(), runs));
        }
        self.check_lists(&groups)
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

/// Whether a run's coordinates match every `select` entry (numbers compared as numbers).
pub fn selected(run: &RunRecord, select: &BTreeMap<String, Value>) -> bool {
    coords_selected(&run.coords, select)
}

fn coords_selected(coords: &BTreeMap<String, Value>, select: &BTreeMap<String, Value>) -> bool {
    select.iter().all(|(k, v)| match (coords.get(k), v) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    })
}

/// One input run as a table or figure sees it when deciding whether it shows it: before
/// anything runs, from its stage's kind and params (`None`: not known yet); when the tables
/// stage runs, from its metrics.
struct RunView<'a> {
    /// The method its metrics report.
    method: Option<String>,
    /// Whether it trained on noisy labels (its metrics' `noise` is set).
    noisy: Option<bool>,
    /// A distilled student's teacher's method.
    teacher: Option<String>,
    /// Whether its metrics carry the identity's distances to the true C (`identity_*`
    /// extras), which `t_estimation` shows.
    identity: Option<bool>,
    coords: &'a BTreeMap<String, Value>,
    /// Its outputs, once it has run (the matrix files figures read).
    dir: Option<&'a Path>,
    /// Its stage's kind, before it has run (which matrix files it will write).
    kind: Option<Kind>,
}

impl RunView<'_> {
    fn method_in(&self, list: &[String]) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| list.iter().any(|e| e == m))
    }
    fn may_be_noisy(&self) -> bool {
        self.noisy != Some(false)
    }
    fn may_be_distilled(&self) -> bool {
        self.method.as_deref().is_none_or(|m| m == "distill")
    }
    /// Whether it writes the matrix file `file` (unknown: yes): once run, whether the file
    /// is there; before, whether its kind writes it (learned labels' class similarity, MLC's
    /// T; a C-hat depends on the method, a program's files on the program).
    fn has_file(&self, file: &str) -> bool {
        if let Some(d) = self.dir {
            return d.join(file).exists();
        }
        match (self.kind, file) {
            (None | Some(Kind::Command), _) => true,
            (Some(k), CLASS_SIMILARITY_FILE) => k == Kind::TrainSoftLabels,
            (Some(k), T_FINAL_FILE) => k == Kind::TrainMlc,
            (Some(k), _) => matches!(k, Kind::Train | Kind::TrainMlc),
        }
    }
}

/// `methods`, or `defaults` when empty.
fn or_defaults(methods: &[String], defaults: &[&str]) -> Vec<String> {
    if methods.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        methods.to_vec()
    }
}

impl TableSpec {
    /// Whether the table may show run `r` (what is unknown of `r` counted in its favour):
    /// the runs each layout takes, of the methods it lists.
    fn shows(&self, r: &RunView) -> bool {
        let all = self.methods.is_empty();
        match self.table {
            TableKind::GlcTable1 => {
                r.may_be_noisy()
                    && r.method_in(&or_defaults(&self.methods, &glc_table1::DEFAULT_METHODS))
            }
            TableKind::Clean => {
                r.noisy != Some(true)
                    && r.method_in(&or_defaults(&self.methods, &clean::DEFAULT_METHODS))
            }
            TableKind::Noisy | TableKind::MlcCode => {
                r.may_be_noisy()
                    && r.method.as_deref() != Some("distill")
                    && (all || r.method_in(&self.methods))
            }
            TableKind::Distill => {
                r.may_be_distilled()
                    && (all || r.teacher.as_ref().is_none_or(|t| self.methods.contains(t)))
            }
            TableKind::TEstimation => {
                let estimators: Vec<String> = match all {
                    true => t_estimation::ESTIMATORS
                        .iter()
                        .map(|(e, _, _)| e.to_string())
                        .collect(),
                    false => self.methods.clone(),
                };
                let identity = estimators.iter().any(|e| e == "identity");
                r.may_be_noisy()
                    && (r.method_in(&estimators) || (identity && r.identity != Some(false)))
            }
        }
    }

    /// Whether `entry` of `methods` names one of `runs`: a run's method (for `distill`, a
    /// student's teacher's; for `t_estimation`, `identity` names any noisy run).
    fn names_a_run(&self, entry: &str, runs: &[&RunView]) -> bool {
        match self.table {
            TableKind::Distill => runs
                .iter()
                .any(|r| r.may_be_distilled() && r.teacher.as_deref().is_none_or(|t| t == entry)),
            TableKind::TEstimation if entry == "identity" => runs
                .iter()
                .any(|r| r.may_be_noisy() && r.identity != Some(false)),
            _ => runs
                .iter()
                .any(|r| r.method.as_deref().is_none_or(|m| m == entry)),
        }
    }
}

impl FigureSpec {
    /// Whether the figure may show run `r` (see [`TableSpec::shows`]).
    fn shows(&self, r: &RunView) -> bool {
        match self.figure {
            FigureKind::ErrorCurves => {
                r.may_be_noisy()
                    && r.method.as_deref() != Some("distill")
                    && (self.methods.is_empty() || r.method_in(&self.methods))
            }
            FigureKind::TVsTrueC => {
                let file = match self.matrix {
                    MatrixChoice::TFinal => T_FINAL_FILE,
                    MatrixChoice::CHat => C_HAT_FILE,
                };
                r.may_be_noisy() && coords_selected(r.coords, &self.select) && r.has_file(file)
            }
            FigureKind::ClassSimilarity => {
                coords_selected(r.coords, &self.select) && r.has_file(CLASS_SIMILARITY_FILE)
            }
        }
    }
}

/// The methods of `runs` (known ones, sorted), for messages.
fn methods_of<'a>(runs: impl Iterator<Item = &'a RunView<'a>>, teachers: bool) -> String {
    let set: BTreeSet<&str> = runs
        .filter_map(|r| {
            if teachers {
                r.teacher.as_deref()
            } else {
                r.method.as_deref()
            }
        })
        .collect();
    if set.is_empty() {
        "none".to_string()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

impl Params {
    /// Refuses a `methods` entry that names no input run and an input group none of whose
    /// runs any table or figure shows (see the module doc); `groups` holds each run
    /// group's name and runs. Errors read `field `tables[1].methods`: ...` or
    /// `input `NAME`: ...`.
    fn check_lists(&self, groups: &[(String, Vec<RunView>)]) -> Result<(), String> {
        let all: Vec<&RunView> = groups.iter().flat_map(|(_, v)| v).collect();
        for (i, t) in self.tables.iter().enumerate() {
            for e in &t.methods {
                if !t.names_a_run(e, &all) {
                    let (what, teachers) = match t.table {
                        TableKind::Distill => ("the teacher of no distilled input run", true),
                        _ => ("the method of no input run", false),
                    };
                    return Err(format!(
                        "field `tables[{i}].methods`: `{e}` is {what} (theirs: {})",
                        methods_of(all.iter().copied(), teachers)
                    ));
                }
            }
        }
        for (i, f) in self.figures.iter().enumerate() {
            for e in &f.methods {
                if !all
                    .iter()
                    .any(|r| r.method.as_deref().is_none_or(|m| m == e))
                {
                    return Err(format!(
                        "field `figures[{i}].methods`: `{e}` is the method of no input run \
                         (theirs: {})",
                        methods_of(all.iter().copied(), false)
                    ));
                }
            }
        }
        for (name, runs) in groups {
            let shown = runs.iter().any(|r| {
                self.tables.iter().any(|t| t.shows(r)) || self.figures.iter().any(|f| f.shows(r))
            });
            if !shown && !runs.is_empty() {
                return Err(format!(
                    "input `{name}`: no table or figure shows its {} run(s) (method(s): {}); \
                     list the method in a table's `methods`, or drop the input",
                    runs.len(),
                    methods_of(runs.iter(), false)
                ));
            }
        }
        Ok(())
    }
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    p.check().map_err(|e| anyhow::anyhow!("params: {e}"))?;
    let refs: Vec<crate::context::InputRef> = ctx
        .inputs
        .iter()
        .filter(|(name, refs)| !is_noise_group(name, refs))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect();
    ensure!(
        !refs.is_empty(),
        "{} has no input runs (every input group but those of inject_noise stages holds \
         training stages)",
        ctx.member
    );
    for r in &refs {
        crate::metrics_schema::check_dir(&r.dir).with_context(|| format!("input {}", r.member))?;
    }
    let runs = load_runs(&refs)?;
    check_coordinates(p, &runs)?;
    check_lists_of_runs(p, ctx, &runs).map_err(|e| anyhow::anyhow!("params: {e}"))?;
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
        let mut table = layouts::build(spec.table, &runs, &opts, prov.clone())
            .with_context(|| format!("building table `{name}`"))?;
        for note in &spec.notes {
            table.caption.push(' ');
            table.caption.push_str(note.trim());
        }
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

/// Whether input group `name` holds inject_noise outputs (read for the true C), not runs:
/// it is named `noise`, or every folder holds `noise.json` and no `metrics.json`.
fn is_noise_group(name: &str, refs: &[crate::context::InputRef]) -> bool {
    name == "noise"
        || refs
            .iter()
            .all(|r| r.dir.join(META_FILE).exists() && !r.dir.join(metrics::FILE).exists())
}

/// The inject_noise outputs among the inputs (every noise group's).
fn noise_refs<'c>(ctx: &'c StageContext) -> Vec<&'c crate::context::InputRef> {
    ctx.inputs
        .iter()
        .filter(|(name, refs)| is_noise_group(name, refs))
        .flat_map(|(_, v)| v.iter())
        .collect()
}

/// [`Params::check_lists`] on the loaded runs, grouped by input.
fn check_lists_of_runs(p: &Params, ctx: &StageContext, runs: &[RunRecord]) -> Result<(), String> {
    let by_member: BTreeMap<&str, &RunRecord> =
        runs.iter().map(|r| (r.member.as_str(), r)).collect();
    let groups: Vec<(String, Vec<RunView>)> = ctx
        .inputs
        .iter()
        .filter(|(name, refs)| !is_noise_group(name, refs))
        .map(|(name, refs)| {
            let views = refs
                .iter()
                .filter_map(|i| by_member.get(i.member.as_str()))
                .map(|r| RunView {
                    method: Some(r.metrics.method.clone()),
                    noisy: Some(r.metrics.noise.is_some()),
                    teacher: r.teacher.as_ref().map(|t| t.method.clone()),
                    identity: Some(r.metrics.extra.keys().any(|k| k.starts_with("identity_"))),
                    coords: &r.coords,
                    dir: Some(&r.dir),
                    kind: None,
                })
                .collect();
            (name.clone(), views)
        })
        .collect();
    p.check_lists(&groups)
}

/// Fails unless every run has the report's `dataset` and `trusted_fraction` (when set).
fn check_coordinates(p: &Params, runs: &[RunRecord]) -> Result<()> {
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

fn draw_figure(
    spec: &FigureSpec,
    name: &str,
    runs: &[RunRecord],
    ctx: &StageContext,
) -> Result<()> {
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
            let noise: Vec<NoisyLabels> = noise_refs(ctx)
                .into_iter()
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
fn true_c_for(run: &RunRecord, noise: &[NoisyLabels]) -> Result<Matrix> {
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
            "no `noise` input matches run {} ({} {} {}, trusted {}): add its inject_noise stage to the inputs (`noise: \"stage[*]\"`)",
            run.member,
            run.metrics.dataset.name,
            n.corruption,
            n.strength,
            n.trusted_fraction
        ),
    }
}
