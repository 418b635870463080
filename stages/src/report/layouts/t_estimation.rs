//! T6, transition-matrix estimation: distance of each method's estimate to the true
//! corruption matrix C of the noise input (row = true class), Frobenius norm and mean row
//! L1, for MLC's learned T (`t_*` metrics extras), the C-hat of GLC, Forward and the
//! confusion-matrix method (`c_hat_*`), and the identity ("no correction",
//! `identity_*`, the same for every method of a noise draw: one value per setting and
//! seed is kept). A method named in `methods` that is none of these (a `command` stage's)
//! is an estimator too, through its runs' `c_hat_*` extras. Mean ± std over seeds; lower
//! is better.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::report::aggregate::{group_stats, num_key, Obs, Stat};
use crate::report::format::method_name;
use crate::report::layouts::{
    cell_key, method_cells, noise_row, noise_setting, noise_setting_cells, noise_setting_columns,
    sorted_settings, Options,
};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, ColumnSpec, Emphasis, Table};

/// (estimator shown, method whose runs carry it, extras prefix).
pub const ESTIMATORS: [(&str, &str, &str); 5] = [
    ("mlc", "mlc", "t"),
    ("glc", "glc", "c_hat"),
    ("forward", "forward", "c_hat"),
    ("confusion", "confusion", "c_hat"),
    ("identity", "*", "identity"),
];

/// The estimators of [`ESTIMATORS`] that `methods` lists (all when it is empty), then any
/// other method it lists (a `command` stage's), read from its `c_hat_*` extras.
fn estimators(methods: &[String]) -> Vec<(&str, &str, &str)> {
    let mut out: Vec<(&str, &str, &str)> = ESTIMATORS
        .iter()
        .copied()
        .filter(|(e, _, _)| methods.is_empty() || methods.iter().any(|m| m == e))
        .collect();
    for m in methods {
        if !ESTIMATORS.iter().any(|(e, _, _)| e == m) {
            out.push((m.as_str(), m.as_str(), "c_hat"));
        }
    }
    out
}

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let sk: Vec<String> = opts.strengths.iter().map(|s| num_key(*s)).collect();
    let runs: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.metrics.noise.is_some())
        .filter(|r| sk.is_empty() || sk.contains(&num_key(r.strength().unwrap_or(-1.0))))
        .collect();
    let estimators = estimators(&opts.methods);
    let metrics = [
        ("frobenius", "Frobenius ‖T − C‖"),
        ("mean_row_l1", "Mean row L1"),
    ];
    let (stats, present) = estimator_stats(&runs, &estimators, &metrics)?;
    let estimators: Vec<_> = estimators
        .into_iter()
        .zip(&present)
        .filter(|(_, p)| **p)
        .map(|(e, _)| e)
        .collect();
    let settings = sorted_settings(
        runs.iter()
            .filter(|r| r.metrics.extra.keys().any(|k| k.ends_with("_to_true_c")))
            .map(|r| noise_setting(r))
            .collect(),
    );
    let mut columns = noise_setting_columns();
    for (metric, title) in metrics {
        for (est, _, _) in &estimators {
            columns.push(
                ColumnSpec::ours(&method_name(est), title, Some(Better::Lower), 3)
                    .compare_within(metric),
            );
        }
    }
    let names: Vec<&str> = estimators.iter().map(|(est, _, _)| *est).collect();
    let rows = settings
        .iter()
        .map(|s| {
            let mut cells = noise_setting_cells(s);
            for st in &stats {
                cells.extend(method_cells(st, s, &names));
            }
            noise_row(s, cells)
        })
        .collect();
    Ok(Table {
        name: opts.name.clone(),
        title: "Estimation error of the transition matrix".into(),
        caption: "Distance between each method's estimate of the corruption matrix and the true C used to corrupt the labels (rows = true class): Frobenius norm and mean over rows of the L1 distance; lower is better. MLC: learned T at the end of training; GLC, Forward, Confusion: C-hat estimated before training; Identity: no correction. No paper reports these numbers.".into(),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: false,
    })
}

/// Per metric: mean ± std over seeds of each estimator's distance to the true C, per
/// (setting, estimator); and whether each estimator has any value. The identity (method
/// `*`) is read from every run, once per (setting, seed); another estimator's runs must be
/// unique per (setting, seed).
#[allow(clippy::type_complexity)]
fn estimator_stats(
    runs: &[&RunRecord],
    estimators: &[(&str, &str, &str)],
    metrics: &[(&str, &str)],
) -> Result<(Vec<BTreeMap<Vec<String>, Stat>>, Vec<bool>)> {
    let mut stats = Vec::new();
    let mut present = vec![false; estimators.len()];
    for (metric, _) in metrics {
        let mut obs: Vec<Obs> = Vec::new();
        let mut seen: BTreeMap<Vec<String>, ()> = BTreeMap::new();
        for (ei, (est, method, prefix)) in estimators.iter().enumerate() {
            for r in runs {
                if *method != "*" && r.metrics.method != *method {
                    continue;
                }
                let Some(v) = r.extra(&format!("{prefix}_{metric}_to_true_c")) else {
                    continue;
                };
                let mut k = cell_key(&noise_setting(r), est);
                // One value per (setting, estimator, seed) for the identity; others must be unique.
                let mut dedupe = k.clone();
                dedupe.push(r.metrics.seed.to_string());
                if seen.insert(dedupe, ()).is_some() {
                    if *method == "*" {
                        continue;
                    }
                    anyhow::bail!(
                        "two {method} runs share setting and seed {} ({})",
                        r.metrics.seed,
                        r.member
                    );
                }
                present[ei] = true;
                k.truncate(5);
                obs.push((k, v));
            }
        }
        stats.push(group_stats(
            &["dataset", "corruption", "strength", "trusted", "estimator"],
            &obs,
        )?);
    }
    Ok((stats, present))
}
