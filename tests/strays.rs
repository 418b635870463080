//! The cache sees what it is told: a file no run wrote, in a run's `out/` or in a publish
//! directory, and a lock entry that disagrees with the store are seen by `status` and
//! `verify` and set right by `run`. Each rule runs the built `repro` binary on `probe`
//! stages in a temporary project.

mod common;

use common::{err_text, out_text, ran, restored, Proj};

const PUBLISHED: &str = "\
stages:
  a:
    kind: probe
    params: { value: x }
    publish: out/a
    profiles: [default]
  b:
    kind: probe
    inputs: { up: a }
    params: { value: b }
    profiles: [default]
  small_only:
    kind: probe
    profiles: [small]
    publish: out/a/small
profiles:
  small: {}
";

#[test]
fn stray_file_in_a_publish_directory_is_listed_and_removed_by_run() {
    let p = Proj::new(PUBLISHED);
    p.ok(&["run"]);
    p.ok(&["run", "-p", "small"]);
    p.file("out/a/fake_table.csv", "made up\n");
    p.file("out/a/deeper/fake.txt", "made up\n");
    // Not this profile's, or not results: left alone.
    p.file("out/a/small/extra.txt", "the small profile's folder\n");
    p.file("out/notes.txt", "outside every publish directory\n");
    p.file("out/a/.gitignore", "*.tmp\n");

    let o = p.run(&["status"]);
    let text = out_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("stray    out/a/fake_table.csv  (published by no stage of profile `default`: `repro run` removes it)"),
        "{text}"
    );
    assert!(text.contains("stray    out/a/deeper/fake.txt"), "{text}");
    assert!(
        text.contains("2 members: 2 fresh; 2 stray file(s)"),
        "{text}"
    );
    assert!(!text.contains("small/extra.txt"), "{text}");
    assert!(
        !text.contains("notes.txt") && !text.contains(".gitignore"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&out_text(&p.run(&["status", "--json"]))).unwrap();
    assert_eq!(json["all_fresh"], false);
    assert_eq!(json["stray"].as_array().unwrap().len(), 2);

    let o = p.run(&["verify"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("MISMATCH out/a/fake_table.csv: in a publish directory of profile `default`, but published by no stage"),
        "{err}"
    );
    // Each profile's own: the small profile's folder is its stray file, not default's.
    assert!(
        err.contains("MISMATCH out/a/small/extra.txt: in a publish directory of profile `small`"),
        "{err}"
    );
    assert!(
        !err.contains("extra.txt: in a publish directory of profile `default`"),
        "{err}"
    );

    let s = p.ok(&["run"]);
    assert!(ran(&s).is_empty(), "{s}");
    assert!(
        s.contains("removed  out/a/fake_table.csv  (a stray file: published by no stage of profile `default`)"),
        "{s}"
    );
    assert!(!p.dir.join("out/a/fake_table.csv").exists());
    assert!(
        !p.dir.join("out/a/deeper").exists(),
        "the emptied folder stays"
    );
    for kept in [
        "out/a/value.txt",
        "out/a/small/extra.txt",
        "out/notes.txt",
        "out/a/.gitignore",
    ] {
        assert!(p.dir.join(kept).exists(), "{kept} was removed");
    }
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    p.ok(&["verify", "-p", "default"]);
    // The other profile sees its own stray file.
    let o = p.run(&["status", "-p", "small"]);
    assert!(
        out_text(&o).contains("stray    out/a/small/extra.txt"),
        "{}",
        out_text(&o)
    );
}

#[test]
fn stray_file_in_a_run_output_fails_verify_and_reruns_the_member() {
    let p = Proj::new(PUBLISHED);
    p.ok(&["run"]);
    let lock = p.lock_json();
    let fp = lock["profiles"]["default"]["a"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let extra = p.runs_dir().join(&fp).join("out/extra.txt");
    std::fs::write(&extra, "read by whoever lists the folder\n").unwrap();

    let o = p.run(&["status"]);
    let text = out_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("run      a  (run: outputs missing or changed in the store)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "stray    results/.runs/runs/{fp}/out/extra.txt  (not in the manifest of the run of a: it reruns)"
        )),
        "{text}"
    );
    let o = p.run(&["verify"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out/extra.txt: not in the run's manifest (a file added after the run)"),
        "{err}"
    );
    // The run is never read as an input: it reruns, and the store holds what it wrote.
    let s = p.ok(&["run"]);
    assert_eq!(ran(&s), ["a"], "{s}");
    assert!(!extra.exists());
    p.ok(&["verify"]);
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
}

#[test]
fn lock_entry_that_disagrees_with_the_store_is_rewritten_by_run() {
    let p = Proj::new(PUBLISHED);
    p.ok(&["run"]);
    let good = p.lock();
    for (field, bad) in [
        ("digest", "0".repeat(64)),
        ("published", "{\"out/a/value.txt\": \"00\"}".to_string()),
    ] {
        let mut lock = p.lock_json();
        lock["profiles"]["default"]["a"][field] = serde_json::from_str(&format!(
            "{}",
            if field == "digest" {
                format!("\"{bad}\"")
            } else {
                bad.clone()
            }
        ))
        .unwrap();
        std::fs::write(
            p.dir.join("pipeline.lock"),
            serde_json::to_string_pretty(&lock).unwrap() + "\n",
        )
        .unwrap();
        let o = p.run(&["verify"]);
        assert_eq!(o.status.code(), Some(1), "{field}: {}", err_text(&o));
        let o = p.run(&["status"]);
        let text = out_text(&o);
        assert_eq!(o.status.code(), Some(1), "{field}: {text}");
        assert!(
            text.contains("restore  a  (restore: the lock's digest or published hashes differ from the store's)"),
            "{field}: {text}"
        );
        let s = p.ok(&["run"]);
        assert_eq!(restored(&s), ["a"], "{field}: {s}");
        assert!(ran(&s).is_empty(), "{field}: {s}");
        assert_eq!(
            p.lock(),
            good,
            "{field}: the lock was not rewritten as it was"
        );
        p.ok(&["verify"]);
        assert_eq!(p.run(&["status"]).status.code(), Some(0));
    }
}

#[test]
fn the_project_itself_is_no_publish_directory() {
    for dir in [".", "./"] {
        let p = Proj::new(&PUBLISHED.replace("publish: out/a\n", &format!("publish: \"{dir}\"\n")));
        let o = p.run(&["status"]);
        let err = err_text(&o);
        assert_eq!(o.status.code(), Some(2), "{dir}: {err}");
        assert!(
            err.contains("pipeline.yaml:5: stage `a`, field `publish`: publish directory"),
            "{dir}: {err}"
        );
        assert!(err.contains("(not the project itself)"), "{dir}: {err}");
    }
}
