//! The cells that moved between two versions of a published CSV table.
//!
//! A table file is `#` comment lines (provenance, caption, notes), then a header row, then
//! data rows, comma-separated with RFC 4180 quoting. Comments are not cells: tables that
//! differ only there (say, in the pipeline fingerprint they quote) have no moved cell, which
//! [`TableDiff::comments_only`] says.
//!
//! Columns are matched by header. Rows are matched by their label: the cells of the fewest
//! leading columns that tell every row of each table apart (for the tables here the dataset,
//! the corruption, the noise level, ...), which also names the row in the output. Tables
//! whose rows no prefix tells apart, or whose labels themselves changed while the row count
//! did not, are matched row by row.
//!
//! A cell's number is its leading number, after Markdown emphasis: `12.3 ± 0.4†` reads 12.3,
//! `**9.7**` reads 9.7, `−1.5` reads -1.5. When both versions of a cell have one, the change
//! shows both texts and the difference of the numbers; otherwise both texts.

use std::collections::HashMap;
use std::fmt;

/// How a row is named: by its label (its leading cells, `, `-joined), or by its position
/// (1-based, data rows only) when rows were matched in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowName {
    Label(String),
    Number(usize),
}

impl fmt::Display for RowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowName::Label(l) => write!(f, "row `{l}`"),
            RowName::Number(n) => write!(f, "row {n}"),
        }
    }
}

/// One cell whose text differs.
#[derive(Clone, Debug, PartialEq)]
pub struct CellChange {
    pub row: RowName,
    pub column: String,
    pub old: String,
    pub new: String,
    /// New minus old, when both cells have a leading number.
    pub delta: Option<f64>,
}

impl fmt::Display for CellChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &str| {
            if s.is_empty() {
                "(empty)".to_string()
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "{}, column `{}`: {} -> {}",
            self.row,
            self.column,
            show(&self.old),
            show(&self.new)
        )?;
        match self.delta {
            Some(d) if d == 0.0 => write!(f, " (same number)"),
            Some(d) => write!(f, " ({})", signed(d)),
            None => Ok(()),
        }
    }
}

/// What differs between two versions of a table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableDiff {
    pub cells: Vec<CellChange>,
    /// Rows only the old (reference) table has.
    pub rows_removed: Vec<RowName>,
    /// Rows only the new table has.
    pub rows_added: Vec<RowName>,
    pub columns_removed: Vec<String>,
    pub columns_added: Vec<String>,
}

impl TableDiff {
    /// Whether the header and every cell are the same (so any difference of the files is in
    /// their comment lines).
    pub fn comments_only(&self) -> bool {
        self.cells.is_empty()
            && self.rows_removed.is_empty()
            && self.rows_added.is_empty()
            && self.columns_removed.is_empty()
            && self.columns_added.is_empty()
    }
}

/// The records of a CSV text, leaving out `#` comment lines and blank lines.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        // At the start of a record.
        if matches!(chars.peek(), Some('#')) {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => {
                    if chars.peek() == Some(&'"') {
                        field.push('"');
                        chars.next();
                    } else {
                        quoted = false;
                    }
                }
                '"' if field.is_empty() => quoted = true,
                ',' if !quoted => record.push(std::mem::take(&mut field)),
                '\n' if !quoted => break,
                '\r' if !quoted && chars.peek() == Some(&'\n') => {}
                _ => field.push(c),
            }
        }
        record.push(field);
        if !(record.len() == 1 && record[0].is_empty()) {
            records.push(record);
        }
    }
    records
}

