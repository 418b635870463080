//! The closed set of stage kinds, [`Kind`]: the names `pipeline.yaml` may use, made from
//! the one list in `kind_list.rs`, with the reading of a kind's params ([`parse`]) and the
//! project files they may name as code ([`CodeFile`]).
//!
//! What a kind is, [`crate::stage_kind::StageKind`], and the dispatch from a name and raw
//! params to it (`Kind::validate`, `Kind::run`, ..., at the crate root) sit elsewhere: this
//! module uses nothing of the crate, so a kind can name another (`Kind::InjectNoise` as an
//! input it accepts), and `declared.rs` can name its members' kinds, without a cycle.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

macro_rules! define_kinds {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        /// Every stage kind `pipeline.yaml` may name (the list in `kind_list.rs`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind, in the list's order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The name used in `pipeline.yaml`: the name of its module under `kinds/`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => stringify!($module),)*
                }
            }
        }
    };
}

kind_list!(define_kinds);

impl Kind {
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// Deserializes a kind's params. An error inside a field names it first:
/// `field `epochs`: invalid type: string "two", expected usize` (the path as
/// [serde_path_to_error](https://docs.rs/serde_path_to_error) tracks it, with an unknown
/// nested field appended: `field `model.colour`: unknown field `colour`, ...`).
pub fn parse<P: DeserializeOwned>(params: &Value) -> Result<P, String> {
    serde_path_to_error::deserialize::<_, P>(params).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        if let Some(k) = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
            .map(|(k, _)| k)
        {
            // The path ends at the unknown key itself for a struct read directly, at its
            // parent for one read through a tagged enum (`model`).
            if path.is_empty() {
                path = k.to_string();
            } else if path != k && !path.ends_with(&format!(".{k}")) {
                path = format!("{path}.{k}");
            }
        }
        if path.is_empty() {
            inner
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

/// A project file or folder a stage's params name as its code
/// ([`crate::stage_kind::StageKind::code_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFile {
    /// The params field naming it, e.g. `deps[0]`.
    pub field: String,
    /// As written in the params: relative to the project root.
    pub path: PathBuf,
}
