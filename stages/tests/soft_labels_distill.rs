//! Learned soft labels and distillation: the label hypergradient against an independent
//! float64 value, Hinton's loss against literal values, and both label granularities
//! trained end to end on a slice of the embedded digits.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::kinds::distill::{hinton_loss, tempered_softmax};
use repro_stages::kinds::train_soft_labels::{
    self, init_scale_for_smoothing, initial_scale, label_hypergradient, label_schedule, MetaSet,
};
use repro_stages::nn::hypergrad::LookAhead;
use repro_stages::nn::model::{Input, InputKind, ModelSpec, Network};
use repro_stages::{NoProgress, StageContext};

mod reference;

fn mat(rows: &[Vec<f64>]) -> Input {
    let d = rows[0].len();
    Input::Dense(Cpu::default().tensor_from_vec(
        rows.iter().flatten().map(|&v| v as f32).collect(),
        (rows.len(), d),
    ))
}

#[test]
fn label_hypergradient_matches_float64_central_differences() {
    let (k, d, b, m, tau, alpha) = (4usize, 5usize, 10usize, 7usize, 1.5f64, 0.5f32);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut draw = |n: usize| -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| (0..d).map(|_| rng.random_range(-1.5..1.5)).collect())
            .collect()
    };
    let xs = draw(b);
    let mx = draw(m);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let my: Vec<usize> = (0..m).map(|_| rng.random_range(0..k)).collect();
    let label_logits: Vec<f64> = (0..b * k).map(|_| rng.random_range(-2.0..2.0)).collect();

    let spec = ModelSpec::Mlp {
        hidden: vec![],
        dropout: 0.0,
        embed_dim: None,
        weight_init: Default::default(),
    };
    let (net, params, mut buffers) = Network::new(&spec, &InputKind::Dense(vec![d]), k, 5).unwrap();
    let host = params.to_host();
    let lin = reference::Linear {
        k,
        d,
        w: host[0].iter().map(|&v| v as f64).collect(),
        b: host[1].iter().map(|&v| v as f64).collect(),
    };
    let exact = reference::hypergrad_labels(
        &lin,
        &label_logits,
        tau,
        alpha as f64,
        &xs,
        (&mx, &my),
        1e-5,
    );

    let targets: Vec<f32> = label_logits
        .chunks(k)
        .flat_map(|r| reference::softmax(r, tau))
        .map(|v| v as f32)
        .collect();
    let trusted = vec![false; b];
    let meta_labels: Vec<u32> = my.iter().map(|&y| y as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (_, fd) = label_hypergradient(
        &net,
        &params,
        &mut buffers,
        (mat(&xs), &targets, &trusted),
        tau,
        (mat(&mx), &meta_labels),
        LookAhead {
            alpha,
            eps0: 0.01,
            mask: None,
        },
        &mut rng,
    )
    .unwrap();
    let num: f64 = fd
        .iter()
        .zip(&exact)
        .map(|(a, e)| (*a as f64 - e).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = exact.iter().map(|e| e * e).sum::<f64>().sqrt();
    assert!(
        den > 1e-4,
        "the reference hypergradient is degenerate: {den}"
    );
    assert!(num / den < 1e-3, "relative error {:.3e}", num / den);
}

#[test]
fn hinton_loss_matches_literal_values() {
    // Literal values computed by hand-written float64 Python (math module only):
    // loss = 1/B Σ_b [(1 − α) CE(z_s, y) + α τ² KL(softmax(z_t/τ) ‖ softmax(z_s/τ))],
    // ∂/∂z_s = [(1 − α)(softmax(z_s) − onehot(y)) + α τ (softmax(z_s/τ) − softmax(z_t/τ))] / B.
    let dev = Cpu::default();
    let zs = dev.tensor_from_vec(vec![1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0], (2usize, 3usize));
    let zt = [2.0f32, 1.0, 0.0, 0.5, 0.5, 2.5];
    let p = tempered_softmax(&zt, 3, 2.0);
    let loss = hinton_loss(zs.leaky_trace(), &p, &[1, 2], 2.0, 0.9);
    assert!(
        (loss.array() - 0.345_927_23).abs() < 1e-6,
        "loss {}",
        loss.array()
    );
    let g = loss.backward().get(&zs).as_vec();
    let want = [
        -0.181_690_79,
        0.137_872_13,
        0.043_818_66,
        -0.040_590_31,
        -0.100_228_73,
        0.140_819_03,
    ];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "gradient {g:?} vs {want:?}");
    }
}

