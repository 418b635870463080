//! Markdown: an HTML comment with the provenance, the title, a pipe table (best entries in
//! bold, entries not significantly worse than their row's best followed by `†` in tables
//! that test them) and the caption below it.

use crate::report::format::{fmt_num, fmt_stat, markdown_escape};
use crate::report::table::{Cell, ColumnKind, Table, VsBest, NOT_WORSE_MARK};

pub fn render(t: &Table) -> String {
    let mut out = String::from("<!--\n");
    for l in t.provenance.lines() {
        out.push_str(&format!("{}\n", l.replace("--", "- -")));
    }
    out.push_str("-->\n\n");
    out.push_str(&format!("**{}**\n\n", markdown_escape(&t.title)));
    let best = t.best();
    let vs = t.vs_best();
    let show_n = t.uniform_n().is_none();
    let headers: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            if c.group.is_empty() {
                markdown_escape(&c.header)
            } else {
                format!(
                    "{}: {}",
                    markdown_escape(&c.group),
                    markdown_escape(&c.header)
                )
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    let aligns: Vec<&str> = t
        .columns
        .iter()
        .map(|c| {
            if c.kind == ColumnKind::Key {
                ":--"
            } else {
                "--:"
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", aligns.join(" | ")));
    for (r, row) in t.rows.iter().enumerate() {
        let cells: Vec<String> = row
            .cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let d = t.columns[c].decimals;
                let s = match cell {
                    Cell::Empty => String::new(),
                    Cell::Text(s) => markdown_escape(s),
                    Cell::Value(v) => fmt_num(*v, d),
                    Cell::Stat(s) => {
                        let mut x = fmt_stat(s, d);
                        if show_n {
                            x.push_str(&format!(" (n={})", s.n));
                        }
                        x
                    }
                };
                let s = if best[r][c] && !s.is_empty() {
                    format!("**{s}**")
                } else if matches!(vs[r][c], Some(VsBest::NotWorse { .. })) {
                    format!("{s}{NOT_WORSE_MARK}")
                } else {
                    s
                };
                if row.summary && c == 0 {
                    format!("*{s}*")
                } else {
                    s
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    let mut caption = markdown_escape(&t.caption);
    if let Some(n) = t.uniform_n() {
        caption.push_str(&format!(
            " Mean ± std over {n} seed{}.",
            if n == 1 { "" } else { "s" }
        ));
    } else {
        caption.push_str(" Mean ± std over seeds, n = number of seeds.");
    }
    caption.push_str(" Best entries in bold.");
    if let Some(note) = t.significance_note() {
        caption.push(' ');
        caption.push_str(&markdown_escape(&note));
    }
    out.push_str(&format!("\n{caption}\n"));
    out
}
