//! The project's own `pipeline.yaml`: the `paper` profile gives each member the settings of
//! the script it reproduces (docs/protocols.md), per method and dataset, through the stages'
//! `when` entries and the profile's overrides; `cpu` keeps the kinds' defaults on the
//! stages it shares with `paper`. Checked on the built pipeline, member by member, so a
//! matrix or anchor edited by hand cannot silently drop a setting.

use std::path::Path;

use repro::pipeline::{Member, Pipeline};
use repro::spec::Spec;
use serde_json::{json, Value};

fn project_pipeline(profile: &str) -> Pipeline {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let spec = Spec::parse(&text, &file).unwrap();
    Pipeline::build(&spec, &text, &file, profile).unwrap()
}

/// The members of stage `stage` whose coordinates hold every `(axis, value)` of `at`.
fn members<'p>(p: &'p Pipeline, stage: &str, at: &[(&str, Value)]) -> Vec<&'p Member> {
    let found: Vec<&Member> = p
        .members
        .iter()
        .filter(|m| p.stages[m.stage].name == stage)
        .filter(|m| at.iter().all(|(a, v)| m.coords.get(*a) == Some(v)))
        .collect();
    assert!(!found.is_empty(), "no member of {stage} at {at:?}");
    found
}

/// Asserts that every member of `stage` at `at` has `field` equal to `want` (`None`: the
/// field is not set, so the kind's default applies).
fn field_is(p: &Pipeline, stage: &str, at: &[(&str, Value)], field: &str, want: Option<Value>) {
    for m in members(p, stage, at) {
        let got = field
            .split('.')
            .try_fold(&m.params, |v, k| v.get(k))
            .cloned();
        assert_eq!(got, want, "{}: {field}", m.name);
    }
}

#[test]
fn paper_glc_cifar_members_follow_the_scripts_per_method_and_dataset() {
    let p = project_pipeline("paper");
    let m = |name: &str| ("method", json!(name));
    let ds = |name: &str| ("dataset", json!(name));
    for stage in ["cifar_baselines", "cifar100_hier_baselines"] {
        // one SGD object for both phases
        field_is(&p, stage, &[], "carry_optimizer", Some(json!(true)));
        // Forward keeps phase 1's weights; the other methods restart
        field_is(
            &p,
            stage,
            &[m("forward")],
            "phase2_init",
            Some(json!("phase1")),
        );
        for other in ["forward_gold", "confusion", "ce", "trusted_only"] {
            field_is(&p, stage, &[m(other)], "phase2_init", None);
        }
        // 75 epochs over the trusted set, no floor of updates
        field_is(
            &p,
            stage,
            &[m("trusted_only")],
            "min_updates",
            Some(json!(0)),
        );
        field_is(&p, stage, &[m("ce")], "min_updates", None);
    }
    field_is(&p, "cifar_glc", &[], "carry_optimizer", Some(json!(true)));
    field_is(
        &p,
        "cifar100_hier_glc",
        &[],
        "carry_optimizer",
        Some(json!(true)),
    );
    // CIFAR-100 takes the plain arg-max anchor, CIFAR-10 the 97th-percentile filter
    for method in ["forward", "forward_gold"] {
        let c100 = [m(method), ds("cifar100")];
        field_is(
            &p,
            "cifar_baselines",
            &c100,
            "anchor_percentile",
            Some(Value::Null),
        );
        let c10 = [m(method), ds("cifar10")];
        field_is(&p, "cifar_baselines", &c10, "anchor_percentile", None);
        let hier = [m(method)];
        field_is(
            &p,
            "cifar100_hier_baselines",
            &hier,
            "anchor_percentile",
            Some(Value::Null),
        );
    }
    // the MLC and soft-label stages share the recipe, not the train kind's options
    field_is(&p, "cifar_mlc", &[], "carry_optimizer", None);
}

#[test]
fn paper_mnist_and_twitter_members_follow_the_scripts_and_cpu_keeps_the_defaults() {
    let paper = project_pipeline("paper");
    // (stage, whether it is a `train` stage, which also draws new weights for phase 2)
    for (stage, train) in [
        ("mnist_baselines", true),
        ("mnist_glc", true),
        ("twitter_baselines", true),
        ("twitter_glc", true),
        ("mnist_mlc", false),
        ("mnist_soft_labels", false),
        ("twitter_mlc", false),
        ("twitter_soft_labels", false),
    ] {
        let normal = Some(json!("normal"));
        field_is(&paper, stage, &[], "model.weight_init", normal);
        field_is(&paper, stage, &[], "drop_last", Some(json!(true)));
        let fresh = train.then(|| json!("fresh"));
        field_is(&paper, stage, &[], "phase2_init", fresh);
    }
    // the released MLC code keeps PyTorch's default init
    field_is(&paper, "mnist_mlc_official", &[], "model.weight_init", None);
    let cpu = project_pipeline("cpu");
    for stage in [
        "mnist_baselines",
        "mnist_glc",
        "mnist_mlc",
        "mnist_soft_labels",
    ] {
        for field in ["model.weight_init", "drop_last", "phase2_init"] {
            field_is(&cpu, stage, &[], field, None);
        }
    }
}

#[test]
fn paper_t2_members_follow_the_released_code() {
    let p = project_pipeline("paper");
    field_is(
        &p,
        "cifar10_code_data",
        &[],
        "normalization",
        Some(json!("half")),
    );
    let sgd = |lr: f64| json!({"kind": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5.0e-4});
    let official = "cifar10_code_mlc_official";
    field_is(&p, official, &[], "warmup_optimizer", Some(sgd(0.1)));
    field_is(&p, official, &[], "optimizer", Some(sgd(1.0e-4)));
    field_is(&p, official, &[], "continue_from", Some(json!("best")));
    field_is(&p, official, &[], "train_on_trusted", Some(json!(false)));
    // the meta set: 50 per class from the test split
    field_is(
        &p,
        "cifar10_noisy_mlc_code",
        &[],
        "trusted_split",
        Some(json!("test")),
    );
    field_is(
        &p,
        "cifar10_noisy_mlc_code",
        &[],
        "trusted_per_class",
        Some(json!(50)),
    );
    for stage in [
        official,
        "cifar10_code_baselines",
        "cifar10_code_mlc",
        "cifar10_code_soft_labels",
    ] {
        field_is(&p, stage, &[], "eval_interval", Some(json!(100)));
        // meta_wrn.py's network
        field_is(
            &p,
            stage,
            &[],
            "model.activation",
            Some(json!("leaky_relu")),
        );
        field_is(&p, stage, &[], "model.block", Some(json!("mlc_code")));
        // every T2 member reads the half-normalised CIFAR-10
        for m in members(&p, stage, &[]) {
            let data = m.inputs["data"][0];
            assert_eq!(p.members[data].name, "cifar10_code_data", "{}", m.name);
        }
    }
}
