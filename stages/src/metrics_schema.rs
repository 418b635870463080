//! The check `tables` makes of every `metrics.json` it reads before using it: the rules of
//! `docs/metrics.schema.json` (the JSON Schema outside programs, such as a `command`
//! stage's, write against; tests validate real outputs with it), so a file written by
//! hand fails with the file and the field named rather than as a parse error deep in a
//! table.
//!
//! The rules: an object with exactly the fields of [`crate::metrics::Metrics`]; `kind`,
//! `method`, `model`, `profile`, `device` non-empty strings; `seed` a non-negative
//! integer; `dataset` `{name, identity}` strings; `noise` null or `{corruption, strength,
//! trusted_fraction, actual_noise_rate}` (numbers in [0, 1]); `epochs` a list of
//! `{epoch ≥ 1, phase, train_loss, test_accuracy, test_error, extra?}`; the final and
//! per-epoch accuracy and error numbers in [0, 1]; `extra` a map of numbers.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::metrics::FILE;

/// Checks `dir/metrics.json`; the error names the file and the field (`epochs[2].phase`).
pub fn check_dir(dir: &Path) -> Result<()> {
    let path = dir.join(FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    if let Err((field, msg)) = check(&v) {
        bail!(
            "{} does not match docs/metrics.schema.json: field `{field}`: {msg}",
            path.display()
        );
    }
    Ok(())
}

type Failure = (String, String);

/// Checks a parsed `metrics.json`; `Err((field, message))`.
pub fn check(v: &Value) -> Result<(), Failure> {
    let top = object(v, "")?;
    only(
        top,
        "",
        &[
            "kind",
            "method",
            "dataset",
            "noise",
            "model",
            "profile",
            "device",
            "seed",
            "epochs",
            "final_test_accuracy",
            "final_test_error",
            "extra",
        ],
        &["noise", "extra"],
    )?;
    for f in ["kind", "method", "model", "profile", "device"] {
        text(&top[f], f, true)?;
    }
    if !top["seed"].is_u64() {
        return Err(("seed".into(), "must be a non-negative integer".into()));
    }
    let ds = object(&top["dataset"], "dataset")?;
    only(ds, "dataset", &["name", "identity"], &[])?;
    text(&ds["name"], "dataset.name", true)?;
    text(&ds["identity"], "dataset.identity", false)?;
    match top.get("noise") {
        None | Some(Value::Null) => {}
        Some(n) => {
            let fields = ["strength", "trusted_fraction", "actual_noise_rate"];
            let no = object(n, "noise")?;
            only(
                no,
                "noise",
                &["corruption", fields[0], fields[1], fields[2]],
                &[],
            )?;
            text(&no["corruption"], "noise.corruption", true)?;
            for f in fields {
                unit(&no[f], &format!("noise.{f}"))?;
            }
        }
    }
    let Value::Array(epochs) = &top["epochs"] else {
        return Err(("epochs".into(), "must be a list".into()));
    };
    for (i, e) in epochs.iter().enumerate() {
        epoch(e, &format!("epochs[{i}]"))?;
    }
    unit(&top["final_test_accuracy"], "final_test_accuracy")?;
    unit(&top["final_test_error"], "final_test_error")?;
    extra(top.get("extra"), "extra")
}

fn epoch(e: &Value, at: &str) -> Result<(), Failure> {
    let o = object(e, at)?;
    let names = [
        "epoch",
        "phase",
        "train_loss",
        "test_accuracy",
        "test_error",
        "extra",
    ];
    only(o, at, &names, &["extra"])?;
    if o["epoch"].as_u64().is_none_or(|n| n < 1) {
        return Err((format!("{at}.epoch"), "must be an integer ≥ 1".into()));
    }
    text(&o["phase"], &format!("{at}.phase"), true)?;
    number(&o["train_loss"], &format!("{at}.train_loss"))?;
    unit(&o["test_accuracy"], &format!("{at}.test_accuracy"))?;
    unit(&o["test_error"], &format!("{at}.test_error"))?;
    extra(o.get("extra"), &format!("{at}.extra"))
}

fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Failure> {
    v.as_object().ok_or_else(|| {
        let at = if at.is_empty() { "(top level)" } else { at };
        (at.to_string(), "must be an object".to_string())
    })
}

/// Every field of `names` present except `optional` ones, and no other.
fn only(
    o: &Map<String, Value>,
    at: &str,
    names: &[&str],
    optional: &[&str],
) -> Result<(), Failure> {
    if let Some(k) = o.keys().find(|k| !names.contains(&k.as_str())) {
        return Err((field(at, k), "unknown field".into()));
    }
    match names
        .iter()
        .find(|n| !optional.contains(n) && !o.contains_key(**n))
    {
        Some(n) => Err((field(at, n), "missing".into())),
        None => Ok(()),
    }
}

fn text(v: &Value, at: &str, non_empty: bool) -> Result<(), Failure> {
    match v.as_str() {
        Some(s) if !non_empty || !s.is_empty() => Ok(()),
        Some(_) => Err((at.into(), "must not be empty".into())),
        None => Err((at.into(), "must be a string".into())),
    }
}

fn number(v: &Value, at: &str) -> Result<f64, Failure> {
    v.as_f64()
        .ok_or_else(|| (at.to_string(), "must be a number".to_string()))
}

fn unit(v: &Value, at: &str) -> Result<(), Failure> {
    let x = number(v, at)?;
    if (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err((at.into(), format!("{x} is outside [0, 1]")))
    }
}

fn extra(v: Option<&Value>, at: &str) -> Result<(), Failure> {
    let Some(v) = v else { return Ok(()) };
    for (k, x) in object(v, at)? {
        number(x, &format!("{at}.{k}"))?;
    }
    Ok(())
}
