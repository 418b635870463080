//! Divergence fails the stage: a loss that explodes while staying finite stops the run
//! with `training diverged` and nothing is written to the output directory, for every
//! training kind; a learning rate no run means is refused when the params are read (the
//! check the pipeline loader runs on every stage).

mod train_common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use repro_stages::kinds::{distill, train, train_mlc, train_soft_labels};
use repro_stages::{InputRef, Kind, NoProgress, StageContext};
use train_common::*;

/// Adam at lr 10³, which params accept: every step moves each weight by about 10³, so
/// the logits, and the loss, grow by orders of magnitude while staying finite in f32
/// (epoch means of 10¹⁰-10¹² on the digits).
fn exploding_optimizer() -> serde_json::Value {
    serde_json::json!({"kind": "adam", "lr": 1.0e3})
}

fn assert_diverges(
    label: &str,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    run: impl Fn(&StageContext) -> anyhow::Result<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let mut ctx = context(dir.path(), 3, &NoProgress, &stop);
    ctx.inputs = inputs.clone();
    let e = format!("{:#}", run(&ctx).expect_err(label));
    // the rule on the epoch's mean (finite) loss, not the NaN check of a batch
    assert!(
        e.contains("training diverged: mean loss") && e.contains("epoch 1"),
        "{label}: {e}"
    );
    assert!(
        output_files(&ctx.out_dir).is_empty(),
        "{label}: a diverged run wrote outputs"
    );
}

#[test]
fn exploding_finite_loss_fails_the_stage() {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 5);
    let none = BTreeMap::new();
    let opt = exploding_optimizer();

    let p: train::Params =
        serde_json::from_value(serde_json::json!({"method": "ce", "epochs": 2, "optimizer": opt}))
            .unwrap();
    assert_diverges("ce", &none, |ctx| {
        train::train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
    });

    for variant in ["textbook", "official_code"] {
        let p: train_mlc::Params = serde_json::from_value(
            serde_json::json!({"variant": variant, "epochs": 2, "optimizer": opt}),
        )
        .unwrap();
        assert_diverges(&format!("train_mlc {variant}"), &none, |ctx| {
            train_mlc::train(&p, ctx, &ds, &nl, None)?.save(&ctx.out_dir)
        });
    }

    let p: train_soft_labels::Params = serde_json::from_value(
        serde_json::json!({"epochs": 2, "warmup_epochs": 0, "optimizer": opt}),
    )
    .unwrap();
    assert_diverges("train_soft_labels", &none, |ctx| {
        train_soft_labels::train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
    });

    let base = tempfile::tempdir().unwrap();
    let inputs = distill_inputs(base.path(), &ds);
    let p: distill::Params =
        serde_json::from_value(serde_json::json!({"epochs": 2, "optimizer": opt})).unwrap();
    assert_diverges("distill", &inputs, |ctx| distill::run(&p, ctx));
}

/// The meta-parameters' divergence rules: a meta learning rate off by orders of magnitude
/// rewrites T at every step, or a label at its first, while every loss stays finite
/// (`t_lr: 1e6` used to finish near chance and publish). The run stops within the first
/// epoch, and nothing is written.
fn assert_meta_step_diverges(
    label: &str,
    rule: &str,
    lr_field: &str,
    run: impl Fn(&StageContext) -> anyhow::Result<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 3, &NoProgress, &stop);
    let e = format!("{:#}", run(&ctx).expect_err(label));
    assert!(
        e.contains(&format!("training diverged: {rule}"))
            && e.contains(&format!("`{lr_field}` is too large"))
            && e.contains("epoch 1"),
        "{label}: {e}"
    );
    assert!(
        output_files(&ctx.out_dir).is_empty(),
        "{label}: a diverged run wrote outputs"
    );
}

#[test]
fn meta_step_that_rewrites_t_or_the_labels_fails_the_stage() {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 5);
    for variant in ["textbook", "official_code"] {
        let p: train_mlc::Params = serde_json::from_value(
            serde_json::json!({"variant": variant, "epochs": 1, "t_lr": 1.0e6}),
        )
        .unwrap();
        let rule = "each meta step changed the rows of T by a mean L1 of";
        assert_meta_step_diverges(&format!("train_mlc {variant}"), rule, "t_lr", |ctx| {
            train_mlc::train(&p, ctx, &ds, &nl, None)?.save(&ctx.out_dir)
        });
    }
    let p: train_soft_labels::Params = serde_json::from_value(
        serde_json::json!({"epochs": 1, "warmup_epochs": 0, "label_lr": 1.0e6}),
    )
    .unwrap();
    let rule = "one meta step moved a soft label's logit by";
    assert_meta_step_diverges("train_soft_labels", rule, "label_lr", |ctx| {
        train_soft_labels::train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
    });
    // A bounded step is no rewrite: the same t_lr with `t_max_step` trains.
    let p: train_mlc::Params =
        serde_json::from_value(serde_json::json!({"epochs": 1, "t_lr": 1.0e6, "t_max_step": 0.02}))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 3, &NoProgress, &stop);
    train_mlc::train(&p, &ctx, &ds, &nl, None).unwrap();
}

#[test]
fn absurd_learning_rate_is_refused_by_every_training_kind() {
    for kind in [
        Kind::Train,
        Kind::TrainMlc,
        Kind::TrainSoftLabels,
        Kind::Distill,
    ] {
        let with = |opt: serde_json::Value| {
            let mut v = serde_json::json!({ "optimizer": opt });
            if kind == Kind::Train {
                v["method"] = "ce".into();
            }
            v
        };
        let adam = |lr: f64| with(serde_json::json!({"kind": "adam", "lr": lr}));
        let sgd = |lr: f64| with(serde_json::json!({"kind": "sgd", "lr": lr}));
        for ok in [0.0, 1e-3, 0.1, 1.0e6] {
            kind.validate(&adam(ok)).unwrap();
            kind.validate(&sgd(ok)).unwrap();
        }
        // 1e40 is finite in the file but ∞ in f32; 1e7 is above the bound; negative steps
        // climb the loss
        for bad in [1e40, 1e7, -0.1] {
            for params in [adam(bad), sgd(bad)] {
                let e = kind
                    .validate(&params)
                    .expect_err(&format!("{} accepted {params}", kind.name()));
                assert!(e.contains("learning rate"), "{}: {e}", kind.name());
            }
        }
    }
    // the method's own step sizes
    for (kind, field) in [
        (Kind::TrainMlc, "t_lr"),
        (Kind::TrainMlc, "virtual_lr"),
        (Kind::TrainSoftLabels, "label_lr"),
        (Kind::TrainSoftLabels, "virtual_lr"),
    ] {
        kind.validate(&serde_json::json!({ field: 0.5 })).unwrap();
        let e = kind
            .validate(&serde_json::json!({ field: 1e40 }))
            .expect_err(&format!("{} accepted {field}: 1e40", kind.name()));
        assert!(e.contains("learning rate"), "{} {field}: {e}", kind.name());
    }
}
