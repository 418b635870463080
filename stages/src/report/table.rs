//! `Table`: a table as the writers see it: key columns (row labels), value columns (ours
//! or quoted from a paper) grouped under optional super-headers, rows in sections, the
//! rule that picks the best entry (set in bold), and, for tables that ask for it, which
//! entries are not significantly worse than their row's best ([`Table::vs_best`]).

use crate::report::aggregate::Stat;
use crate::report::provenance::Provenance;
use crate::report::significance::{welch_greater, ALPHA, MIN_SEEDS};

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Row labels (text).
    Key,
    /// Our numbers (from metrics files).
    Ours,
    /// Numbers quoted from a paper (see `report::paper`).
    Paper,
}

/// Which entry is best.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// Where the best entry is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emphasis {
    /// Within each row, among the `Ours` columns sharing a `compare` group.
    PerRow,
    /// Within each `Ours` column that has a `compare` group, among the rows of one section.
    PerColumn,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSpec {
    pub header: String,
    /// Super-header spanning consecutive columns with the same value (e.g. a method name
    /// over "ours" and "paper"); empty for none.
    pub group: String,
    pub kind: ColumnKind,
    /// Columns compared for the best entry (None: never bold), with the comparison group.
    pub compare: Option<(Better, String)>,
    /// Decimals shown.
    pub decimals: usize,
}

impl ColumnSpec {
    pub fn key(header: &str) -> ColumnSpec {
        ColumnSpec {
            header: header.into(),
            group: String::new(),
            kind: ColumnKind::Key,
            compare: None,
            decimals: 0,
        }
    }
    pub fn ours(header: &str, group: &str, better: Option<Better>, decimals: usize) -> ColumnSpec {
        ColumnSpec {
            header: header.into(),
            group: group.into(),
            kind: ColumnKind::Ours,
            compare: better.map(|b| (b, String::new())),
            decimals,
        }
    }
    pub fn paper(header: &str, group: &str, decimals: usize) -> ColumnSpec {
        ColumnSpec {
            header: header.into(),
            group: group.into(),
            kind: ColumnKind::Paper,
            compare: None,
            decimals,
        }
    }
    /// Sets the comparison group (columns compared with each other for the best entry).
    pub fn compare_within(mut self, group: &str) -> ColumnSpec {
        if let Some((_, g)) = &mut self.compare {
            *g = group.into();
        }
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// Mean ± std over seeds, with n.
    Stat(Stat),
    /// A single number (a quoted paper value, a mean over rows, a rate).
    Value(f64),
}

impl Cell {
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Stat(s) => Some(s.mean),
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub cells: Vec<Cell>,
    /// Rows of one section (e.g. one dataset) are compared with each other under
    /// [`Emphasis::PerColumn`]; a rule is drawn between sections.
    pub section: String,
    /// A summary row (e.g. the mean row of a dataset), set apart by a rule.
    pub summary: bool,
}

impl Row {
    /// A row of data (not a summary) in `section`.
    pub fn data(cells: Vec<Cell>, section: String) -> Row {
        Row {
            cells,
            section,
            summary: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File stem (`tables/<name>.csv` ...).
    pub name: String,
    pub title: String,
    pub caption: String,
    pub columns: Vec<ColumnSpec>,
    pub rows: Vec<Row>,
    pub emphasis: Emphasis,
    pub provenance: Provenance,
    /// Test each mean ± std entry against its row's best ([`Table::vs_best`]; only with
    /// [`Emphasis::PerRow`]): the writers mark the entries not significantly worse.
    pub significance: bool,
}

/// How a tested entry compares with its row's best (see [`Table::vs_best`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VsBest {
    /// The best entry itself (bold).
    Best,
    /// Not significantly worse than the best: one-sided Welch's p ≥ [`ALPHA`].
    NotWorse { p: f64 },
    /// Significantly worse: p < [`ALPHA`].
    Worse { p: f64 },
}

/// The mark the writers put after an entry that is not significantly worse than its row's
/// best.
pub const NOT_WORSE_MARK: &str = "†";

impl Table {
    /// The comparison groups of the `Ours` columns (`compare`), each once, in column order,
    /// with the direction that is better in it.
    fn compare_groups(&self) -> Vec<(Better, &str)> {
        let mut groups: Vec<(Better, &str)> = Vec::new();
        for col in &self.columns {
            if let (ColumnKind::Ours, Some((b, g))) = (col.kind, &col.compare) {
                if !groups.iter().any(|(_, gg)| *gg == g.as_str()) {
                    groups.push((*b, g.as_str()));
                }
            }
        }
        groups
    }

