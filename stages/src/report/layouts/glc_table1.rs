//! T1, GLC Table 1's layout: rows dataset × corruption × trusted %, a mean row per dataset;
//! columns trusted-only, no correction (CE), Forward, Forward gold, confusion matrix, GLC,
//! MLC, soft labels, each of GLC's methods with GLC's published number beside ours.
//!
//! A cell is GLC's summary: the test error (%) averaged over the corruption strengths (over
//! 0, 0.1, ..., 1.0 this is GLC's "area under the error curve"), computed per seed, then
//! mean ± std over seeds. A seed counts only if it has a run at every strength used (else
//! the cell may stay empty); `trusted_only` never sees corrupted labels, so its runs are
//! averaged over whichever strengths they have. The mean row is the mean of the dataset's
//! row means, given only when every row has a value.
//!
//! With at least 3 seeds, each entry is tested against its row's best (one-sided Welch's
//! t-test over the per-seed values, p ≥ 0.05: not significantly worse, marked †); the mean
//! rows are not tested.
//!
//! Rows of a dataset's own noise (`real`, Clothing1M) have no strengths to average: their
//! cells are the test error itself (mean ± std over seeds); they take no part in the
//! strength set of the other rows.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::report::aggregate::{group_stats, num_key, Obs, Stat};
use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{
    ensure_unique, list, methods_or_default, setting_across_strengths, sorted_settings, Options,
    Setting,
};
use crate::report::paper::{
    glc_table1, glc_table1_mean, GLC_METHODS, GLC_TABLE1, GLC_TABLE1_SOURCE,
};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, Cell, ColumnSpec, Emphasis, Row, Table};

pub const DEFAULT_METHODS: [&str; 8] = [
    "trusted_only",
    "ce",
    "forward",
    "forward_gold",
    "confusion",
    "glc",
    "mlc",
    "soft_labels",
];

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let methods = methods_or_default(opts, &DEFAULT_METHODS);
    let (runs, strengths) = select_runs(all, &methods, opts)?;
    let cells = area_cells(&runs, strengths.len())?;
    let settings = sorted_settings(runs.iter().map(|r| setting_across_strengths(r)).collect());
    let mut columns = vec![
        ColumnSpec::key("Dataset"),
        ColumnSpec::key("Corruption"),
        ColumnSpec::key("Trusted (%)"),
    ];
    for m in &methods {
        columns.push(ColumnSpec::ours(
            "ours",
            &method_name(m),
            Some(Better::Lower),
            1,
        ));
        if has_paper(m) {
            columns.push(ColumnSpec::paper("paper", &method_name(m), 1));
        }
    }
    let mut rows = Vec::new();
    let mut datasets: Vec<String> = settings.iter().map(|s| s.dataset.clone()).collect();
    datasets.dedup();
    for d in &datasets {
        let ds: Vec<&Setting> = settings.iter().filter(|s| &s.dataset == d).collect();
        rows.extend(dataset_rows(d, &ds, &methods, &cells));
    }
    let any_real = runs.iter().any(|r| is_real(r));
    Ok(Table {
        name: opts.name.clone(),
        title: "Area under the error curve, GLC Table 1 layout".into(),
        caption: caption(&strengths, any_real),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: true,
    })
}

fn is_real(r: &RunRecord) -> bool {
    r.corruption() == "real"
}

fn has_paper(m: &str) -> bool {
    GLC_METHODS.iter().any(|(k, _)| *k == m)
}

/// The runs of `methods` on corrupted labels at the strengths used (`opts.strengths`, or
/// every strength present), and those strengths in increasing order.
fn select_runs<'a>(
    all: &'a [RunRecord],
    methods: &[String],
    opts: &Options,
) -> Result<(Vec<&'a RunRecord>, Vec<f64>)> {
    let runs: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.metrics.noise.is_some() && methods.contains(&r.metrics.method))
        .collect();
    let mut strengths: Vec<f64> = if opts.strengths.is_empty() {
        runs.iter()
            .filter(|r| !is_real(r))
            .filter_map(|r| r.strength())
            .collect()
    } else {
        opts.strengths.clone()
    };
    strengths.sort_by(f64::total_cmp);
    strengths.dedup_by(|a, b| num_key(*a) == num_key(*b));
    let strength_keys: Vec<String> = strengths.iter().map(|s| num_key(*s)).collect();
    let runs: Vec<&RunRecord> = runs
        .into_iter()
        .filter(|r| is_real(r) || strength_keys.contains(&num_key(r.strength().unwrap_or(-1.0))))
        .collect();
    ensure_unique(&runs, |r| {
        vec![
            r.metrics.dataset.name.clone(),
            r.corruption().into(),
            num_key(r.trusted_fraction().unwrap_or(0.0)),
            num_key(r.strength().unwrap_or(0.0)),
            r.metrics.method.clone(),
            r.metrics.seed.to_string(),
        ]
    })?;
    Ok((runs, strengths))
}

