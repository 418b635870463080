//! Where in the pipeline file an error is: [`yaml_error`] turns a serde_yaml error into a
//! [`SpecError`] naming the stage and the field its path shows, and [`locate`] finds the line
//! of a key path in the text for the errors found after parsing (the pipeline's checks, the
//! kinds' refusals of params).
//!
//! [`locate`] walks block-style YAML by indentation along the key path (`stages` > stage >
//! field > ...) and returns the line of the deepest key it finds, or of a list item
//! (`tables[1]`); inside flow mappings (`{ a: 1 }`) it stops at the enclosing key's line.
//! It reads the text, not the parsed document, because serde_yaml keeps no positions.

use std::path::Path;

use crate::error::SpecError;

/// Turns a serde_yaml error (`stages.x.params: unknown field `y`, expected ... at line 3
/// column 5`) into a [`SpecError`] with the stage and the field pulled out of it.
pub(super) fn yaml_error(e: &serde_yaml::Error, text: &str, file: &Path) -> SpecError {
    let full = e.to_string();
    // serde_yaml appends " at line L column C"; the location is reported separately.
    let msg = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    let (path, body) = match msg.split_once(": ") {
        Some((p, b)) if !p.contains(' ') => (p.to_string(), b.to_string()),
        _ => (String::new(), msg.clone()),
    };
    let segs: Vec<&str> = if path.is_empty() {
        vec![]
    } else {
        path.split('.').collect()
    };
    let mut err = SpecError::new(file, body.clone());
    let mut line = e.location().map(|l| l.line());
    if segs.first() == Some(&"stages") && segs.len() >= 2 {
        err = err.stage(strip_index(segs[1]));
    } else if segs.first() == Some(&"profiles") && segs.len() >= 2 {
        err.message = format!("profile `{}`: {}", strip_index(segs[1]), body);
    }
    let field = backticked_after(&body, "unknown field ")
        .or_else(|| backticked_after(&body, "duplicate key "))
        .or_else(|| backticked_after(&body, "missing field "));
    let mut key_path: Vec<String> = segs.iter().map(|s| strip_index(s)).collect();
    if let Some(dup) = backticked_after(&body, "duplicate key ") {
        // serde_yaml points at the mapping; point at the second occurrence instead.
        if path == "stages" {
            err = err.stage(dup.clone());
        } else {
            err = err.field(dup.clone());
        }
        let from = line.unwrap_or(1).saturating_sub(1);
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .skip(from)
            .filter(|(_, l)| key_matches(l.trim_start(), &dup))
            .map(|(i, _)| i + 1)
            .collect();
        return err.line(hits.get(1).copied().or(line));
    }
    if let Some(f) = field {
        key_path.push(f.clone());
        err = err.field(f);
    } else if segs.len() >= 3 {
        err = err.field(segs[2..].join("."));
    }
    if line.is_none() {
        let refs: Vec<&str> = key_path.iter().map(|s| s.as_str()).collect();
        line = locate(text, &refs);
    }
    err.line(line)
}