#[test]
fn init_scale_reproduces_label_smoothing() {
    // softmax(c·onehot) over 10 classes puts 1 − ε + ε/K on the label for ε = 0.1.
    let c = init_scale_for_smoothing(0.1, 10);
    assert!((c - 4.5109).abs() < 1e-4, "{c}");
    let top = c.exp() / (c.exp() + 9.0);
    assert!((top - 0.91).abs() < 1e-12);
}

#[test]
fn initial_labels_are_the_smoothing_at_any_temperature() {
    for tau in [0.5, 1.0, 2.0] {
        let p: train_soft_labels::Params =
            serde_json::from_value(serde_json::json!({ "temperature": tau })).unwrap();
        let c = initial_scale(&p, 10);
        let top = (c / tau).exp() / ((c / tau).exp() + 9.0);
        assert!((top - 0.91).abs() < 1e-12, "τ = {tau}: top {top}");
    }
    let p: train_soft_labels::Params =
        serde_json::from_value(serde_json::json!({ "temperature": 2.0, "init_scale": 3.0 }))
            .unwrap();
    assert_eq!(initial_scale(&p, 10), 3.0);
}

#[test]
fn label_defaults_depend_on_granularity_and_meta_set() {
    let p =
        |v: serde_json::Value| -> train_soft_labels::Params { serde_json::from_value(v).unwrap() };
    let pe = p(serde_json::json!({}));
    assert_eq!(label_schedule(&pe, MetaSet::Trusted), (0.5, 10));
    assert_eq!(label_schedule(&pe, MetaSet::NextBatch), (0.1, 0));
    let pc = p(serde_json::json!({ "granularity": "per_class" }));
    assert_eq!(label_schedule(&pc, MetaSet::Trusted), (0.02, 0));
    assert_eq!(label_schedule(&pc, MetaSet::NextBatch), (0.02, 0));
    let set = p(serde_json::json!({ "label_lr": 0.3, "warmup_epochs": 2 }));
    assert_eq!(label_schedule(&set, MetaSet::Trusted), (0.3, 2));
}

/// The first `n` digits of the embedded dataset, split 4:1.
fn digits(n: usize) -> repro_stages::data::dataset::Dataset {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/optdigits/digits.csv.gz");
    let full = repro_stages::data::digits::read_file(&path, 500, 0).unwrap();
    let mut ds = full.clone();
    let keep = |s: &repro_stages::data::dataset::Split, m: usize| {
        let x = match &s.x {
            repro_stages::data::dataset::Features::U8(v) => {
                repro_stages::data::dataset::Features::U8(v[..m * 64].to_vec())
            }
            _ => unreachable!(),
        };
        repro_stages::data::dataset::Split {
            x,
            y: s.y[..m].to_vec(),
            coarse: None,
        }
    };
    ds.train = keep(&full.train, n);
    ds.test = keep(&full.test, n / 4);
    ds.meta.train_len = n;
    ds.meta.test_len = n / 4;
    ds
}