/// Per (dataset, corruption, trusted, method): mean ± std over seeds of each seed's mean
/// error over the strengths, counting a seed only when it covers all `n_strengths` (real
/// noise and `trusted_only` excepted).
fn area_cells(runs: &[&RunRecord], n_strengths: usize) -> Result<BTreeMap<Vec<String>, Stat>> {
    let row_key = |r: &RunRecord| {
        vec![
            r.metrics.dataset.name.clone(),
            r.corruption().to_string(),
            num_key(r.trusted_fraction().unwrap_or(0.0)),
            r.metrics.method.clone(),
            r.metrics.seed.to_string(),
        ]
    };
    let obs: Vec<Obs> = runs
        .iter()
        .map(|r| (row_key(r), 100.0 * r.metrics.final_test_error))
        .collect();
    let per_seed = group_stats(
        &["dataset", "corruption", "trusted", "method", "seed"],
        &obs,
    )?;
    let auc_obs: Vec<Obs> = per_seed
        .iter()
        .filter(|(k, s)| k[1] == "real" || k[3] == "trusted_only" || s.n == n_strengths)
        .map(|(k, s)| (k[..4].to_vec(), s.mean))
        .collect();
    group_stats(&["dataset", "corruption", "trusted", "method"], &auc_obs)
}

/// Dataset `d`'s rows (settings `ds`), then its mean row.
fn dataset_rows(
    d: &str,
    ds: &[&Setting],
    methods: &[String],
    cells: &BTreeMap<Vec<String>, Stat>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut means: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for s in ds {
        let tr = s.trusted.unwrap_or(0.0);
        let mut cells_row = vec![
            Cell::text(dataset_name(d)),
            Cell::text(corruption_name(&s.corruption)),
            Cell::text(percent(tr)),
        ];
        for (mi, m) in methods.iter().enumerate() {
            let key = vec![d.to_string(), s.corruption.clone(), num_key(tr), m.clone()];
            match cells.get(&key) {
                Some(st) => {
                    means[mi].push(st.mean);
                    cells_row.push(Cell::Stat(*st));
                }
                None => cells_row.push(Cell::Empty),
            }
            if has_paper(m) {
                cells_row.push(
                    glc_table1(d, &s.corruption, tr, m)
                        .map(Cell::Value)
                        .unwrap_or(Cell::Empty),
                );
            }
        }
        rows.push(Row::data(cells_row, d.to_string()));
    }
    // Paper mean row only when our rows are exactly the paper's rows for this dataset.
    let paper_rows: Vec<(String, String)> = GLC_TABLE1
        .iter()
        .filter(|r| r.dataset == d)
        .map(|r| (r.corruption.to_string(), num_key(r.trusted_fraction)))
        .collect();
    let our_rows: Vec<(String, String)> = ds
        .iter()
        .map(|s| (s.corruption.clone(), num_key(s.trusted.unwrap_or(0.0))))
        .collect();
    let same_rows = !paper_rows.is_empty()
        && paper_rows.len() == our_rows.len()
        && paper_rows.iter().all(|p| our_rows.contains(p));
    let mut mean_row = vec![Cell::text(dataset_name(d)), Cell::text("Mean"), Cell::Empty];
    for (mi, m) in methods.iter().enumerate() {
        mean_row.push(if means[mi].len() == ds.len() && !ds.is_empty() {
            Cell::Value(means[mi].iter().sum::<f64>() / ds.len() as f64)
        } else {
            Cell::Empty
        });
        if has_paper(m) {
            mean_row.push(if same_rows {
                glc_table1_mean(d, m)
                    .map(Cell::Value)
                    .unwrap_or(Cell::Empty)
            } else {
                Cell::Empty
            });
        }
    }
    rows.push(Row {
        cells: mean_row,
        section: d.to_string(),
        summary: true,
    });
    rows
}

/// The caption: what a cell is over `strengths`, real-noise rows if any, paper sources.
fn caption(strengths: &[f64], any_real: bool) -> String {
    let strength_keys: Vec<String> = strengths.iter().map(|s| num_key(*s)).collect();
    let glc11 = strength_keys
        == (0..=10)
            .map(|i| num_key(i as f64 / 10.0))
            .collect::<Vec<_>>();
    let mut caption = String::new();
    if !strengths.is_empty() {
        caption.push_str(&format!(
            "Test error (%) averaged over the corruption strengths {}{}, per seed, then mean ± std over seeds; lower is better. ",
            list(&strengths),
            if glc11 { " (the 11 points of GLC, so this is GLC's area under the error curve)" } else { " (not GLC's 11 points 0, 0.1, ..., 1: compare with the paper columns with care)" },
        ));
        caption.push_str("A cell is empty when no seed has a run at every one of these strengths (Trusted only never sees corrupted labels and is averaged over the strengths it was run at). ");
    }
    if any_real {
        caption.push_str("Rows with real noise (the dataset's own labels, trusted = its verified examples) have no strengths: their cells are the test error (%), mean ± std over seeds; lower is better. ");
    }
    caption.push_str("The mean row averages a dataset's rows. ");
    caption.push_str(&format!(
        "Paper columns quote {GLC_TABLE1_SOURCE} (one run per setting); GLC's MNIST rows are printed as 5/10/25% trusted, but the authors' MNIST script uses 0.1/1/5%, which is how they are matched here. GLC Table 1 has no MLC or soft-label column, so those have no paper number. Datasets GLC did not use have no paper numbers."
    ));
    caption
}
