//! CSV: `#` comment lines (provenance, title, caption), a header row, one line per table
//! row. A mean ± std cell becomes three columns `<header> mean`, `<header> std`,
//! `<header> n` (std empty when n < 2); an empty cell stays empty. In a table that tests
//! its entries against their row's best (T1, T4), each such column also gets
//! `<header> vs best` (`best`, `not worse` or `worse`, empty when untested) and
//! `<header> p` (the one-sided Welch's p-value against the best, empty for the best and
//! when untested). Numbers are written with full precision (the table's rounding is for
//! reading, not for further use).

use anyhow::Result;

use crate::report::table::{Cell, ColumnKind, Table, VsBest};

fn header_text(t: &Table, c: usize) -> String {
    let col = &t.columns[c];
    if col.group.is_empty() || col.kind == ColumnKind::Key {
        col.header.clone()
    } else {
        format!("{}: {}", col.group, col.header)
    }
}

/// Whether column `c` is written as mean, std, n: an `Ours` column whose data rows hold
/// only mean ± std cells or nothing (so an all-empty column keeps the same CSV schema).
fn is_stat_column(t: &Table, c: usize) -> bool {
    t.columns[c].kind == ColumnKind::Ours
        && t.rows.iter().filter(|r| !r.summary).all(|r| {
            matches!(
                r.cells.get(c),
                Some(Cell::Stat(_)) | Some(Cell::Empty) | None
            )
        })
}

pub fn render(t: &Table) -> Result<String> {
    let mut out = String::new();
    for l in t.provenance.lines() {
        out.push_str(&format!("# {l}\n"));
    }
    out.push_str(&format!("# {}\n", t.title));
    for l in t.caption.lines() {
        out.push_str(&format!("# {l}\n"));
    }
    if let Some(note) = t.significance_note() {
        out.push_str(&format!("# {note}\n"));
    }
    let vs = t.vs_best();
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let stat_cols: Vec<bool> = (0..t.columns.len()).map(|c| is_stat_column(t, c)).collect();
    let mut header = Vec::new();
    for c in 0..t.columns.len() {
        let h = header_text(t, c);
        if stat_cols[c] {
            header.extend([format!("{h} mean"), format!("{h} std"), format!("{h} n")]);
            if t.significance {
                header.extend([format!("{h} vs best"), format!("{h} p")]);
            }
        } else {
            header.push(h);
        }
    }
    w.write_record(&header)?;
    for (r, row) in t.rows.iter().enumerate() {
        let mut rec = Vec::new();
        for (c, cell) in row.cells.iter().enumerate() {
            let vals: Vec<String> = match cell {
                Cell::Empty => vec![String::new()],
                Cell::Text(s) => vec![s.clone()],
                Cell::Value(v) => vec![format!("{v}")],
                Cell::Stat(s) => vec![
                    format!("{}", s.mean),
                    s.std.map(|x| format!("{x}")).unwrap_or_default(),
                    s.n.to_string(),
                ],
            };
            if stat_cols[c] && vals.len() == 1 {
                rec.extend([vals[0].clone(), String::new(), String::new()]);
            } else {
                rec.extend(vals);
            }
            if stat_cols[c] && t.significance {
                rec.extend(match vs[r][c] {
                    None => [String::new(), String::new()],
                    Some(VsBest::Best) => ["best".into(), String::new()],
                    Some(VsBest::NotWorse { p }) => ["not worse".into(), format!("{p}")],
                    Some(VsBest::Worse { p }) => ["worse".into(), format!("{p}")],
                });
            }
        }
        w.write_record(&rec)?;
    }
    out.push_str(&String::from_utf8(
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?,
    )?);
    Ok(out)
}
