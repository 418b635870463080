//! LaTeX: a `table` float with a booktabs `tabular` (needs `\usepackage{booktabs}`), `%`
//! provenance comments on top, super-headers with `\cmidrule`, the best entries in bold
//! (entries not significantly worse than their row's best marked `$^\dagger$` in tables
//! that test them), `\midrule` between sections and before summary rows. All text is
//! escaped.

use crate::report::format::{fmt_num, latex_escape};
use crate::report::table::{Cell, ColumnKind, Table, VsBest};

fn cell_tex(cell: &Cell, decimals: usize, bold: bool, not_worse: bool, show_n: bool) -> String {
    let b = |s: String| if bold { format!(r"\textbf{{{s}}}") } else { s };
    match cell {
        Cell::Empty => String::new(),
        Cell::Text(s) => latex_escape(s),
        Cell::Value(v) => b(fmt_num(*v, decimals)),
        Cell::Stat(s) => {
            let mut txt = b(fmt_num(s.mean, decimals));
            if let Some(sd) = s.std {
                txt.push_str(&format!(r" {{\scriptsize$\pm${}}}", fmt_num(sd, decimals)));
            }
            if show_n {
                txt.push_str(&format!(r"\textsubscript{{{}}}", s.n));
            }
            if not_worse {
                txt.push_str(r"$^\dagger$");
            }
            txt
        }
    }
}

pub fn render(t: &Table) -> String {
    let mut out = String::new();
    for l in t.provenance.lines() {
        out.push_str(&format!("% {l}\n"));
    }
    let best = t.best();
    let vs = t.vs_best();
    let show_n = t.uniform_n().is_none();
    let align: String = t
        .columns
        .iter()
        .map(|c| if c.kind == ColumnKind::Key { 'l' } else { 'r' })
        .collect();
    out.push_str("\\begin{table}[t]\n\\centering\n\\small\n");
    out.push_str(&format!("\\begin{{tabular}}{{{align}}}\n\\toprule\n"));
    let spans = t.group_spans();
    if spans.iter().any(|(g, _, _)| !g.is_empty()) {
        let mut parts = Vec::new();
        let mut rules = Vec::new();
        for (g, start, len) in &spans {
            if g.is_empty() {
                parts.extend(std::iter::repeat_n(String::new(), *len));
            } else {
                parts.push(format!(
                    r"\multicolumn{{{len}}}{{c}}{{{}}}",
                    latex_escape(g)
                ));
                rules.push(format!(r"\cmidrule(lr){{{}-{}}}", start + 1, start + len));
            }
        }
        out.push_str(&format!(
            "{} \\\\\n{}\n",
            parts.join(" & "),
            rules.join(" ")
        ));
    }
    let headers: Vec<String> = t.columns.iter().map(|c| latex_escape(&c.header)).collect();
    out.push_str(&format!("{} \\\\\n\\midrule\n", headers.join(" & ")));
    let mut prev_section: Option<&str> = None;
    for (r, row) in t.rows.iter().enumerate() {
        if (prev_section.is_some_and(|p| p != row.section) || row.summary) && r > 0 {
            out.push_str("\\midrule\n");
        }
        prev_section = Some(&row.section);
        let cells: Vec<String> = row
            .cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let not_worse = matches!(vs[r][c], Some(VsBest::NotWorse { .. }));
                cell_tex(cell, t.columns[c].decimals, best[r][c], not_worse, show_n)
            })
            .collect();
        out.push_str(&format!("{} \\\\\n", cells.join(" & ")));
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    let mut caption = format!(
        r"\textbf{{{}.}} {}",
        latex_escape(&t.title),
        latex_escape(&t.caption)
    );
    if let Some(n) = t.uniform_n() {
        caption.push_str(&format!(
            " Mean {} std over {n} seed{}.",
            r"$\pm$",
            if n == 1 { "" } else { "s" }
        ));
    } else {
        caption.push_str(r" Mean $\pm$ std over seeds; subscripts give the number of seeds.");
    }
    caption.push_str(" Best entries in bold.");
    if let Some(note) = t.significance_note() {
        caption.push(' ');
        caption.push_str(&latex_escape(&note));
    }
    out.push_str(&format!(
        "\\caption{{{caption}}}\n\\label{{tab:{}}}\n\\end{{table}}\n",
        latex_escape(&t.name)
    ));
    out
}
