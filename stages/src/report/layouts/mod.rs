//! The six tables, each laid out like the paper table it mirrors (see each file), built
//! from a group of runs. Values are percentages: test error or accuracy ×100, transition
//! matrix distances as plain numbers.
//!
//! Bold ("best") is defined per table: T1–T5 mark the best method in each row (lowest
//! error / highest accuracy, as the papers do), T6 the best estimator per row and distance.
//! T1 and T4 also test every entry against its row's best over seeds (one-sided Welch's
//! t-test, [`crate::report::significance`]) and mark those not significantly worse (†);
//! with fewer than 3 seeds nothing is marked and the caption says why.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;

use crate::method::order_key;
use crate::report::aggregate::{group_stats, num_key, Obs, Stat};
use crate::report::format::{corruption_name, corruption_rank, dataset_name, percent};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Cell, ColumnSpec, Row, Table};

pub mod clean;
pub mod distill;
pub mod glc_table1;
pub mod mlc_code;
pub mod noisy;
pub mod t_estimation;

/// Which table a `tables` stage writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// T1: GLC Table 1 (area under the error curve per dataset × corruption × trusted %).
    GlcTable1,
    /// T2: the official MLC code's protocol (corruption × noise %, test accuracy).
    MlcCode,
    /// T3: clean data, one-hot vs label smoothing vs learned labels.
    Clean,
    /// T4: noisy data, learned labels vs the others, with the label-correction rate.
    Noisy,
    /// T5: distillation, student accuracy per teacher's labels.
    Distill,
    /// T6: transition-matrix estimation error against the true corruption matrix.
    TEstimation,
}

/// What a table builder gets besides the runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Table file stem.
    pub name: String,
    /// Methods (columns) in order; empty = the table's default.
    pub methods: Vec<String>,
    /// Corruption strengths used; empty = all present.
    pub strengths: Vec<f64>,
    /// Use the metrics extra `best_test_accuracy` instead of the final accuracy (T2).
    pub best_accuracy: bool,
}

pub fn build(
    kind: TableKind,
    runs: &[RunRecord],
    opts: &Options,
    prov: Provenance,
) -> Result<Table> {
    match kind {
        TableKind::GlcTable1 => glc_table1::build(runs, opts, prov),
        TableKind::MlcCode => mlc_code::build(runs, opts, prov),
        TableKind::Clean => clean::build(runs, opts, prov),
        TableKind::Noisy => noisy::build(runs, opts, prov),
        TableKind::Distill => distill::build(runs, opts, prov),
        TableKind::TEstimation => t_estimation::build(runs, opts, prov),
    }
}

/// Methods present in `runs`, in [`crate::method::order_key`]'s order (the built-in
/// methods by [`crate::method::Method::place`], then the others by name).
pub fn methods_present<'a>(runs: impl Iterator<Item = &'a RunRecord>) -> Vec<String> {
    let mut ms: Vec<String> = runs.map(|r| r.metrics.method.clone()).collect();
    ms.sort_by_key(|m| order_key(m));
    ms.dedup();
    ms
}

/// A row setting: dataset, corruption, strength, trusted fraction (unused parts None).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub dataset: String,
    pub corruption: String,
    pub strength: Option<f64>,
    pub trusted: Option<f64>,
}

impl Setting {
    pub fn key(&self) -> Vec<String> {
        vec![
            self.dataset.clone(),
            self.corruption.clone(),
            self.strength.map(num_key).unwrap_or_default(),
            self.trusted.map(num_key).unwrap_or_default(),
        ]
    }
    pub fn cmp(&self, o: &Setting) -> Ordering {
        let f = |x: Option<f64>| x.unwrap_or(-1.0);
        self.dataset
            .cmp(&o.dataset)
            .then(corruption_rank(&self.corruption).cmp(&corruption_rank(&o.corruption)))
            .then(self.corruption.cmp(&o.corruption))
            .then(f(self.trusted).total_cmp(&f(o.trusted)))
            .then(f(self.strength).total_cmp(&f(o.strength)))
    }
}

