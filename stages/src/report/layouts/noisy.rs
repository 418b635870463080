//! T4, noisy labels: learned soft labels vs the other methods, rows dataset × corruption ×
//! noise % × trusted %, test accuracy (%), mean ± std over seeds; last, the soft-label
//! runs' label-correction rate (%, metrics extra `label_correction_rate`: share of the
//! noisy training examples whose learned label's arg-max is the clean class).

use anyhow::Result;

use crate::report::aggregate::num_key;
use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{
    cell_key, ensure_unique, methods_present, sorted_settings, stats_by_setting_method, Options,
    Setting,
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
    let acc = stats_by_setting_method(
        &runs,
        setting,
        |r| r.metrics.method.clone(),
        |r| Some(100.0 * r.metrics.final_test_accuracy),
    )?;
    let lcr = stats_by_setting_method(
        &runs,
        setting,
        |r| r.metrics.method.clone(),
        |r| r.extra("label_correction_rate").map(|x| 100.0 * x),
    )?;
    let lcr_methods: Vec<&String> = methods
        .iter()
        .filter(|m| lcr.keys().any(|k| k.last() == Some(m)))
        .collect();
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
            let mut cells = vec![
                Cell::text(dataset_name(&s.dataset)),
                Cell::text(corruption_name(&s.corruption)),
                Cell::text(percent(s.strength.unwrap_or(0.0))),
                Cell::text(percent(s.trusted.unwrap_or(0.0))),
            ];
            cells.extend(methods.iter().map(|m| {
                acc.get(&cell_key(s, m))
                    .map(|st| Cell::Stat(*st))
                    .unwrap_or(Cell::Empty)
            }));
            cells.extend(lcr_methods.iter().map(|m| {
                lcr.get(&cell_key(s, m))
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
    Ok(Table {
        name: opts.name.clone(),
        title: "Noisy labels: learned labels vs the other methods".into(),
        caption: "Test accuracy (%) of the final model with corrupted training labels; higher is better. Label-correction rate: share (%) of the noisy training examples whose learned label's arg-max is the clean class. The soft-labels paper's noisy-label numbers could not be obtained: no paper column.".into(),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
    })
}
