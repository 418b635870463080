//! The guards of the pipeline file's parse: two checks of its text that run before the
//! typed parse, so that no input makes the parser slow or large.
//!
//! - [`check_nesting`]: a single scan of the text that refuses collections nested deeper than
//!   [`MAX_NESTING`] (libyaml's flow parser takes time quadratic in the depth).
//! - [`check_expansion`]: a walk of the document as serde_yaml hands it out, aliases
//!   replayed, that refuses a file whose aliases expand past [`MAX_EXPANDED_VALUES`] values
//!   beyond its length (a "billion laughs" file), counting no further than that.
//!
//! Both only refuse; what they let through is parsed by [`super::Spec::parse`], whose errors
//! carry the paths and lines of a well-formed file.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::error::SpecError;

/// The deepest nesting of collections a pipeline file may have. The deepest path of a
/// real file is about 10 (`profiles` > profile > `stages` > stage > `params` > `model`
/// > `hidden` > list); libyaml's flow parser takes time quadratic in the depth (a
/// 200 KB file of `[` took 41 s), so deeper files are refused before parsing.
pub const MAX_NESTING: usize = 64;

/// How many values (scalars and collections, after alias expansion) a file may hold
/// beyond its own length in bytes. A file without aliases holds fewer values than bytes;
/// aliases that expand past this (a "billion laughs" file) are refused after this many
/// values have been counted, before anything is built from them.
pub const MAX_EXPANDED_VALUES: u64 = 1_000_000;

/// Refuses a file whose collections nest deeper than [`MAX_NESTING`], naming the line
/// where the limit is crossed.
///
/// A single pass over the text: block collections nest by indentation (a stack of the
/// columns of open nodes, one more for each `- ` or `? ` that opens a node inside a
/// line), flow collections by `[`/`{` outside quoted scalars and comments. Block scalars
/// (`|`, `>`) are skipped. The count may exceed libyaml's by a level or two in odd
/// layouts (a `[` inside a plain scalar counts), never by more than the file shows.
pub fn check_nesting(text: &str, file: &Path) -> Result<(), SpecError> {
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a quoted scalar: its quote character.
    let mut quote: Option<u8> = None;
    // Inside a block scalar: the indentation of the line that opened it.
    let mut literal_of: Option<usize> = None;
    let too_deep = |line: usize| {
        Err(SpecError::new(
            file,
            format!(
                "collections nest deeper than {MAX_NESTING} levels; a pipeline needs about 10 \
                 (refused before parsing)"
            ),
        )
        .line(Some(line)))
    };
    for (li, raw) in text.lines().enumerate() {
        let b = raw.as_bytes();
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        let blank = b[indent..].iter().all(|c| c.is_ascii_whitespace());
        if let Some(open) = literal_of {
            if blank || indent > open {
                continue;
            }
            literal_of = None;
        }
        let mut i = 0;
        if quote.is_none() && flow == 0 {
            if blank || b[indent] == b'#' {
                continue;
            }
            while block.last().is_some_and(|&c| c >= indent) {
                block.pop();
            }
            block.push(indent);
            i = indent;
            // `- - x` and `? x` open one more node each on the same line.
            while i + 1 < b.len() && matches!(b[i], b'-' | b'?') && b[i + 1] == b' ' {
                i += 2;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if i < b.len() && !matches!(b[i], b'#') {
                    block.push(i);
                }
            }
            if block.len() > MAX_NESTING {
                return too_deep(li + 1);
            }
        }
        // Tokens: quotes, flow brackets, comments, block-scalar indicators.
        let mut prev: Option<u8> = if i == 0 { None } else { Some(b' ') };
        let mut prev_solid: Option<u8> = None;
        while i < b.len() {
            let c = b[i];
            if let Some(q) = quote {
                if c == q {
                    if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                } else if q == b'"' && c == b'\\' {
                    i += 1;
                }
                i += 1;
                prev = Some(b'x');
                prev_solid = Some(b'x');
                continue;
            }
            let after_space = prev.is_none_or(|p| p == b' ' || p == b'\t');
            match c {
                b'#' if after_space => break,
                b'"' | b'\'' => {
                    let opens = (after_space
                        && matches!(
                            prev_solid,
                            None | Some(b'-' | b'?' | b':' | b'[' | b'{' | b',')
                        ))
                        || matches!(prev, Some(b'[' | b'{' | b','));
                    if opens {
                        quote = Some(c);
                    }
                }
                b'[' | b'{' => {
                    flow += 1;
                    if block.len() + flow > MAX_NESTING {
                        return too_deep(li + 1);
                    }
                }
                b']' | b'}' => flow = flow.saturating_sub(1),
                b'|' | b'>'
                    if flow == 0
                        && after_space
                        && matches!(prev_solid, Some(b':' | b'-') | None) =>
                {
                    let rest = &b[i + 1..];
                    let header = rest
                        .iter()
                        .take_while(|&&x| x != b'#')
                        .all(|&x| x.is_ascii_digit() || matches!(x, b'+' | b'-' | b' ' | b'\t'));
                    if header {
                        literal_of = Some(indent);
                        break;
                    }
                }
                _ => {}
            }
            prev = Some(c);
            if !c.is_ascii_whitespace() {
                prev_solid = Some(c);
            }
            i += 1;
        }
    }
    Ok(())
}

