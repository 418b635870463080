//! A learning rate no run means (1e40, ∞ once read as f32; anything above 10⁶; a positive
//! rate below f32's smallest normal number, which rounds to zero or loses its precision) is
//! refused when the pipeline is loaded, with the file, the stage and the line, before
//! anything runs, as `.inf` is.

use std::process::Command;

#[test]
fn absurd_learning_rate_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    for lr in ["1.0e40", "2.0e6", ".inf", "1.0e-46", "1.0e-39"] {
        let yaml = format!(
            "stages:\n  train_ce:\n    kind: train\n    params:\n      method: ce\n      optimizer: {{ kind: adam, lr: {lr} }}\n"
        );
        std::fs::write(tmp.path().join("pipeline.yaml"), &yaml).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_repro"))
            .current_dir(tmp.path())
            .args(["status"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "lr {lr} accepted:\n{err}");
        assert!(
            err.contains("pipeline.yaml") && err.contains("train_ce"),
            "lr {lr}: {err}"
        );
        if lr != ".inf" {
            assert!(err.contains("learning rate"), "lr {lr}: {err}");
        }
        assert!(
            !tmp.path().join("results").exists(),
            "lr {lr}: something ran"
        );
    }
}
