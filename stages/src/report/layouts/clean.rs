//! T3, clean data: one-hot labels (`ce`) vs label smoothing vs learned soft labels, per
//! dataset and architecture; test accuracy (%), mean ± std over seeds, then the gain of
//! learned labels over one-hot (difference of the means, points) beside the only gain the
//! soft-labels paper gives that can be quoted (+2.1, ResNet18 on CIFAR-100).

use anyhow::Result;

use crate::report::format::{dataset_name, method_name};
use crate::report::layouts::{
    cell_key, ensure_unique, method_cells, methods_or_default, Options, Setting,
};
use crate::report::paper::soft_labels_gain;
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, Cell, ColumnSpec, Emphasis, Row, Table};

pub const DEFAULT_METHODS: [&str; 3] = ["ce", "label_smoothing", "soft_labels"];

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let methods = methods_or_default(opts, &DEFAULT_METHODS);
    let runs: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.metrics.noise.is_none() && methods.contains(&r.metrics.method))
        .collect();
    // The "corruption" slot of the setting key carries the model here.
    let setting = |r: &RunRecord| Setting {
        dataset: r.metrics.dataset.name.clone(),
        corruption: r.metrics.model.clone(),
        strength: None,
        trusted: None,
    };
    ensure_unique(&runs, |r| {
        let mut k = setting(r).key();
        k.extend([r.metrics.method.clone(), r.metrics.seed.to_string()]);
        k
    })?;
    let stats = crate::report::layouts::stats_by_setting_method(
        &runs,
        setting,
        |r| r.metrics.method.clone(),
        |r| Some(100.0 * r.metrics.final_test_accuracy),
    )?;
    let mut settings: Vec<Setting> = runs.iter().map(|r| setting(r)).collect();
    settings.sort_by(|a, b| (&a.dataset, &a.corruption).cmp(&(&b.dataset, &b.corruption)));
    settings.dedup();
    let mut columns = vec![ColumnSpec::key("Dataset"), ColumnSpec::key("Model")];
    for m in &methods {
        let header = if m == "ce" {
            "One-hot labels".to_string()
        } else {
            method_name(m)
        };
        columns.push(ColumnSpec::ours(
            &header,
            "Test accuracy (%)",
            Some(Better::Higher),
            2,
        ));
    }
    let gain = methods.iter().any(|m| m == "ce") && methods.iter().any(|m| m == "soft_labels");
    if gain {
        columns.push(ColumnSpec::ours(
            "ours",
            "Soft labels − one-hot (points)",
            None,
            2,
        ));
        columns.push(ColumnSpec::paper(
            "paper",
            "Soft labels − one-hot (points)",
            1,
        ));
    }
    let rows = settings
        .iter()
        .map(|s| {
            let mut cells = vec![
                Cell::text(dataset_name(&s.dataset)),
                Cell::text(s.corruption.clone()),
            ];
            cells.extend(method_cells(&stats, s, &methods));
            if gain {
                let d = match (
                    stats.get(&cell_key(s, "soft_labels")),
                    stats.get(&cell_key(s, "ce")),
                ) {
                    (Some(a), Some(b)) => Cell::Value(a.mean - b.mean),
                    _ => Cell::Empty,
                };
                cells.push(d);
                cells.push(
                    soft_labels_gain(&s.dataset, &s.corruption)
                        .map(Cell::Value)
                        .unwrap_or(Cell::Empty),
                );
            }
            Row::data(cells, s.dataset.clone())
        })
        .collect();
    Ok(Table {
        name: opts.name.clone(),
        title: "Clean data: one-hot vs label smoothing vs learned labels".into(),
        caption: "Test accuracy (%) on clean training labels; higher is better. The gain column is the difference of the means. Paper: the soft-labels paper (Vyas et al., 2020) reports +2.1% for ResNet18 on CIFAR-100; it is the only number of that paper quoted, other cells stay empty.".into(),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: false,
    })
}
