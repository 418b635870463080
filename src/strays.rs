//! Stray files: files where the cache keeps outputs that no run put there.
//!
//! - **In a run's `out/`** (`results/.runs/runs/<fp>/out`): the manifest lists every file
//!   the run wrote. A file added later is in no digest, yet a downstream stage reads the
//!   folder and could compute something else from it while the cache calls it fresh. Such
//!   a run counts as damaged ([`crate::project::FsWorld`]): it is rerun, never read, and
//!   `verify` names the file.
//! - **In a publish directory**: a publish directory belongs to the stages that publish
//!   into it; its files are copies of their runs' outputs, which the lock records. Any other
//!   file there (a table dropped in by hand, the copy of a stage since removed or moved
//!   elsewhere, the temporary file of a copy that was killed) would read as a result of the
//!   pipeline. `status` and `verify` list them and `run` removes them. Only files inside the
//!   active profile's publish directories are ever looked at: the directories other
//!   profiles publish into (`results/tiny` inside `results`) and the run store are skipped
//!   whole, and `.git*` files (`.gitignore`, `.gitkeep`) are version control's, not
//!   results. Nothing outside a publish directory is ever removed.
//!
//! What a publish directory may hold is read from the lock, not from the plan: for each
//! member of the profile that publishes, the files of its recorded run (its manifest in the
//! store, `log/` included, as [`crate::store::publish`] copies them) and the copies the
//! lock lists. A member whose recorded run is not in the store (a clone carries the lock,
//! not the store) vouches for everything under its own `log/`, which the lock does not list.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::lock::LockFile;
use crate::pipeline::Pipeline;
use crate::project::Project;
use crate::store::{Manifest, Store, LOG_DIR};

/// Files under run `fp`'s `out/` that its manifest `m` does not list, relative to `out/`.
pub fn in_run(store: &Store, fp: &str, m: &Manifest) -> Vec<String> {
    let listed: BTreeSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    let mut found = Vec::new();
    walk(&store.out_dir(fp), "", &|_| false, &mut found);
    found.retain(|f| !listed.contains(f.as_str()));
    found
}

/// Stray files in the publish directories of profile `p`, project-relative, sorted: files
/// that no member of the profile published there according to `lock`.
pub fn in_publish_dirs(project: &Project, p: &Pipeline, lock: &LockFile) -> Vec<String> {
    let mut expected: BTreeSet<String> = BTreeSet::new();
    // `rel/log/` of members whose recorded run is not in the store.
    let mut vouched: Vec<String> = Vec::new();
    for m in &p.members {
        let Some(rel) = &m.publish else { continue };
        let Some(entry) = lock.entry(&p.profile, &m.name) else {
            continue;
        };
        expected.extend(entry.published.keys().cloned());
        match project.store.manifest(&entry.fingerprint) {
            Some(man) => expected.extend(man.files.iter().map(|f| format!("{rel}/{}", f.path))),
            None => vouched.push(format!("{rel}/{LOG_DIR}")),
        }
    }
    let store = project
        .rel(project.store.root())
        .to_string_lossy()
        .into_owned();
    let mut skipped: Vec<&str> = p.other_publish.iter().map(String::as_str).collect();
    skipped.push(&store);
    let skip = |rel: &str| skipped.contains(&rel) || vouched.iter().any(|v| v == rel);
    let mut found = Vec::new();
    for root in roots(p) {
        let mut files = Vec::new();
        walk(
            &project.dir.join(&root),
            "",
            &|sub| skip(&join(&root, sub)),
            &mut files,
        );
        found.extend(
            files
                .into_iter()
                .filter(|f| !f.rsplit('/').next().is_some_and(|n| n.starts_with(".git")))
                .map(|f| join(&root, &f))
                .filter(|f| !expected.contains(f)),
        );
    }
    found.sort();
    found
}

/// Removes the stray files `paths` (project-relative, from [`in_publish_dirs`]) and the
/// folders they leave empty below their publish directory; returns how many files went.
pub fn remove(project: &Project, p: &Pipeline, paths: &[String]) -> Result<usize> {
    let roots = roots(p);
    let mut n = 0;
    for rel in paths {
        let path = project.dir.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let Some(root) = roots.iter().find(|r| rel.starts_with(&format!("{r}/"))) else {
            continue;
        };
        let root = project.dir.join(root);
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(n)
}

/// The publish directories of the profile's stages, without those inside another one.
fn roots(p: &Pipeline) -> Vec<String> {
    let all: BTreeSet<&str> = p
        .stages
        .iter()
        .filter_map(|s| s.publish.as_deref())
        .collect();
    all.iter()
        .filter(|d| {
            !all.iter()
                .any(|o| o != *d && d.starts_with(&format!("{o}/")))
        })
        .map(|d| d.to_string())
        .collect()
}

/// `a/b`, or the one of them that is not empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The files under `dir` (relative, `/`-separated), not following links, skipping the
/// folders whose relative path `skip` accepts. A missing folder has none.
fn walk(dir: &Path, rel: &str, skip: &dyn Fn(&str) -> bool, out: &mut Vec<String>) {
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let Ok(rd) = fs::read_dir(&here) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sub = join(rel, &name);
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            if !skip(&sub) {
                walk(dir, &sub, skip, out);
            }
        } else {
            out.push(sub);
        }
    }
}