    /// The `Ours` columns of comparison group `g`, in column order.
    fn group_columns<'a>(&'a self, g: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.columns
            .iter()
            .enumerate()
            .filter(move |(_, col)| {
                col.kind == ColumnKind::Ours && col.compare.as_ref().is_some_and(|(_, cg)| cg == g)
            })
            .map(|(c, _)| c)
    }

    /// `(r, c, v)` with the number of cell (r, c) as shown (rounded to the column's
    /// decimals), if the cell holds a number.
    fn shown_at(&self, r: usize, c: usize) -> Option<(usize, usize, f64)> {
        self.rows[r]
            .cells
            .get(c)
            .and_then(|cell| cell.number())
            .map(|v| (r, c, shown(v, self.columns[c].decimals)))
    }

    /// `best[r][c]`: whether cell (r, c) is a best entry (ties all count).
    pub fn best(&self) -> Vec<Vec<bool>> {
        let mut best: Vec<Vec<bool>> = self
            .rows
            .iter()
            .map(|r| vec![false; r.cells.len()])
            .collect();
        // Marks the best of `vals` (two or more values compete; one alone is not bold).
        let pick = |vals: &[(usize, usize, f64)], better: Better, best: &mut Vec<Vec<bool>>| {
            if vals.len() < 2 {
                return;
            }
            let target = match better {
                Better::Lower => vals.iter().map(|v| v.2).fold(f64::INFINITY, f64::min),
                Better::Higher => vals.iter().map(|v| v.2).fold(f64::NEG_INFINITY, f64::max),
            };
            // Values are compared as shown (rounded to the column's decimals): ties all bold.
            for &(r, c, v) in vals {
                if v == target {
                    best[r][c] = true;
                }
            }
        };
        match self.emphasis {
            Emphasis::PerRow => {
                let groups = self.compare_groups();
                for r in 0..self.rows.len() {
                    for (better, g) in &groups {
                        let vals: Vec<(usize, usize, f64)> = self
                            .group_columns(g)
                            .filter_map(|c| self.shown_at(r, c))
                            .collect();
                        pick(&vals, *better, &mut best);
                    }
                }
            }
            Emphasis::PerColumn => {
                for (c, col) in self.columns.iter().enumerate() {
                    let Some((better, _)) = col.compare else {
                        continue;
                    };
                    if col.kind != ColumnKind::Ours {
                        continue;
                    }
                    let mut sections: Vec<&str> = Vec::new();
                    for row in &self.rows {
                        if !sections.contains(&row.section.as_str()) {
                            sections.push(&row.section);
                        }
                    }
                    for s in sections {
                        let vals: Vec<(usize, usize, f64)> = self
                            .rows
                            .iter()
                            .enumerate()
                            .filter(|(_, row)| row.section == s && !row.summary)
                            .filter_map(|(r, _)| self.shown_at(r, c))
                            .collect();
                        pick(&vals, better, &mut best);
                    }
                }
            }
        }
        best
    }

