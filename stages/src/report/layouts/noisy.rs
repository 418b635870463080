//! T4, noisy labels: learned soft labels vs the other methods, rows dataset × corruption ×
//! noise % × trusted %, test accuracy (%), mean ± std over seeds; last, the soft-label
//! runs' label-correction rate (%, metrics extra `label_correction_rate`: share of the
//! noisy training examples whose learned label's arg-max is the clean class).
//! With at least 3 seeds, each accuracy is tested against its row's best (one-sided
//! Welch's t-test over seeds, p ≥ 0.05: not significantly worse, marked †).

use anyhow::Result;

use crate::report::format::method_name;
use crate::report::layouts::{
    method_cells, noise_row, noise_setting, noise_setting_cells, noise_setting_columns,
    noisy_label_runs, sorted_settings, stats_by_setting_method, Options,
};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, ColumnSpec, Emphasis, Table};

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let (runs, methods) = noisy_label_runs(all, opts)?;
    let acc = stats_by_setting_method(
        &runs,
        noise_setting,
        |r| r.metrics.method.clone(),
        |r| Some(100.0 * r.metrics.final_test_accuracy),
    )?;
    let lcr = stats_by_setting_method(
        &runs,
        noise_setting,
        |r| r.metrics.method.clone(),
        |r| r.extra("label_correction_rate").map(|x| 100.0 * x),
    )?;
    let lcr_methods: Vec<&String> = methods
        .iter()
        .filter(|m| lcr.keys().any(|k| k.last() == Some(m)))
        .collect();
    let settings = sorted_settings(runs.iter().map(|r| noise_setting(r)).collect());
    let mut columns = noise_setting_columns();
    for m in &methods {
        columns.push(ColumnSpec::ours(
            &method_name(m),
            "Test accuracy (%)",
            Some(Better::Higher),
            2,
        ));
    }
    for m in &lcr_methods {
        columns.push(ColumnSpec::ours(
            &method_name(m),
            "Label-correction rate (%)",
            None,
            1,
        ));
    }
    let rows = settings
        .iter()
        .map(|s| {
            let mut cells = noise_setting_cells(s);
            cells.extend(method_cells(&acc, s, &methods));
            cells.extend(method_cells(&lcr, s, &lcr_methods));
            noise_row(s, cells)
        })
        .collect();
    Ok(Table {
        name: opts.name.clone(),
        title: "Noisy labels: learned labels vs the other methods".into(),
        caption: "Test accuracy (%) of the final model with corrupted training labels; higher is better. Label-correction rate: share (%) of the noisy training examples whose learned label's arg-max is the clean class. The soft-labels paper's noisy-label numbers could not be obtained: no paper column.".into(),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: true,
    })
}