/// The leading number of a cell, after Markdown emphasis (`*`, `_`) and spaces: `12.3` of
/// `12.3 ± 0.4†`, `9.7` of `**9.7**`, `-1.5` of `−1.5`; None when it does not start with one.
pub fn leading_number(cell: &str) -> Option<f64> {
    let s = cell.trim_start_matches(['*', '_', ' ']);
    let mut num = String::new();
    let mut rest = s.chars().peekable();
    if let Some(&c) = rest.peek() {
        if c == '-' || c == '+' || c == '\u{2212}' {
            num.push(if c == '+' { '+' } else { '-' });
            rest.next();
        }
    }
    let mut digits = 0;
    let mut dot = false;
    while let Some(&c) = rest.peek() {
        if c.is_ascii_digit() {
            digits += 1;
        } else if c == '.' && !dot {
            dot = true;
        } else {
            break;
        }
        num.push(c);
        rest.next();
    }
    if digits == 0 {
        return None;
    }
    // An exponent only when digits follow it (`1e-6`, not the `e` of a word).
    let tail: String = rest.collect();
    let mut exp = String::new();
    let mut t = tail.chars().peekable();
    if matches!(t.peek(), Some('e' | 'E')) {
        exp.push('e');
        t.next();
        if let Some(&c) = t.peek() {
            if c == '-' || c == '+' {
                exp.push(c);
                t.next();
            }
        }
        let d: String = t.take_while(char::is_ascii_digit).collect();
        if !d.is_empty() {
            num.push_str(&exp);
            num.push_str(&d);
        }
    }
    num.parse().ok()
}

