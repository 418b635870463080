//! A trusted set drawn from the test split (`inject_noise`'s `trusted_split: test`, the
//! released MLC code's meta set): the noise stage draws it from the test labels and
//! corrupts every training label; a training stage moves those examples out of the test
//! split and into the train split, trusted, so it evaluates on the rest.

mod train_common;

use std::sync::atomic::AtomicBool;

use repro_stages::data::dataset::Features;
use repro_stages::kinds::inject_noise::{make, Params};
use repro_stages::noise::TrustedSplit;
use repro_stages::training::inputs::{check_noise_fits, move_trusted_from_test};
use repro_stages::NoProgress;
use train_common::*;

fn params(v: serde_json::Value) -> Params {
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_test_split_trusted_set_is_drawn_per_class_from_the_test_labels() {
    let ds = digits();
    let p = params(serde_json::json!({
        "corruption": "mlc_pair", "strength": 0.4, "trusted_per_class": 5,
        "trusted_split": "test"
    }));
    let nl = make(&p, &ds, 1).unwrap();
    assert_eq!(nl.meta.trusted_split, TrustedSplit::Test);
    assert_eq!(nl.trusted.len(), 50);
    assert!(nl.trusted.windows(2).all(|w| w[0] < w[1]));
    for c in 0..10u32 {
        let of_c = nl
            .trusted
            .iter()
            .filter(|&&i| ds.test.y[i as usize] == c)
            .count();
        assert_eq!(of_c, 5, "class {c}");
    }
    // every training example is untrusted and carries a draw of the noise
    assert_eq!(nl.noisy.len(), ds.train.len());
    assert_eq!(nl.meta.num_untrusted, ds.train.len());
    assert_eq!(nl.meta.num_trusted, 50);
    assert!(
        (nl.meta.actual_noise_rate - 0.4).abs() < 0.02,
        "{:?}",
        nl.meta
    );
    // the same seed draws the same set; the train-split default draws from train
    assert_eq!(make(&p, &ds, 1).unwrap(), nl);
    let from_train = make(
        &params(serde_json::json!({
            "corruption": "mlc_pair", "strength": 0.4, "trusted_per_class": 5
        })),
        &ds,
        1,
    )
    .unwrap();
    assert_eq!(from_train.meta.trusted_split, TrustedSplit::Train);
    assert_eq!(from_train.meta.num_untrusted, ds.train.len() - 50);
    // a file written with the default split does not name it, so older outputs keep
    // their bytes
    let dir = tempfile::tempdir().unwrap();
    from_train.save(dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("noise.json")).unwrap();
    assert!(!json.contains("trusted_split"), "{json}");
}

#[test]
fn training_moves_the_test_split_trusted_set_into_train_and_tests_on_the_rest() {
    let ds = digits();
    let p = params(serde_json::json!({
        "corruption": "mlc_pair", "strength": 0.2, "trusted_per_class": 3,
        "trusted_split": "test"
    }));
    let nl = make(&p, &ds, 2).unwrap();
    // a stage that does not move the set refuses it
    let e = check_noise_fits(&nl, &ds).unwrap_err().to_string();
    assert!(e.contains("test split"), "{e}");
    let (n, t, d) = (ds.train.len(), ds.test.len(), ds.example_len());
    let picked = nl.trusted.clone();
    let (moved, mnl) = move_trusted_from_test(ds.clone(), nl.clone()).unwrap();
    assert_eq!(moved.train.len(), n + 30);
    assert_eq!(moved.test.len(), t - 30);
    assert_eq!(
        (moved.meta.train_len, moved.meta.test_len),
        (n + 30, t - 30)
    );
    let (Features::U8(tr), Features::U8(te_old), Features::U8(te_new)) =
        (&moved.train.x, &ds.test.x, &moved.test.x)
    else {
        panic!("digits are pixels")
    };
    for (j, &i) in picked.iter().enumerate() {
        let i = i as usize;
        assert_eq!(
            tr[(n + j) * d..(n + j + 1) * d],
            te_old[i * d..(i + 1) * d],
            "moved example {j}"
        );
        assert_eq!(moved.train.y[n + j], ds.test.y[i]);
        assert_eq!(mnl.noisy[n + j], ds.test.y[i], "a trusted label is clean");
    }
    // the test split keeps the others, in order
    let rest: Vec<usize> = (0..t).filter(|i| !picked.contains(&(*i as u32))).collect();
    for (j, &i) in rest.iter().enumerate() {
        assert_eq!(te_new[j * d..(j + 1) * d], te_old[i * d..(i + 1) * d]);
    }
    assert_eq!(mnl.trusted, (n as u32..(n + 30) as u32).collect::<Vec<_>>());
    assert_eq!(mnl.noisy[..n], nl.noisy[..]);
    check_noise_fits(&mnl, &moved).unwrap();
    // a train-split set passes through untouched
    let plain = noisy(&ds, "flip", 0.2, 0.05, 3);
    let (same_ds, same_nl) = move_trusted_from_test(ds.clone(), plain.clone()).unwrap();
    assert!(same_ds == ds && same_nl == plain);
    // indices that do not fit the test split are refused
    let mut bad = nl.clone();
    bad.trusted.push(t as u32);
    let e = format!("{:#}", move_trusted_from_test(ds.clone(), bad).unwrap_err());
    assert!(e.contains("sorted, distinct and below"), "{e}");

    // an MLC run that uses the moved set as its meta set only
    use repro_stages::kinds::train_mlc;
    let p: train_mlc::Params = serde_json::from_value(serde_json::json!({
        "variant": "official_code", "warmup_epochs": 3, "epochs": 1, "train_on_trusted": false,
        "warmup_optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
        "optimizer": {"kind": "sgd", "lr": 1.0e-4, "momentum": 0.9},
        "model": {"arch": "mlp", "hidden": [32]}
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 3, &NoProgress, &stop);
    let m = train_mlc::train(&p, &ctx, &moved, &mnl, None).unwrap();
    assert!(m.final_test_accuracy > 0.6, "{}", m.final_test_accuracy);
}

#[test]
fn a_test_split_trusted_set_is_refused_where_it_cannot_be_drawn() {
    let ds = digits();
    // more per class than the test split holds
    let p = params(serde_json::json!({
        "corruption": "uniform", "strength": 0.2, "trusted_per_class": 1000,
        "trusted_split": "test"
    }));
    let e = format!("{:#}", make(&p, &ds, 1).unwrap_err());
    assert!(e.contains("test split"), "{e}");
    // real noise has its own trusted set
    use repro_stages::stage_kind::StageKind;
    let p = params(serde_json::json!({"corruption": "real", "trusted_split": "test"}));
    assert!(p.check().unwrap_err().starts_with("field `trusted_split`"));
}