#[test]
fn both_label_granularities_train_and_report() {
    let ds = digits(200);
    let stop = AtomicBool::new(false);
    for g in ["per_example", "per_class"] {
        let dir = tempfile::tempdir().unwrap();
        let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&ckpt).unwrap();
        let ctx = StageContext {
            member: format!("soft[{g}]"),
            profile: "test".into(),
            seed: 3,
            coords: BTreeMap::new(),
            inputs: BTreeMap::new(),
            out_dir: out.clone(),
            checkpoint_dir: ckpt,
            project_dir: dir.path().into(),
            download_dir: dir.path().join("dl"),
            threads: 1,
            progress: &NoProgress,
            stop: &stop,
        };
        let params: train_soft_labels::Params = serde_json::from_value(
            serde_json::json!({"granularity": g, "epochs": 6, "meta_set": "next_batch"}),
        )
        .unwrap();
        let m = train_soft_labels::train(&params, &ctx, &ds, None).unwrap();
        assert_eq!(
            m.method,
            if g == "per_class" {
                "soft_labels_per_class"
            } else {
                "soft_labels"
            }
        );
        assert_eq!(m.epochs.len(), 6);
        assert!(
            m.final_test_accuracy > 0.3,
            "{g}: accuracy {}",
            m.final_test_accuracy
        );
        assert!(m.epochs.iter().all(|e| e.extra.contains_key("meta_loss")));
        let sim = repro_stages::noise::MatrixFile::load(&out.join("class_similarity.json"))
            .unwrap()
            .to_matrix()
            .unwrap();
        for i in 0..10 {
            let s: f64 = sim.row(i).iter().sum();
            assert!(
                (s - 1.0).abs() < 1e-5,
                "{g}: similarity row {i} sums to {s}"
            );
        }
        // The labels moved away from their initial label smoothing.
        let (t, _) =
            repro_stages::nn::params::read_safetensors(&out.join("labels.safetensors")).unwrap();
        let rows = if g == "per_class" { 10 } else { 200 };
        assert_eq!(t["soft_labels"].shape, vec![rows, 10]);
        let c = init_scale_for_smoothing(0.1, 10) as f32;
        let moved = t["logits"]
            .data
            .iter()
            .filter(|&&v| v != 0.0 && v != c)
            .count();
        assert!(moved > 0, "{g}: no label logit changed");
    }
}

/// Under 60 % flip noise with a trusted meta set, the default label steps correct many of
/// the corrupted labels, and lift test accuracy over training on the noisy labels; the
/// first defaults (β = 0.1, no warm-up) could not change any label's arg-max.
#[test]
fn default_label_steps_correct_flipped_labels() {
    use repro_stages::noise::{inject, Corruption, Trusted};
    let ds = digits(800);
    let nl = inject(
        &ds.train.y,
        None,
        10,
        Corruption::Flip,
        0.6,
        Trusted::Fraction(0.05),
        1,
        ("digits", ds.meta.identity.as_str()),
    )
    .unwrap();
    assert!(nl.meta.actual_noise_rate > 0.5);
    let stop = AtomicBool::new(false);
    let run = |extra: serde_json::Value| {
        let dir = tempfile::tempdir().unwrap();
        let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&ckpt).unwrap();
        let ctx = StageContext {
            member: "soft[flip]".into(),
            profile: "test".into(),
            seed: 1,
            coords: BTreeMap::new(),
            inputs: BTreeMap::new(),
            out_dir: out,
            checkpoint_dir: ckpt,
            project_dir: dir.path().into(),
            download_dir: dir.path().join("dl"),
            threads: 1,
            progress: &NoProgress,
            stop: &stop,
        };
        let mut v = serde_json::json!({ "epochs": 10 });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let params: train_soft_labels::Params = serde_json::from_value(v).unwrap();
        let m = train_soft_labels::train(&params, &ctx, &ds, Some(&nl)).unwrap();
        (m.extra["label_correction_rate"], m.final_test_accuracy)
    };
    let (rate, acc) = run(serde_json::json!({}));
    let (old_rate, old_acc) = run(serde_json::json!({ "label_lr": 0.1, "warmup_epochs": 0 }));
    assert_eq!(old_rate, 0.0, "β = 0.1 changed an arg-max");
    assert!(rate > 0.4, "correction rate {rate}");
    assert!(acc > old_acc + 0.05, "accuracy {acc} vs {old_acc}");
}
