//! What every training stage records beside its weights: the network spec (`model.json`),
//! which `distill` reads to rebuild its teacher.

use std::sync::atomic::AtomicBool;

use repro_stages::kinds::distill;
use repro_stages::nn::model::ModelSpec;
use repro_stages::outputs::{MODEL_FILE, WEIGHTS_FILE};
use repro_stages::NoProgress;

mod train_common;
use train_common::{context, digits, distill_inputs};

#[test]
fn training_outputs_record_the_network_spec() {
    let ds = digits();
    let base = tempfile::tempdir().unwrap();
    let inputs = distill_inputs(base.path(), &ds);
    let teacher = &inputs["teacher"][0].dir;
    assert!(teacher.join(WEIGHTS_FILE).exists());
    let text = std::fs::read_to_string(teacher.join(MODEL_FILE)).unwrap();
    let spec: ModelSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(
        spec,
        ModelSpec::Mlp {
            hidden: vec![128, 128],
            dropout: 0.0,
            embed_dim: None,
            weight_init: Default::default()
        }
    );
}

#[test]
fn distill_without_the_teachers_model_json_names_the_file() {
    let ds = digits();
    let base = tempfile::tempdir().unwrap();
    let inputs = distill_inputs(base.path(), &ds);
    std::fs::remove_file(inputs["teacher"][0].dir.join(MODEL_FILE)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let mut ctx = context(dir.path(), 3, &NoProgress, &stop);
    ctx.inputs = inputs.clone();
    let p: distill::Params = serde_json::from_value(serde_json::json!({"epochs": 1})).unwrap();
    let e = format!("{:#}", distill::run(&p, &ctx).unwrap_err());
    assert!(e.contains("teacher") && e.contains(MODEL_FILE), "{e}");
}

#[test]
fn distill_refuses_the_teacher_model_param() {
    let e = serde_json::from_value::<distill::Params>(
        serde_json::json!({"teacher_model": {"arch": "mlp", "hidden": [128, 128]}}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("unknown field `teacher_model`"),
        "{e}"
    );
}