/// The runs a noisy-label table (T2, T4) shows: trained on corrupted labels (no distilled
/// students), of `opts.methods` and at `opts.strengths` when given, with the methods in
/// column order; fails when two runs share setting, method and seed.
pub fn noisy_label_runs<'a>(
    all: &'a [RunRecord],
    opts: &Options,
) -> Result<(Vec<&'a RunRecord>, Vec<String>)> {
    let sk: Vec<String> = opts.strengths.iter().map(|s| num_key(*s)).collect();
    let runs: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.metrics.noise.is_some() && r.metrics.method != "distill")
        .filter(|r| opts.methods.is_empty() || opts.methods.contains(&r.metrics.method))
        .filter(|r| sk.is_empty() || sk.contains(&num_key(r.strength().unwrap_or(-1.0))))
        .collect();
    let methods = if opts.methods.is_empty() {
        methods_present(runs.iter().copied())
    } else {
        opts.methods.clone()
    };
    ensure_unique(&runs, |r| {
        let mut k = noise_setting(r).key();
        k.extend([r.metrics.method.clone(), r.metrics.seed.to_string()]);
        k
    })?;
    Ok((runs, methods))
}

/// A noisy-label run's setting: dataset, corruption, strength, trusted fraction.
pub fn noise_setting(r: &RunRecord) -> Setting {
    Setting {
        dataset: r.metrics.dataset.name.clone(),
        corruption: r.corruption().into(),
        strength: r.strength(),
        trusted: r.trusted_fraction(),
    }
}

/// A run's setting without its strength (a table or figure that spans the strengths):
/// dataset, corruption, trusted fraction.
pub fn setting_across_strengths(r: &RunRecord) -> Setting {
    Setting {
        strength: None,
        ..noise_setting(r)
    }
}

/// `opts.methods`, or `defaults` when none are given.
pub fn methods_or_default(opts: &Options, defaults: &[&str]) -> Vec<String> {
    if opts.methods.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        opts.methods.clone()
    }
}

/// A data row of a noisy-label table: its section is the setting's dataset and corruption.
pub fn noise_row(s: &Setting, cells: Vec<Cell>) -> Row {
    Row::data(cells, format!("{}/{}", s.dataset, s.corruption))
}

/// The key columns of a noisy-label table, and a row's cells under them.
pub fn noise_setting_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::key("Dataset"),
        ColumnSpec::key("Corruption"),
        ColumnSpec::key("Noise (%)"),
        ColumnSpec::key("Trusted (%)"),
    ]
}
pub fn noise_setting_cells(s: &Setting) -> Vec<Cell> {
    vec![
        Cell::text(dataset_name(&s.dataset)),
        Cell::text(corruption_name(&s.corruption)),
        Cell::text(percent(s.strength.unwrap_or(0.0))),
        Cell::text(percent(s.trusted.unwrap_or(0.0))),
    ]
}

/// The cells of `methods` in one row, from a (setting, method) → stat map.
pub fn method_cells(
    stats: &BTreeMap<Vec<String>, Stat>,
    s: &Setting,
    methods: &[impl AsRef<str>],
) -> Vec<Cell> {
    methods
        .iter()
        .map(|m| {
            stats
                .get(&cell_key(s, m.as_ref()))
                .map(|st| Cell::Stat(*st))
                .unwrap_or(Cell::Empty)
        })
        .collect()
}

/// Sorted distinct settings.
pub fn sorted_settings(mut v: Vec<Setting>) -> Vec<Setting> {
    v.sort_by(|a, b| a.cmp(b));
    v.dedup();
    v
}

/// Mean ± std over seeds of `value(run)` per (setting key ++ method), with polars.
pub fn stats_by_setting_method(
    runs: &[&RunRecord],
    setting: impl Fn(&RunRecord) -> Setting,
    method: impl Fn(&RunRecord) -> String,
    value: impl Fn(&RunRecord) -> Option<f64>,
) -> Result<BTreeMap<Vec<String>, Stat>> {
    let obs: Vec<Obs> = runs
        .iter()
        .filter_map(|r| {
            let mut k = setting(r).key();
            k.push(method(r));
            value(r).map(|v| (k, v))
        })
        .collect();
    group_stats(
        &["dataset", "corruption", "strength", "trusted", "method"],
        &obs,
    )
}

/// The lookup key of a (setting, method) cell in the map above.
pub fn cell_key(s: &Setting, method: &str) -> Vec<String> {
    let mut k = s.key();
    k.push(method.to_string());
    k
}

/// Joins numbers as a readable list: `0, 0.1, 0.2`.
pub fn list(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| num_key(*x))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails when two runs share a key (e.g. setting, method and seed): they would be counted
/// as two seeds.
pub fn ensure_unique(runs: &[&RunRecord], key: impl Fn(&RunRecord) -> Vec<String>) -> Result<()> {
    let mut seen: BTreeMap<Vec<String>, &str> = BTreeMap::new();
    for r in runs {
        if let Some(other) = seen.insert(key(r), &r.member) {
            anyhow::bail!(
                "runs {other} and {} have the same setting, method and seed ({:?})",
                r.member,
                key(r)
            );
        }
    }
    Ok(())
}