    /// `vs[r][c]`, for a table with `significance` set: each mean ± std entry of a compared
    /// `Ours` column tested against the best entry of its row and comparison group (the
    /// bold one; among tied bold entries, the one with the best unrounded mean) by the
    /// one-sided Welch's t-test of "this entry is worse" over seeds
    /// ([`welch_greater`]). None where nothing is tested: tables without `significance`,
    /// entries with fewer than [`MIN_SEEDS`] seeds, rows whose best has fewer, entries that
    /// are not mean ± std.
    pub fn vs_best(&self) -> Vec<Vec<Option<VsBest>>> {
        let mut out: Vec<Vec<Option<VsBest>>> = self
            .rows
            .iter()
            .map(|r| vec![None; r.cells.len()])
            .collect();
        if !self.significance || self.emphasis != Emphasis::PerRow {
            return out;
        }
        let best = self.best();
        let groups = self.compare_groups();
        for (r, row) in self.rows.iter().enumerate() {
            for (better, g) in &groups {
                let stats: Vec<(usize, Stat)> = self
                    .group_columns(g)
                    .filter_map(|c| match row.cells.get(c) {
                        Some(Cell::Stat(s)) => Some((c, *s)),
                        _ => None,
                    })
                    .collect();
                // Oriented so that larger is worse.
                let worse_value = |s: &Stat| match better {
                    Better::Lower => s.mean,
                    Better::Higher => -s.mean,
                };
                let Some(&(best_c, best_s)) = stats
                    .iter()
                    .filter(|(c, _)| best[r][*c])
                    .min_by(|a, b| worse_value(&a.1).total_cmp(&worse_value(&b.1)))
                else {
                    continue;
                };
                if best_s.n < MIN_SEEDS {
                    continue;
                }
                let oriented = |s: &Stat| Stat {
                    mean: worse_value(s),
                    ..*s
                };
                for (c, s) in &stats {
                    out[r][*c] = if best[r][*c] || *c == best_c {
                        Some(VsBest::Best)
                    } else {
                        welch_greater(&oriented(s), &oriented(&best_s)).map(|p| {
                            if p >= ALPHA {
                                VsBest::NotWorse { p }
                            } else {
                                VsBest::Worse { p }
                            }
                        })
                    };
                }
            }
        }
        out
    }

    /// The sentence the writers add to the caption of a table with `significance` set:
    /// what the mark means, or why no entry carries one.
    pub fn significance_note(&self) -> Option<String> {
        if !self.significance {
            return None;
        }
        let vs = self.vs_best();
        let tested = vs.iter().flatten().any(|v| v.is_some());
        let max_n = self.stat_seed_counts().max().unwrap_or(0);
        Some(if tested {
            format!(
                "{NOT_WORSE_MARK} marks an entry not significantly worse than the best of its row: one-sided Welch's t-test over seeds of whether the entry is worse than the best, p ≥ {ALPHA}; only entries with at least {MIN_SEEDS} seeds are tested."
            )
        } else {
            format!(
                "No entry is marked as significantly worse than its row's best or not: that takes Welch's t-test over at least {MIN_SEEDS} seeds per entry, and these entries have {max_n}, so differences between them may be seed noise."
            )
        })
    }

    /// Every number in the table (for checks that all are finite).
    pub fn numbers(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for row in &self.rows {
            for cell in &row.cells {
                match cell {
                    Cell::Stat(s) => {
                        out.push(s.mean);
                        out.extend(s.std);
                    }
                    Cell::Value(v) => out.push(*v),
                    _ => {}
                }
            }
        }
        out
    }
}

/// `v` rounded to `decimals` places, as the writers print it.
fn shown(v: f64, decimals: usize) -> f64 {
    format!("{v:.decimals$}").parse().unwrap_or(v)
}

impl Table {
    /// The seed count n of every mean ± std cell, row by row.
    fn stat_seed_counts(&self) -> impl Iterator<Item = usize> + '_ {
        self.rows
            .iter()
            .flat_map(|r| r.cells.iter())
            .filter_map(|c| match c {
                Cell::Stat(s) => Some(s.n),
                _ => None,
            })
    }

    /// The seed count shared by every mean ± std cell, if they all have the same n (then the
    /// writers state n once instead of in every cell).
    pub fn uniform_n(&self) -> Option<usize> {
        let mut ns = self.stat_seed_counts();
        let first = ns.next()?;
        ns.all(|n| n == first).then_some(first)
    }

    /// Super-header spans: (group text, first column, number of columns), for consecutive
    /// columns sharing a non-empty group.
    pub fn group_spans(&self) -> Vec<(String, usize, usize)> {
        let mut spans: Vec<(String, usize, usize)> = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            match spans.last_mut() {
                Some((g, start, len)) if *g == c.group && *start + *len == i => *len += 1,
                _ => spans.push((c.group.clone(), i, 1)),
            }
        }
        spans
    }
}