/// A signed difference with 4 significant digits, trailing zeros dropped: `+0.1`, `-12.35`,
/// `+2.5e-9`.
pub fn signed(d: f64) -> String {
    if !d.is_finite() {
        return format!("{d:+}");
    }
    let mag = d.abs().log10().floor() as i32;
    if !(-6..=15).contains(&mag) {
        return format!("{d:+.3e}");
    }
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{d:+.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The fewest leading columns whose cells tell apart every row of each table; None when even
/// all of them do not.
fn label_width(tables: [&[Vec<String>]; 2]) -> Option<usize> {
    let widest = tables
        .iter()
        .flat_map(|rows| rows.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    (1..=widest.max(1)).find(|&k| {
        tables.iter().all(|rows| {
            let mut seen = std::collections::HashSet::new();
            rows.iter().all(|r| seen.insert(label(r, k)))
        })
    })
}

fn label(row: &[String], k: usize) -> String {
    row.iter()
        .take(k)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Header names with a `#N` suffix for the N-th repeat of a name, so every column has a key.
fn column_keys(header: &[String]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    header
        .iter()
        .map(|h| {
            let n = seen.entry(h).or_default();
            *n += 1;
            if *n == 1 {
                h.clone()
            } else {
                format!("{h}#{n}")
            }
        })
        .collect()
}

/// The header and the data rows of parsed records (both empty for an empty table).
fn header_and_rows(records: &[Vec<String>]) -> (&[String], &[Vec<String>]) {
    match records.split_first() {
        Some((header, rows)) => (header, rows),
        None => (&[], &[]),
    }
}

/// The cells that moved from `old` (the reference's table) to `new` (this run's).
pub fn diff(old: &str, new: &str) -> TableDiff {
    let old = parse_csv(old);
    let new = parse_csv(new);
    let (old_header, old_rows) = header_and_rows(&old);
    let (new_header, new_rows) = header_and_rows(&new);
    let old_cols = column_keys(old_header);
    let new_cols = column_keys(new_header);
    let old_at: HashMap<&str, usize> = old_cols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut out = TableDiff {
        columns_removed: old_cols
            .iter()
            .filter(|c| !new_cols.contains(c))
            .cloned()
            .collect(),
        columns_added: new_cols
            .iter()
            .filter(|c| !old_cols.contains(c))
            .cloned()
            .collect(),
        ..TableDiff::default()
    };

    let width = label_width([old_rows, new_rows]);
    let name = |row: &[String], i: usize| match width {
        Some(k) => RowName::Label(label(row, k)),
        None => RowName::Number(i + 1),
    };
    // (old index, new index) pairs.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut by_label = false;
    if let Some(k) = width {
        let old_by: HashMap<String, usize> = old_rows
            .iter()
            .enumerate()
            .map(|(i, r)| (label(r, k), i))
            .collect();
        pairs = new_rows
            .iter()
            .enumerate()
            .filter_map(|(j, r)| old_by.get(&label(r, k)).map(|&i| (i, j)))
            .collect();
        by_label =
            pairs.len() == old_rows.len().max(new_rows.len()) || old_rows.len() != new_rows.len();
    }
    if by_label {
        let matched_old: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let matched_new: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        out.rows_removed = (0..old_rows.len())
            .filter(|i| !matched_old.contains(i))
            .map(|i| name(&old_rows[i], i))
            .collect();
        out.rows_added = (0..new_rows.len())
            .filter(|j| !matched_new.contains(j))
            .map(|j| name(&new_rows[j], j))
            .collect();
    } else {
        let n = old_rows.len().min(new_rows.len());
        pairs = (0..n).map(|i| (i, i)).collect();
        out.rows_removed = (n..old_rows.len())
            .map(|i| RowName::Number(i + 1))
            .collect();
        out.rows_added = (n..new_rows.len())
            .map(|j| RowName::Number(j + 1))
            .collect();
    }

    let empty = String::new();
    for (i, j) in pairs {
        let (o, n) = (&old_rows[i], &new_rows[j]);
        let row = if by_label {
            name(n, j)
        } else {
            RowName::Number(j + 1)
        };
        for (c, col) in new_cols.iter().enumerate() {
            let Some(&oc) = old_at.get(col.as_str()) else {
                continue;
            };
            let (a, b) = (o.get(oc).unwrap_or(&empty), n.get(c).unwrap_or(&empty));
            if a == b {
                continue;
            }
            let delta = match (leading_number(a), leading_number(b)) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            };
            out.cells.push(CellChange {
                row: row.clone(),
                column: col.clone(),
                old: a.clone(),
                new: b.clone(),
                delta,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_skip_comments_and_unquote() {
        let text = "# generated by repro\n# profile: default\nA,\"B, quoted\",C\r\nx,\"say \"\"hi\"\"\",\"two\nlines\"\n\n";
        assert_eq!(
            parse_csv(text),
            vec![
                vec!["A", "B, quoted", "C"],
                vec!["x", "say \"hi\"", "two\nlines"]
            ]
        );
        assert_eq!(
            parse_csv("a,,b\n,\n"),
            vec![vec!["a", "", "b"], vec!["", ""]]
        );
    }

    #[test]
    fn leading_numbers_of_decorated_cells() {
        assert_eq!(leading_number("12.3 ± 0.4†"), Some(12.3));
        assert_eq!(leading_number("**9.7**"), Some(9.7));
        assert_eq!(leading_number("**9.7 ± 0.6**"), Some(9.7));
        assert_eq!(leading_number("*6.6*"), Some(6.6));
        assert_eq!(leading_number("\u{2212}1.5"), Some(-1.5));
        assert_eq!(leading_number("-0.25"), Some(-0.25));
        assert_eq!(
            leading_number("0.00008612077133118995"),
            Some(0.00008612077133118995)
        );
        assert_eq!(leading_number("1e-6"), Some(1e-6));
        assert_eq!(leading_number("3 epochs"), Some(3.0));
        assert_eq!(leading_number("5e"), Some(5.0));
        assert_eq!(leading_number("45-87 %"), Some(45.0));
        assert_eq!(leading_number("not worse"), None);
        assert_eq!(leading_number(""), None);
        assert_eq!(leading_number("-"), None);
        assert_eq!(leading_number("."), None);
    }

    #[test]
    fn differences_have_four_significant_digits() {
        assert_eq!(signed(9.9 - 9.799999999999999), "+0.1");
        assert_eq!(signed(-12.3456), "-12.35");
        assert_eq!(signed(1234.56), "+1235");
        assert_eq!(signed(0.000123), "+0.000123");
        assert_eq!(signed(2.5e-9), "+2.500e-9");
        assert_eq!(signed(3.0), "+3");
    }

    const OLD: &str = "\
# generated by repro
# pipeline fingerprint: sha256:aaaa
Dataset,Corruption,Trusted (%),GLC mean,GLC std,MLC mean
Digits,Uniform,5,9.799999999999999,0.7,9.9
Digits,Flip,5,**3.5 ± 1.2**,1.2,6.2
Digits,Mean,,6.6,,8.1
";

    #[test]
    fn moved_cells_are_named_by_row_label_and_column() {
        let new = OLD
            .replace("aaaa", "bbbb")
            .replace("9.799999999999999,0.7", "9.9,0.7")
            .replace("**3.5 ± 1.2**", "3.6 ± 1.2†")
            .replace("6.2\n", "n/a\n");
        let d = diff(OLD, &new);
        let lines: Vec<String> = d.cells.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "row `Digits, Uniform`, column `GLC mean`: 9.799999999999999 -> 9.9 (+0.1)",
                "row `Digits, Flip`, column `GLC mean`: **3.5 ± 1.2** -> 3.6 ± 1.2† (+0.1)",
                "row `Digits, Flip`, column `MLC mean`: 6.2 -> n/a",
            ]
        );
        assert!(!d.comments_only());
    }

    #[test]
    fn a_table_that_differs_only_in_comments_has_no_moved_cell() {
        let d = diff(OLD, &OLD.replace("aaaa", "bbbb"));
        assert!(d.comments_only(), "{d:?}");
        let d = diff(OLD, &OLD.replace("9.9\n", "**9.9**\n"));
        assert_eq!(
            d.cells[0].to_string(),
            "row `Digits, Uniform`, column `MLC mean`: 9.9 -> **9.9** (same number)"
        );
    }

    #[test]
    fn rows_and_columns_are_matched_by_name() {
        // A row and a column added, the rows reordered: only real moves are cells.
        let new = "\
Dataset,Corruption,Trusted (%),GLC mean,GLC std,MLC mean,Soft mean
Digits,Flip,5,**3.5 ± 1.2**,1.2,6.2,8.9
Digits,Uniform,5,9.799999999999999,0.7,10.1,9.7
Digits,Symmetric,5,1,1,1,1
Digits,Mean,,6.6,,8.1,9.3
";
        let d = diff(OLD, new);
        assert_eq!(d.columns_added, ["Soft mean"]);
        assert!(d.columns_removed.is_empty());
        assert_eq!(d.rows_added, [RowName::Label("Digits, Symmetric".into())]);
        assert!(d.rows_removed.is_empty());
        let lines: Vec<String> = d.cells.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["row `Digits, Uniform`, column `MLC mean`: 9.9 -> 10.1 (+0.2)"]
        );
        // And the other way round.
        let back = diff(new, OLD);
        assert_eq!(
            back.rows_removed,
            [RowName::Label("Digits, Symmetric".into())]
        );
        assert_eq!(back.columns_removed, ["Soft mean"]);
    }

    #[test]
    fn rows_no_prefix_tells_apart_are_matched_in_order() {
        let old = "a,b\nx,1\nx,1\n";
        let new = "a,b\nx,1\nx,2\nx,3\n";
        let d = diff(old, new);
        assert_eq!(d.cells.len(), 1);
        assert_eq!(d.cells[0].to_string(), "row 2, column `b`: 1 -> 2 (+1)");
        assert_eq!(d.rows_added, [RowName::Number(3)]);
        // A renamed label with the same row count: matched row by row, the label a cell.
        let d = diff("name,v\nalpha,1\nbeta,2\n", "name,v\nalpha,1\ngamma,2\n");
        assert!(
            d.rows_added.is_empty() && d.rows_removed.is_empty(),
            "{d:?}"
        );
        assert_eq!(
            d.cells[0].to_string(),
            "row 2, column `name`: beta -> gamma"
        );
    }
}
