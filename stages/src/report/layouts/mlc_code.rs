//! T2, the protocol of the official MLC code (CIFAR-10, WRN-40-2 there): rows corruption ×
//! noise rate (the code runs 10–40 %), columns the methods, cells test accuracy (%) as mean
//! ± std over seeds. The official code reports the best test accuracy seen during training
//! (model selection on the test split); with `best_accuracy` the table shows the metrics
//! extra `best_test_accuracy` to match it, else the final model's accuracy.

use anyhow::Result;

use crate::report::format::method_name;
use crate::report::layouts::{
    list, method_cells, noise_row, noise_setting, noise_setting_cells, noise_setting_columns,
    noisy_label_runs, sorted_settings, stats_by_setting_method, Options,
};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, ColumnSpec, Emphasis, Table};

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let (runs, methods) = noisy_label_runs(all, opts)?;
    let acc = |r: &RunRecord| {
        if opts.best_accuracy {
            r.extra("best_test_accuracy")
        } else {
            Some(r.metrics.final_test_accuracy)
        }
    };
    let stats = stats_by_setting_method(
        &runs,
        noise_setting,
        |r| r.metrics.method.clone(),
        |r| acc(r).map(|a| 100.0 * a),
    )?;
    let settings = sorted_settings(runs.iter().map(|r| noise_setting(r)).collect());
    let mut columns = noise_setting_columns();
    for m in &methods {
        columns.push(ColumnSpec::ours(
            &method_name(m),
            "",
            Some(Better::Higher),
            2,
        ));
    }
    let rows = settings
        .iter()
        .map(|s| {
            let mut cells = noise_setting_cells(s);
            cells.extend(method_cells(&stats, s, &methods));
            noise_row(s, cells)
        })
        .collect();
    let mut strengths: Vec<f64> = settings.iter().filter_map(|s| s.strength).collect();
    strengths.sort_by(f64::total_cmp);
    strengths.dedup();
    let caption = format!(
        "Protocol of the official MLC code: test accuracy (%) of the {} at noise rates {}; higher is better. Empty: no run. The MLC paper's own numbers could not be obtained, so there is no paper column.",
        if opts.best_accuracy { "best evaluation (selected on the test split, as the official code does)" } else { "final model" },
        list(&strengths.iter().map(|s| s * 100.0).collect::<Vec<_>>()),
    );
    Ok(Table {
        name: opts.name.clone(),
        title: "Test accuracy, MLC code protocol".into(),
        caption,
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: false,
    })
}
