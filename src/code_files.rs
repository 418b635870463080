//! The project files a stage's params name as its code ([`Kind::code_files`], e.g. the
//! `deps` of a `command` stage): their content goes into the stage's fingerprint, so
//! editing one reruns the stages that name it, and only those.
//!
//! Each named path gets one digest, keyed in the fingerprint by the path as written:
//! a file's SHA-256, or for a folder the SHA-256 over `relative path \0 sha256 \n` of every
//! file under it in sorted `/`-path order (so a renamed, added or removed file changes it
//! too). `__pycache__` folders and names starting with `.` are skipped: interpreters and
//! editors write them, and they are not source.
//!
//! The digests are computed when the pipeline loads, at every command: the files are a
//! handful of sources, so reading them costs less than keeping a cache of them honest.
//! A path that does not exist is an error of the pipeline file, reported like a bad
//! param, with the field that names it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::store::{entries_digest, hash_file, scan_dir_where};
use repro_stages::Kind;
use serde_json::Value;

/// Path as written -> digest, for every code file `params` of `kind` name under
/// `project`. `Err` is a message in [`Kind::validate`]'s form (`field `deps[0]`: ...`).
pub fn digests(
    kind: Kind,
    params: &Value,
    project: &Path,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for cf in kind.code_files(params) {
        let full = project.join(&cf.path);
        let shown = cf.path.display().to_string();
        if !full.exists() {
            return Err(format!(
                "field `{}`: `{shown}` does not exist in the project ({})",
                cf.field,
                project.display()
            ));
        }
        let d =
            digest(&full).map_err(|e| format!("field `{}`: reading `{shown}`: {e:#}", cf.field))?;
        out.insert(shown, d);
    }
    Ok(out)
}

/// A file's SHA-256, or a folder's digest over its files (see the module doc).
pub fn digest(path: &Path) -> anyhow::Result<String> {
    if !path.is_dir() {
        return Ok(hash_file(path)?.1);
    }
    let files = scan_dir_where(path, &|name| {
        !name.starts_with('.') && name != "__pycache__"
    })?;
    Ok(entries_digest(&files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_digest_follows_names_and_bytes_not_caches() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("m");
        std::fs::create_dir_all(d.join("sub/__pycache__")).unwrap();
        std::fs::write(d.join("a.py"), "x = 1\n").unwrap();
        std::fs::write(d.join("sub/b.py"), "y = 2\n").unwrap();
        let before = digest(&d).unwrap();
        std::fs::write(d.join("sub/__pycache__/b.pyc"), "cache").unwrap();
        std::fs::write(d.join(".swp"), "editor").unwrap();
        assert_eq!(digest(&d).unwrap(), before);
        std::fs::write(d.join("sub/b.py"), "y = 3\n").unwrap();
        let edited = digest(&d).unwrap();
        assert_ne!(edited, before);
        std::fs::rename(d.join("sub/b.py"), d.join("sub/c.py")).unwrap();
        assert_ne!(digest(&d).unwrap(), edited);
    }
}
