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

use crate::report::aggregate::{group_stats, num_key, Obs};
use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{cell_key, sorted_settings, Options, Setting};
use crate::report::provenance::Provenance;
use crate::report::run::Run;
use crate::report::table::{Better, Cell, ColumnSpec, Emphasis, Row, Table};

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

pub fn build(all: &[Run], opts: &Options, prov: Provenance) -> Result<Table> {
    let sk: Vec<String> = opts.strengths.iter().map(|s| num_key(*s)).collect();
    let runs: Vec<&Run> = all
        .iter()
        .filter(|r| r.metrics.noise.is_some())
        .filter(|r| sk.is_empty() || sk.contains(&num_key(r.strength().unwrap_or(-1.0))))
        .collect();
    let setting = |r: &Run| Setting {
        dataset: r.metrics.dataset.name.clone(),
        corruption: r.corruption().into(),
        strength: r.strength(),
        trusted: r.trusted_fraction(),
    };
    let estimators = estimators(&opts.methods);
    let metrics = [
        ("frobenius", "Frobenius ‖T − C‖"),
        ("mean_row_l1", "Mean row L1"),
    ];
    let mut stats = Vec::new();
    let mut present = vec![false; estimators.len()];
    for (metric, _) in metrics {
        let mut obs: Vec<Obs> = Vec::new();
        let mut seen: BTreeMap<Vec<String>, ()> = BTreeMap::new();
        for (ei, (est, method, prefix)) in estimators.iter().enumerate() {
            for r in &runs {
                if *method != "*" && r.metrics.method != *method {
                    continue;
                }
                let Some(v) = r.extra(&format!("{prefix}_{metric}_to_true_c")) else {
                    continue;
                };
                let mut k = cell_key(&setting(r), est);
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
    let estimators: Vec<_> = estimators
        .into_iter()
        .zip(&present)
        .filter(|(_, p)| **p)
        .map(|(e, _)| e)
        .collect();
    let settings = sorted_settings(
        runs.iter()
            .filter(|r| r.metrics.extra.keys().any(|k| k.ends_with("_to_true_c")))
            .map(|r| setting(r))
            .collect(),
    );
    let mut columns = vec![
        ColumnSpec::key("Dataset"),
        ColumnSpec::key("Corruption"),
        ColumnSpec::key("Noise (%)"),
        ColumnSpec::key("Trusted (%)"),
    ];
    for (metric, title) in metrics {
        for (est, _, _) in &estimators {
            columns.push(
                ColumnSpec::ours(&method_name(est), title, Some(Better::Lower), 3)
                    .compare_within(metric),
            );
        }
    }
    let rows = settings
        .iter()
        .map(|s| {
            let mut cells = vec![
                Cell::text(dataset_name(&s.dataset)),
                Cell::text(corruption_name(&s.corruption)),
                Cell::text(percent(s.strength.unwrap_or(0.0))),
                Cell::text(percent(s.trusted.unwrap_or(0.0))),
            ];
            for st in &stats {
                for (est, _, _) in &estimators {
                    cells.push(
                        st.get(&cell_key(s, est))
                            .map(|x| Cell::Stat(*x))
                            .unwrap_or(Cell::Empty),
                    );
                }
            }
            Row {
                cells,
                section: format!("{}/{}", s.dataset, s.corruption),
                summary: false,
            }
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
