//! Fixtures for the `tables` tests: metrics.json files written through the real `Metrics`
//! struct into a temp dir, as training stages would.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use repro_stages::metrics::{DatasetId, EpochMetrics, Metrics, NoiseId};
use repro_stages::InputRef;
use serde_json::{json, Value};

pub const DIGITS_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";

pub struct Spec<'a> {
    pub method: &'a str,
    pub dataset: &'a str,
    pub model: &'a str,
    /// (corruption, strength, trusted fraction); None = clean data.
    pub noise: Option<(&'a str, f64, f64)>,
    pub seed: u64,
    pub error: f64,
    pub extra: Vec<(&'a str, f64)>,
}

impl<'a> Spec<'a> {
    pub fn noisy(
        method: &'a str,
        dataset: &'a str,
        corruption: &'a str,
        strength: f64,
        trusted: f64,
        seed: u64,
        error: f64,
    ) -> Self {
        Spec {
            method,
            dataset,
            model: "mlp",
            noise: Some((corruption, strength, trusted)),
            seed,
            error,
            extra: vec![],
        }
    }
    pub fn clean(method: &'a str, dataset: &'a str, model: &'a str, seed: u64, error: f64) -> Self {
        Spec {
            method,
            dataset,
            model,
            noise: None,
            seed,
            error,
            extra: vec![],
        }
    }
    pub fn with(mut self, key: &'a str, v: f64) -> Self {
        self.extra.push((key, v));
        self
    }
}

pub fn metrics(s: &Spec) -> Metrics {
    Metrics {
        kind: if s.method == "mlc" {
            "train_mlc".into()
        } else {
            "train".into()
        },
        method: s.method.into(),
        dataset: DatasetId {
            name: s.dataset.into(),
            identity: format!("{}-{}", s.dataset, &DIGITS_ID[..8]),
        },
        noise: s.noise.map(|(c, st, tr)| NoiseId {
            corruption: c.into(),
            strength: st,
            trusted_fraction: tr,
            actual_noise_rate: st * 0.9,
        }),
        model: s.model.into(),
        profile: "test".into(),
        device: "cpu".into(),
        seed: s.seed,
        epochs: vec![EpochMetrics {
            epoch: 1,
            phase: "main".into(),
            train_loss: 1.0,
            test_accuracy: 1.0 - s.error,
            test_error: s.error,
            extra: BTreeMap::new(),
        }],
        final_test_accuracy: 1.0 - s.error,
        final_test_error: s.error,
        extra: s.extra.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// Writes the run's metrics.json under `root/<member>/` and returns its input ref.
pub fn write_run(root: &Path, s: &Spec) -> InputRef {
    let mut coords = BTreeMap::new();
    coords.insert("method".to_string(), json!(s.method));
    coords.insert("seed".to_string(), json!(s.seed));
    let member = match s.noise {
        Some((c, st, tr)) => {
            coords.insert("corruption".into(), json!(c));
            coords.insert("strength".into(), json!(st));
            coords.insert("trusted".into(), json!(tr));
            format!(
                "{}[{},{},{},{},{},seed={}]",
                s.method, s.dataset, s.model, c, st, tr, s.seed
            )
        }
        None => format!(
            "{}[{},{},clean,seed={}]",
            s.method, s.dataset, s.model, s.seed
        ),
    };
    let dir: PathBuf = root.join(member.replace(['[', ']', ',', '='], "_"));
    std::fs::create_dir_all(&dir).unwrap();
    metrics(s).save(&dir).unwrap();
    InputRef {
        dir,
        member,
        coords: coords
            .into_iter()
            .map(|(k, v): (String, Value)| (k, v))
            .collect(),
    }
}
