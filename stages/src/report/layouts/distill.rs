//! T5, distillation: the accuracy (%) of students trained on a teacher's labels, per
//! teacher label type (one-hot, label smoothing, learned labels, ...), beside the
//! teacher's own accuracy. Students are the runs with `method = "distill"`; the teacher's
//! method comes from `teacher.json` (or the `teacher` coordinate), its accuracy from the
//! metrics extra `teacher_test_accuracy`. Rows: dataset × student model × noise setting.

use anyhow::{Context, Result};

use crate::report::format::{corruption_name, dataset_name, method_name, percent};
use crate::report::layouts::{
    ensure_unique, methods_present, sorted_settings, stats_by_setting_method, Options, Setting,
};
use crate::report::provenance::Provenance;
use crate::report::run::RunRecord;
use crate::report::table::{Better, Cell, ColumnSpec, Emphasis, Row, Table};

pub fn build(all: &[RunRecord], opts: &Options, prov: Provenance) -> Result<Table> {
    let runs: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.metrics.method == "distill")
        .collect();
    let mut teacher_of = std::collections::BTreeMap::new();
    for r in &runs {
        let t = r.teacher.as_ref().with_context(|| {
            format!(
                "distill run {} has neither teacher.json nor a `teacher` coordinate",
                r.member
            )
        })?;
        teacher_of.insert(r.member.clone(), t.method.clone());
    }
    let teacher = |r: &RunRecord| teacher_of[&r.member].clone();
    let runs: Vec<&RunRecord> = runs
        .into_iter()
        .filter(|r| opts.methods.is_empty() || opts.methods.contains(&teacher(r)))
        .collect();
    // Setting: dataset, "model|corruption", strength, trusted.
    let setting = |r: &RunRecord| Setting {
        dataset: r.metrics.dataset.name.clone(),
        corruption: format!("{}|{}", r.metrics.model, r.corruption()),
        strength: r.strength(),
        trusted: r.trusted_fraction(),
    };
    ensure_unique(&runs, |r| {
        let mut k = setting(r).key();
        k.extend([teacher(r), r.metrics.seed.to_string()]);
        k
    })?;
    let teachers: Vec<String> = if opts.methods.is_empty() {
        let mut fake: Vec<RunRecord> = Vec::new();
        for r in &runs {
            let mut c = (*r).clone();
            c.metrics.method = teacher(r);
            fake.push(c);
        }
        methods_present(fake.iter())
    } else {
        opts.methods.clone()
    };
    let student = stats_by_setting_method(&runs, setting, teacher, |r| {
        Some(100.0 * r.metrics.final_test_accuracy)
    })?;
    let teacher_acc = stats_by_setting_method(&runs, setting, teacher, |r| {
        r.extra("teacher_test_accuracy").map(|a| 100.0 * a)
    })?;
    let settings = sorted_settings(runs.iter().map(|r| setting(r)).collect());
    let mut columns = vec![
        ColumnSpec::key("Dataset"),
        ColumnSpec::key("Student"),
        ColumnSpec::key("Corruption"),
        ColumnSpec::key("Noise (%)"),
    ];
    for t in &teachers {
        let name = if t == "ce" {
            "One-hot labels".to_string()
        } else {
            method_name(t)
        };
        columns.push(
            ColumnSpec::ours("student", &name, Some(Better::Higher), 2).compare_within("student"),
        );
        columns.push(ColumnSpec::ours("teacher", &name, None, 2));
    }
    let rows = settings
        .iter()
        .map(|s| {
            let (model, corruption) = s.corruption.split_once('|').unwrap_or((&s.corruption, ""));
            let mut cells = vec![
                Cell::text(dataset_name(&s.dataset)),
                Cell::text(model),
                Cell::text(corruption_name(corruption)),
                s.strength
                    .map(|x| Cell::text(percent(x)))
                    .unwrap_or(Cell::Empty),
            ];
            for t in &teachers {
                let k = crate::report::layouts::cell_key(s, t);
                cells.push(
                    student
                        .get(&k)
                        .map(|st| Cell::Stat(*st))
                        .unwrap_or(Cell::Empty),
                );
                cells.push(
                    teacher_acc
                        .get(&k)
                        .map(|st| Cell::Stat(*st))
                        .unwrap_or(Cell::Empty),
                );
            }
            Row::data(cells, s.dataset.clone())
        })
        .collect();
    Ok(Table {
        name: opts.name.clone(),
        title: "Distillation: student accuracy per teacher's labels".into(),
        caption: "Test accuracy (%) of the student trained on each teacher's outputs (column groups: the labels the teacher was trained with), and of the teacher itself; higher is better, the best student per row in bold. The soft-labels paper's distillation numbers could not be obtained: no paper column.".into(),
        columns,
        rows,
        emphasis: Emphasis::PerRow,
        provenance: prov,
        significance: false,
    })
}