/// Refuses a file whose aliases expand to more than [`MAX_EXPANDED_VALUES`] values
/// beyond its length: walks the parsed document as serde_yaml hands it out (aliases
/// replayed) and stops counting at the limit, so the time taken is bounded too.
pub fn check_expansion(text: &str, file: &Path) -> Result<(), SpecError> {
    use std::cell::Cell;
    let limit = MAX_EXPANDED_VALUES + text.len() as u64;
    let count = Cell::new(0u64);
    let res = serde_yaml::Deserializer::from_str(text).next().map(|d| {
        de::DeserializeSeed::deserialize(
            Counter {
                count: &count,
                limit,
            },
            d,
        )
    });
    let bomb = || {
        SpecError::new(
            file,
            format!(
                "aliases (`*name`) expand the file to more than {limit} values, far more \
                 than it holds; an alias that repeats other aliases (\"billion laughs\")? \
                 Refused before building anything"
            ),
        )
    };
    match res {
        None | Some(Ok(())) => Ok(()),
        Some(Err(e)) if count.get() > limit || e.to_string().contains("repetition limit") => {
            Err(bomb())
        }
        // Anything else (a syntax error) is reported by the typed parse, with its path.
        Some(Err(_)) => Ok(()),
    }
}

/// Counts the values of a document; fails once `limit` is passed.
#[derive(Clone, Copy)]
struct Counter<'a> {
    count: &'a std::cell::Cell<u64>,
    limit: u64,
}

impl Counter<'_> {
    fn tick<E: de::Error>(&self) -> Result<(), E> {
        self.count.set(self.count.get() + 1);
        if self.count.get() > self.limit {
            return Err(E::custom("expansion limit"));
        }
        Ok(())
    }
}

impl<'de> de::DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// The visitor methods of scalars, each counting one value (serde hands the narrower
/// integers and floats, and owned strings, to these).
macro_rules! count_scalars {
    ($($visit:ident($t:ty)),*) => {
        $(fn $visit<E: de::Error>(self, _: $t) -> Result<(), E> {
            self.tick()
        })*
    };
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    count_scalars!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_i128(i128),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str)
    );
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): count the tag and walk the value.
        use de::VariantAccess;
        self.tick()?;
        let ((), v) = data.variant_seed(self)?;
        v.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, Path::new("pipeline.yaml"))
    }

    /// A pipeline of one probe stage whose `params:` line goes on with `params`.
    fn with_params(params: &str) -> String {
        format!("stages:\n  a:\n    kind: probe\n    params:{params}\n")
    }

    /// The line at which `text` is refused for nesting too deep.
    fn too_deep_at(text: &str) -> Option<usize> {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        e.line
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_its_line() {
        let text = with_params(&format!(" {{ value: {} }}", "[".repeat(200_000)));
        assert_eq!(too_deep_at(&text), Some(4));
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        // Indented mappings, one level a line.
        let mut text = "stages:\n  a:\n    kind: probe\n    params:\n".to_string();
        for d in 0..100 {
            text += &format!("{}k{d}:\n", " ".repeat(6 + d));
        }
        too_deep_at(&text);
        // Compact sequences: `- - - x` nests on one line.
        let text = with_params(&format!(
            "\n      value:\n        {}x",
            "- ".repeat(100_000)
        ));
        assert_eq!(too_deep_at(&text), Some(6));
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_do_not_nest() {
        let deep = "[".repeat(100);
        for value in [
            format!("\"{deep}\""),
            format!("'{deep}'"),
            format!("x # {deep}"),
            format!("|\n        {deep}\n        {deep}"),
            format!("\"a \\\" {deep}\""),
            format!("'it''s {deep}'"),
        ] {
            let text = with_params(&format!("\n      value: {value}"));
            check_nesting(&text, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{value}: {e}"));
        }
        // Nesting within the limit parses.
        let nested = format!("{}1{}", "[".repeat(50), "]".repeat(50));
        parse(&with_params(&format!("\n      x_n: {nested}"))).unwrap();
    }

    #[test]
    fn the_project_pipeline_is_well_within_the_limits() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        check_nesting(&text, &file).unwrap();
        check_expansion(&text, &file).unwrap();
        parse(&text).unwrap();
    }

    #[test]
    fn billion_laughs_is_refused() {
        // `x_*` labels of a probe take any value: a valid pipeline, but the aliases
        // expand to 10^9 strings.
        let mut text = "defaults:\n  probe:\n    x_0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            text += &format!("    x_{i}: &l{i} [{refs}]\n");
        }
        text += "stages:\n  a:\n    kind: probe\n";
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
        assert!(e.message.contains("billion laughs"), "{e}");
        assert_eq!(e.file, Path::new("pipeline.yaml"));
    }

    #[test]
    fn wide_alias_repeated_many_times_is_refused() {
        // One anchored list of 3,000 values used 3,000 times: under serde_yaml's own
        // limit on alias jumps, but 9 million values.
        let list = vec!["1"; 3000].join(", ");
        let refs = vec!["*w"; 3000].join(", ");
        let text = format!(
            "defaults:\n  probe:\n    x_w: &w [{list}]\n    x_r: [{refs}]\nstages:\n  a:\n    kind: probe\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
        // A few aliases, as pipeline.yaml uses them, are fine.
        parse("defaults:\n  probe:\n    x_a: &a [1, 2]\n    x_b: *a\nstages:\n  a:\n    kind: probe\n    profiles: &p [default]\n  b:\n    kind: probe\n    profiles: *p\n").unwrap();
    }
}