fn strip_index(s: &str) -> String {
    match s.find('[') {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The first backticked word after `marker` in `s`.
pub fn backticked_after(s: &str, marker: &str) -> Option<String> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The 1-based line of the deepest key of `path` found in block-style YAML `text`.
///
/// Walks down by indentation: the key `path[i]` is searched among the lines more
/// indented than `path[i-1]`'s line, up to the first line indented as much or less. A
/// step `[n]` is the n-th item (from 0) of a block sequence (`- ...` lines) under the key
/// before it; the item's first key may sit on its own line (`- table: clean`). Returns the
/// last key or item found (so an error on a field inside a flow mapping points at the line
/// of the mapping's key or item), or None when even the first key is absent.
pub fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut parent_indent: isize = -1;
    let mut found: Option<usize> = None;
    // A list item just found: its line, the column of its content, and that content.
    let mut item: Option<(usize, usize, &str)> = None;
    for key in path {
        if let Some(n) = key
            .strip_prefix('[')
            .and_then(|k| k.strip_suffix(']'))
            .and_then(|k| k.parse::<usize>().ok())
        {
            let Some((i, col, content)) = nth_item(&lines, start, parent_indent, n) else {
                break;
            };
            found = Some(i + 1);
            start = i + 1;
            parent_indent = col as isize - 1;
            item = Some((i, col, content));
            continue;
        }
        if let Some((i, col, content)) = item.take() {
            if key_matches(content, key) {
                found = Some(i + 1);
                start = i + 1;
                parent_indent = col as isize;
                continue;
            }
        }
        let mut hit = None;
        let mut child_indent: Option<usize> = None;
        for (i, raw) in lines.iter().enumerate().skip(start) {
            let line = strip_comment(raw);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if (indent as isize) <= parent_indent {
                break;
            }
            let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if child_indent.is_none() {
                child_indent = Some(indent);
            }
            if Some(indent) != child_indent && !trimmed.starts_with("- ") {
                continue;
            }
            if key_matches(entry, key) {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                start = i + 1;
                parent_indent = indent as isize;
            }
            None => break,
        }
    }
    found
}

/// The `n`-th item (from 0) of the block sequence starting at line `start` under a key
/// indented `parent_indent`: its line, the column of its content, and the content.
fn nth_item<'t>(
    lines: &[&'t str],
    start: usize,
    parent_indent: isize,
    n: usize,
) -> Option<(usize, usize, &'t str)> {
    let mut item_indent = None;
    let mut count = 0;
    for (i, raw) in lines.iter().enumerate().skip(start) {
        let line = strip_comment(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = (line.len() - trimmed.len()) as isize;
        let dash = trimmed.starts_with("- ") || trimmed == "-";
        // An indentless sequence may sit at its key's own indentation.
        if indent < parent_indent || (indent == parent_indent && !dash) {
            break;
        }
        if !dash || *item_indent.get_or_insert(indent) != indent {
            continue;
        }
        if count == n {
            let content = trimmed.strip_prefix('-').unwrap_or("").trim_start();
            let col = line.len() - content.len();
            return Some((i, col, content));
        }
        count += 1;
    }
    None
}

fn strip_comment(line: &str) -> &str {
    // Good enough for keys: a ` #` outside quotes starts a comment.
    match line.find(" #") {
        Some(i) if !line[..i].contains('"') && !line[..i].contains('\'') => &line[..i],
        _ => line,
    }
}

fn key_matches(entry: &str, key: &str) -> bool {
    for q in ["", "\"", "'"] {
        let k = format!("{q}{key}{q}");
        if let Some(rest) = entry.strip_prefix(&k) {
            let rest = rest.trim_start();
            if rest.starts_with(':') {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_walks_by_indentation() {
        let text = "# c\nstages:\n  a:\n    kind: probe\n    params:\n      value: x\n  b:\n    kind: probe\n    params: { value: y }\n    inputs:\n      up: a\n";
        assert_eq!(locate(text, &["stages"]), Some(2));
        assert_eq!(locate(text, &["stages", "a", "params", "value"]), Some(6));
        assert_eq!(locate(text, &["stages", "b", "kind"]), Some(8));
        assert_eq!(locate(text, &["stages", "b", "params", "value"]), Some(9));
        assert_eq!(locate(text, &["stages", "b", "inputs", "up"]), Some(11));
        // `value` under stage a is not found when looking under b.
        assert_eq!(locate(text, &["stages", "b", "value"]), Some(7));
    }

    #[test]
    fn locate_finds_list_items() {
        let text = "stages:\n  t:\n    params:\n      tables:\n        - { table: a }\n        # c\n        - table: b\n          methods: [x]\n        - { table: c, methods: [y] }\n      figures:\n      - figure: e\n";
        // (the path below `stages: t: params:`, the line)
        for (path, line) in [
            (&["tables", "[0]"][..], 5),
            (&["tables", "[1]", "table"], 7),
            (&["tables", "[1]", "methods"], 8),
            (&["tables", "[2]", "methods"], 9),
            // No such item: the list's key.
            (&["tables", "[3]", "methods"], 4),
            // An indentless sequence.
            (&["figures", "[0]", "figure"], 11),
        ] {
            let full: Vec<&str> = ["stages", "t", "params"]
                .iter()
                .chain(path)
                .copied()
                .collect();
            assert_eq!(locate(text, &full), Some(line), "{path:?}");
        }
    }
}
