//! Text helpers shared by the writers and layouts: LaTeX escaping, number formatting and
//! the display names of methods, datasets and corruptions, which their enums own
//! ([`crate::method::Method`], [`DatasetName`], [`Corruption`]).

use crate::data::sources::DatasetName;
use crate::noise::Corruption;
use crate::report::aggregate::Stat;
use crate::report::run::CLEAN;

/// Escapes text for LaTeX (text mode): `\ & % $ # _ { } ~ ^`.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            '±' => out.push_str(r"$\pm$"),
            '×' => out.push_str(r"$\times$"),
            '‖' => out.push_str(r"$\|$"),
            '≥' => out.push_str(r"$\geq$"),
            '†' => out.push_str(r"$^\dagger$"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escapes text for a Markdown table cell (`|` and the characters that start emphasis).
pub fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '|' | '*' | '_' | '`' | '\\' | '<' | '>') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

pub fn fmt_num(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// `mean ± std` (or just `mean` when n < 2), at `decimals` places.
pub fn fmt_stat(s: &Stat, decimals: usize) -> String {
    match s.std {
        Some(sd) => format!("{} ± {}", fmt_num(s.mean, decimals), fmt_num(sd, decimals)),
        None => fmt_num(s.mean, decimals),
    }
}

/// Percent of a fraction, shortest form (0.05 -> "5", 0.001 -> "0.1").
pub fn percent(frac: f64) -> String {
    crate::report::aggregate::num_key(frac * 100.0)
}

/// How tables show the method named `m` ([`crate::method::display_name`]: a built-in
/// method's display name, a program's own method as written).
pub fn method_name(m: &str) -> String {
    crate::method::display_name(m).to_string()
}

/// How tables show the dataset named `d` ([`DatasetName::display`]; a dataset a program
/// names itself, as written).
pub fn dataset_name(d: &str) -> String {
    DatasetName::from_name(d)
        .map_or(d, |d| d.display())
        .to_string()
}

/// How tables show the corruption named `c`: [`Corruption::display`], `Clean` for runs on
/// clean labels ([`CLEAN`]), a corruption a program names itself as written.
pub fn corruption_name(c: &str) -> String {
    if c == CLEAN {
        return "Clean".into();
    }
    Corruption::from_name(c)
        .map_or(c, |c| c.display())
        .to_string()
}

/// A corruption's rank among a table's rows: clean labels first, then
/// [`Corruption::place`], then the corruptions programs name themselves.
pub fn corruption_rank(c: &str) -> usize {
    if c == CLEAN {
        return 0;
    }
    Corruption::from_name(c).map_or(99, |c| 1 + c.place())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_specials_are_escaped() {
        assert_eq!(latex_escape("a_b"), r"a\_b");
        assert_eq!(latex_escape("5%"), r"5\%");
        assert_eq!(latex_escape("R&D"), r"R\&D");
        assert_eq!(latex_escape("#1"), r"\#1");
        assert_eq!(latex_escape("$x$"), r"\$x\$");
        assert_eq!(latex_escape("{a}"), r"\{a\}");
        assert_eq!(latex_escape("~"), r"\textasciitilde{}");
        assert_eq!(latex_escape("^"), r"\textasciicircum{}");
        assert_eq!(latex_escape(r"a\b"), r"a\textbackslash{}b");
        assert_eq!(latex_escape(r"\_"), r"\textbackslash{}\_");
        assert_eq!(latex_escape("plain text 1.0"), "plain text 1.0");
    }

    #[test]
    fn markdown_pipes_are_escaped() {
        assert_eq!(markdown_escape("a|b_c"), r"a\|b\_c");
    }

    #[test]
    fn stats_format() {
        let s = Stat {
            mean: 12.345,
            std: Some(0.26),
            n: 3,
        };
        assert_eq!(fmt_stat(&s, 1), "12.3 ± 0.3");
        assert_eq!(
            fmt_stat(
                &Stat {
                    mean: 1.0,
                    std: None,
                    n: 1
                },
                2
            ),
            "1.00"
        );
        assert_eq!(percent(0.001), "0.1");
        assert_eq!(percent(0.25), "25");
    }
}
