//! Fixtures shared by the integration tests: a temporary project driven through the built
//! `repro` binary, and readers of what it prints.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Runs `repro -C dir args...`; returns the exit code and stdout followed by stderr.
pub fn repro(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_repro"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", out_text(&out), err_text(&out));
    (out.status.code().unwrap_or(-1), text)
}

/// A project with a `pipeline.yaml` in a temporary directory, removed when dropped.
pub struct Proj {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// Environment variables of every command.
    env: Vec<(String, OsString)>,
}

impl Proj {
    pub fn new(yaml: &str) -> Proj {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        let p = Proj::at(&dir, tmp);
        p.write(yaml);
        p
    }

    /// The project in `dir`, which lives in `tmp`.
    pub fn at(dir: &Path, tmp: tempfile::TempDir) -> Proj {
        Proj {
            _tmp: tmp,
            dir: dir.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` for every command run in the project.
    pub fn with_env(mut self, key: &str, value: impl Into<OsString>) -> Proj {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(self.dir.join("pipeline.yaml"), yaml).unwrap();
    }

    /// Writes `text` to the project file `name`, creating its folders.
    pub fn file(&self, name: &str, text: &str) {
        let p = self.dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
        c.current_dir(&self.dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "repro {args:?} failed ({:?}):\n{}\n{}",
            o.status.code(),
            out_text(&o),
            err_text(&o)
        );
        out_text(&o)
    }

    /// Starts a command; its stdout lines arrive on the receiver.
    pub fn spawn(&self, args: &[&str]) -> (Child, Receiver<String>) {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    pub fn lock(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("pipeline.lock")).unwrap()
    }

    pub fn lock_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.lock()).unwrap()
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("results/.runs/runs")
    }

    /// Entries of `results/.runs/<sub>`.
    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.dir.join("results/.runs").join(sub))
            .map(|r| r.count())
            .unwrap_or(0)
    }

    /// The file `name` in a `command` stage's `REPRO_CHECKPOINT` folder, of any fingerprint.
    pub fn program_checkpoint(&self, name: &str) -> Option<String> {
        let rd = std::fs::read_dir(self.dir.join("results/.runs/checkpoints")).ok()?;
        rd.flatten()
            .find_map(|e| std::fs::read_to_string(e.path().join("state").join(name)).ok())
    }

    /// The largest step recorded in any probe checkpoint.
    pub fn checkpoint_step(&self) -> u64 {
        let mut best = 0;
        if let Ok(rd) = std::fs::read_dir(self.dir.join("results/.runs/checkpoints")) {
            for e in rd.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path().join("step")) {
                    best = best.max(s.trim().parse().unwrap_or(0));
                }
            }
        }
        best
    }
}

/// `fast`, then `slow` reading it: 40 probe steps of `sleep_ms` each, slow enough to be
/// caught while it runs; published under `out/slow`.
pub fn slow_pipeline(sleep_ms: u64) -> String {
    format!(
        "\
stages:
  fast:
    kind: probe
    params: {{ value: f }}
  slow:
    kind: probe
    inputs: {{ up: fast }}
    params: {{ value: s, steps: 40, sleep_ms: {sleep_ms} }}
    publish: out/slow
"
    )
}

/// Copies the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

pub fn out_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The members after `prefix` in a `repro run`'s plain output, in order.
fn listed(stdout: &str, prefix: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|r| r.split("  ").next().unwrap().to_string())
        .collect()
}

/// Members a `repro run` started, from its plain output.
pub fn ran(stdout: &str) -> Vec<String> {
    listed(stdout, "run      ")
}

/// Members a `repro run` restored, from its plain output.
pub fn restored(stdout: &str) -> Vec<String> {
    listed(stdout, "restore  ")
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line the exited process printed: the reader thread may still be draining the pipe
/// when `wait` returns, so this reads until it closes (10 s at most per line).
pub fn drain(lines: &Receiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
        out.push(l);
    }
    out
}

/// A copy of this project's `pipeline.yaml` and embedded digits in a temporary directory
/// (the directory, and the project folder inside it).
pub fn project_copy() -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(root.join("pipeline.yaml"), dir.join("pipeline.yaml")).unwrap();
    copy_dir(&root.join("data/optdigits"), &dir.join("data/optdigits"));
    (tmp, dir)
}

/// Writes a Clothing1M tree's annotation files under `root` (which must exist): the class
/// names, the noisy and clean label files (`key label` lines), and the four key lists in
/// the order noisy train, clean train, clean val, clean test.
pub fn write_clothing_annotations(root: &Path, noisy_kv: &str, clean_kv: &str, lists: [&str; 4]) {
    let classes = repro_stages::data::clothing1m::CLASSES.join("\n") + "\n";
    let [noisy_train, clean_train, clean_val, clean_test] = lists;
    for (f, text) in [
        ("category_names_eng.txt", classes.as_str()),
        ("noisy_label_kv.txt", noisy_kv),
        ("clean_label_kv.txt", clean_kv),
        ("noisy_train_key_list.txt", noisy_train),
        ("clean_train_key_list.txt", clean_train),
        ("clean_val_key_list.txt", clean_val),
        ("clean_test_key_list.txt", clean_test),
    ] {
        std::fs::write(root.join(f), text).unwrap();
    }
}
