//! T2, the protocol of the official MLC code (CIFAR-10, WRN-40-2 there): rows corruption ×
//! noise rate (the code runs 10–40 %), columns the methods, cells test accuracy (%) as mean
//! ± std over seeds. The official code reports the best test accuracy seen during training
//! (model selection on the test split); with `best_accuracy` the table shows the metrics
//! extra `best_test_accuracy` to match it, else the final model's accuracy.

use anyhow::Result;

use crate::report::aggregate::num_key;
use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{
    cell_key, ensure_unique, list, methods_present, sorted_settings, stats_by_setting_method,
    Options, Setting,
};
use crate::report::provenance::Provenance;
use crate::report::run::Run;
use crate::report::table::{Better, Cell, ColumnSpec, Emphasis, Row, Table};

pub fn build(all: &[Run], opts: &Options, prov: Provenance) -> Result<Table> {
    let sk: Vec<String> = opts.strengths.iter().map(|s| num_key(*s)).collect();
    let runs: Vec<&Run> = all
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
    let setting = |r: &Run| Setting {
        dataset: r.metrics.dataset.name.clone(),
        corruption: r.corruption().into(),
        strength: r.strength(),
        trusted: r.trusted_fraction(),
    };
    ensure_unique(&runs, |r| {
        let mut k = setting(r).key();
        k.extend([r.metrics.method.clone(), r.metrics.seed.to_string()]);
        k
    })?;
    let acc = |r: &Run| {
        if opts.best_accuracy {
            r.extra("best_test_accuracy")
        } else {
            Some(r.metrics.final_test_accuracy)
        }
    };
    let stats = stats_by_setting_method(
        &runs,
        setting,
        |r| r.metrics.method.clone(),
        |r| acc(r).map(|a| 100.0 * a),
    )?;
    let settings = sorted_settings(runs.iter().map(|r| setting(r)).collect());
    let mut columns = vec![
        ColumnSpec::key("Dataset"),
        ColumnSpec::key("Corruption"),
        ColumnSpec::key("Noise (%)"),
        ColumnSpec::key("Trusted (%)"),
    ];
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
            let mut cells = vec![
                Cell::text(dataset_name(&s.dataset)),
                Cell::text(corruption_name(&s.corruption)),
                Cell::text(percent(s.strength.unwrap_or(0.0))),
                Cell::text(percent(s.trusted.unwrap_or(0.0))),
            ];
            cells.extend(methods.iter().map(|m| {
                stats
                    .get(&cell_key(s, m))
                    .map(|st| Cell::Stat(*st))
                    .unwrap_or(Cell::Empty)
            }));
            Row {
                cells,
                section: format!("{}/{}", s.dataset, s.corruption),
                summary: false,
            }
        })
        .collect();
    let mut strengths: Vec<f64> = settings.iter().filter_map(|s| s.strength).collect();
    strengths.sort_by(f64::total_cmp);
    strengths.dedup();
    let caption = format!(
        "Protocol of the official MLC code: test accuracy (%) of the {} at noise rates {}; higher is better. Empty: no run. The MLC paper's own numbers could not be obtained, so there is no paper column.",
        if opts.best_accuracy { "best epoch (selected on the test split, as the official code does)" } else { "final model" },
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
    })
}
