//! The programs a stage's params name to run ([`Kind::programs`], a `command` stage's
//! `run`), found when the pipeline loads: a program that does not exist would otherwise
//! fail its stage only once everything upstream of it has run.
//!
//! A program is found as the stage will start it: a path of several components
//! (`examples/prog.py`, `./prog`) is a project file, an absolute path is itself, and a bare
//! name (`python3`) is looked up on `PATH` (the stage inherits this process's
//! environment). It must be a regular file (or a link to one) with an execute bit; a
//! script without one is named with the way to run it through its interpreter.

use std::path::{Path, PathBuf};

use repro_stages::Kind;
use serde_json::Value;

/// Checks every program `params` of `kind` name, for a project at `project`. `Err` is a
/// message in [`Kind::validate`]'s form (`field `run[0]`: ...`).
pub fn check(kind: Kind, params: &Value, project: &Path) -> Result<(), String> {
    let path_var = std::env::var_os("PATH");
    for (field, program) in kind.programs(params) {
        find(&program, project, path_var.as_deref())
            .map_err(|m| format!("field `{field}`: {m}"))?;
    }
    Ok(())
}

/// Where `program` is, as a stage started in `project` with `PATH` = `path_var` finds it,
/// or why it cannot be run.
pub fn find(
    program: &str,
    project: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, String> {
    let p = Path::new(program);
    if p.is_relative() && p.components().count() == 1 {
        return on_path(program, path_var, Path::new("")).ok_or_else(|| {
                format!("`{program}` is no program on PATH (nor is it a path: write `./{program}` for a project file)")
            });
    }
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        project.join(p)
    };
    let where_ = if p.is_absolute() {
        String::new()
    } else {
        format!(" in the project ({})", project.display())
    };
    match std::fs::metadata(&full) {
        Err(_) => Err(format!("`{program}` does not exist{where_}")),
        Ok(m) if !m.is_file() => Err(format!("`{program}` is not a file{where_}")),
        Ok(m) if !runnable(&m) => Err(format!(
            "`{program}` is not executable: `chmod +x {program}`, or run it through its \
             interpreter (`run: [python3, {program}]`)"
        )),
        Ok(_) => Ok(full),
    }
}

/// The first `dir/name` that is [`runnable`], for the directories of `path_var` (a `PATH`
/// value) in order, a relative one taken against `base`.
pub fn on_path(name: &str, path_var: Option<&std::ffi::OsStr>, base: &Path) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = path_var
        .map(|v| std::env::split_paths(v).collect())
        .unwrap_or_default();
    dirs.iter()
        .map(|d| base.join(d).join(name))
        .find(|c| std::fs::metadata(c).is_ok_and(|m| runnable(&m)))
}

/// A regular file (or a link to one) with an execute bit.
pub fn runnable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.is_file() && m.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn programs_are_found_as_a_stage_starts_them() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(t.path().join("script.py"), "print(1)\n").unwrap();
        let path = std::ffi::OsString::from(bin.as_os_str());
        let find = |p: &str| find(p, t.path(), Some(&path));
        assert_eq!(find("tool").unwrap(), tool);
        assert_eq!(find("bin/tool").unwrap(), tool);
        assert_eq!(find(tool.to_str().unwrap()).unwrap(), tool);
        assert!(find("nothing").unwrap_err().contains("no program on PATH"));
        assert!(find("bin/nothing")
            .unwrap_err()
            .contains("does not exist in the project"));
        assert!(find("./bin").unwrap_err().contains("is not a file"));
        let e = find("./script.py").unwrap_err();
        assert!(
            e.contains("is not executable") && e.contains("[python3, ./script.py]"),
            "{e}"
        );
        // A bare name is never a project file: the stage would not find it there.
        assert!(find("script.py")
            .unwrap_err()
            .contains("no program on PATH"));
    }
}
