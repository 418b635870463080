//! Clothing1M's path end to end on a synthetic tree of the official layout with real JPEG
//! files (the dataset itself cannot be shipped or downloaded): the `download` kind reads
//! the key lists and refers to the images in place, `inject_noise` with `corruption: real`
//! takes the clean-train images as the trusted set and measures the noise on those that
//! also have a noisy label, every training kind decodes, resizes and crops the JPEGs batch
//! by batch, and the tables carry a Clothing1M row with finite numbers.

mod common;

use common::{repro, write_clothing_annotations};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use repro_stages::data::clothing1m::CLASSES;
use repro_stages::data::raw::sha256_hex;

const K: usize = CLASSES.len();

/// A class-coloured JPEG of `w`×`h` with a little texture.
fn jpeg(path: &Path, class: usize, w: u32, h: u32, salt: u32) {
    let base = [
        (class * 37 % 256) as u8,
        (class * 91 % 256) as u8,
        (255 - class * 17) as u8,
    ];
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13 + salt * 5) % 23) as u8;
        image::Rgb([
            base[0].wrapping_add(t),
            base[1].wrapping_add(t / 2),
            base[2].wrapping_sub(t),
        ])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 90)
        .encode_image(&img)
        .unwrap();
}

/// Writes the tree; returns (noisy pairs among clean-train images, of which disagreeing).
fn clothing_tree(root: &Path) -> (usize, usize) {
    let (mut noisy_kv, mut clean_kv) = (String::new(), String::new());
    let (mut noisy_train, mut clean_train, mut clean_val, mut clean_test) =
        (String::new(), String::new(), String::new(), String::new());
    let mut n = 0u32;
    let mut key = |class: usize, tag: &str| {
        n += 1;
        let k = format!("images/{}/{:02}/{tag}{n}.jpg", n % 10, n % 7);
        // Sizes vary so that the resize keeps aspect ratios of both orientations.
        let (w, h) = [(20, 16), (16, 20), (18, 18)][n as usize % 3];
        jpeg(&root.join(&k), class, w, h, n);
        k
    };
    for c in 0..K {
        for i in 0..8 {
            // 70 % keep their class, the rest flip to the next class.
            let given = if i < 6 { c } else { (c + 1) % K };
            let k = key(c, "n");
            writeln!(noisy_kv, "{k} {given}").unwrap();
            writeln!(noisy_train, "{k}").unwrap();
        }
    }
    let (mut pairs, mut differ) = (0, 0);
    for c in 0..K {
        for i in 0..3 {
            let k = key(c, "c");
            writeln!(clean_kv, "{k} {c}").unwrap();
            writeln!(clean_train, "{k}").unwrap();
            if i < 2 {
                let z = if i == 0 { c } else { (c + 1) % K };
                writeln!(noisy_kv, "{k} {z}").unwrap();
                pairs += 1;
                differ += usize::from(z != c);
            }
        }
        let k = key(c, "v");
        writeln!(clean_kv, "{k} {c}").unwrap();
        writeln!(clean_val, "{k}").unwrap();
        for _ in 0..2 {
            let k = key(c, "t");
            writeln!(clean_kv, "{k} {c}").unwrap();
            writeln!(clean_test, "{k}").unwrap();
        }
    }
    let lists = [&noisy_train, &clean_train, &clean_val, &clean_test].map(String::as_str);
    write_clothing_annotations(root, &noisy_kv, &clean_kv, lists);
    (pairs, differ)
}

const PIPELINE: &str = r#"
stages:
  c1m:
    kind: download
    params: { dataset: clothing1m, root: clothing1M, check_counts: false, resize: 14, crop: 12 }
  c1m_noisy:
    kind: inject_noise
    inputs: { data: c1m }
    params: { corruption: real }
  c1m_baselines:
    kind: train
    inputs: { data: c1m, noise: c1m_noisy }
    params: &t
      model: &cnn { arch: small_cnn, channels: [4, 8], hidden: 16 }
      epochs: 2
      batch_size: 16
      augment: true
    matrix: { method: [trusted_only, ce, forward, forward_gold, confusion] }
  c1m_glc:
    kind: train
    inputs: { data: c1m, noise: c1m_noisy }
    params: { method: glc, model: *cnn, epochs: 2, batch_size: 16, augment: true }
  c1m_mlc:
    kind: train_mlc
    inputs: { data: c1m, noise: c1m_noisy, glc: c1m_glc }
    params: *t
  c1m_soft_labels:
    kind: train_soft_labels
    inputs: { data: c1m, noise: c1m_noisy }
    params: { model: *cnn, warmup_epochs: 1, epochs: 1, batch_size: 16, augment: true }
  report:
    kind: tables
    inputs:
      baselines: "c1m_baselines[*]"
      glc: "c1m_glc[*]"
      mlc: "c1m_mlc[*]"
      soft_labels: "c1m_soft_labels[*]"
      noise: "c1m_noisy[*]"
    publish: results
    params:
      tables:
        - { table: glc_table1, name: t1 }
        - { table: t_estimation, name: t6 }
"#;

fn project() -> (tempfile::TempDir, PathBuf, (usize, usize)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    let pairs = clothing_tree(&dir.join("clothing1M"));
    std::fs::write(dir.join("pipeline.yaml"), PIPELINE).unwrap();
    (tmp, dir, pairs)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The output directory of a member of the default profile (the lock names its
/// fingerprint; the store keeps its outputs under it).
fn output_of(dir: &Path, member: &str) -> PathBuf {
    let lock = read_json(&dir.join("pipeline.lock"));
    let entry = &lock["profiles"]["default"][member];
    let fp = entry["fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no member {member} in the lock"));
    dir.join("results/.runs/runs").join(fp).join("out")
}

#[test]
fn clothing1m_tree_trains_every_method_on_its_real_noise_into_tables() {
    let (_tmp, dir, (pairs, differ)) = project();
    let (code, out) = repro(&dir, &["run"]);
    assert_eq!(code, 0, "{out}");

    let noise_meta = read_json(&output_of(&dir, "c1m_noisy").join("noise.json"));
    assert_eq!(noise_meta["corruption"], "real");
    assert_eq!(noise_meta["num_trusted"], 3 * K);
    assert_eq!(noise_meta["num_untrusted"], 8 * K);
    let rate = differ as f64 / pairs as f64;
    assert!((noise_meta["actual_noise_rate"].as_f64().unwrap() - rate).abs() < 1e-12);

    let ds = read_json(&output_of(&dir, "c1m").join("dataset.json"));
    assert_eq!(ds["example_shape"], serde_json::json!([3, 12, 12]));
    assert_eq!(ds["encoding"]["kind"], "image_files");
    assert_eq!(
        (ds["train_len"].as_u64(), ds["test_len"].as_u64()),
        (Some(11 * K as u64), Some(2 * K as u64))
    );

    let t1 = std::fs::read_to_string(dir.join("results/tables/t1.csv")).unwrap();
    let row = t1
        .lines()
        .find(|l| l.starts_with("Clothing1M"))
        .unwrap_or_else(|| panic!("no Clothing1M row in\n{t1}"));
    let cells: Vec<&str> = row.split(',').collect();
    assert!(cells.iter().any(|c| c.contains("Real")), "{row}");
    let numbers: Vec<f64> = cells
        .iter()
        .flat_map(|c| c.split(['±', ' ', '(', ')', '=']))
        .filter_map(|p| p.trim().parse::<f64>().ok())
        .collect();
    assert!(numbers.len() >= 8, "{row}");
    assert!(numbers.iter().all(|x| x.is_finite()), "{row}");
    // Trusted only learns from the clean-train JPEGs alone: the class colours survive
    // decoding, resizing and cropping, with the right labels.
    let trusted_only: f64 = cells[3].parse().unwrap();
    assert!(
        trusted_only < 50.0,
        "trusted-only error {trusted_only} %: {row}"
    );
    let t6 = std::fs::read_to_string(dir.join("results/tables/t6.csv")).unwrap();
    assert!(t6.lines().any(|l| l.starts_with("Clothing1M")), "{t6}");

    let (code, out) = repro(&dir, &["run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 ran"), "{out}");

    // A stage that starts from the GLC network's final weights (`init`): every tensor must
    // load (no skip), and the metrics say the weights came from a file.
    let weights = output_of(&dir, "c1m_glc").join("weights.safetensors");
    let sha = sha256_hex(&std::fs::read(&weights).unwrap());
    let stage = format!(
        "  c1m_init:\n    kind: train\n    inputs: {{ data: c1m, noise: c1m_noisy }}\n    \
         params: {{ method: ce, model: {{ arch: small_cnn, channels: [4, 8], hidden: 16 }}, epochs: 1, batch_size: 16, \
         init: {{ path: {}, sha256: {sha}, skip: [] }} }}\n",
        weights.display()
    );
    let yaml = PIPELINE.replace("  report:\n", &(stage + "  report:\n"));
    std::fs::write(dir.join("pipeline.yaml"), yaml).unwrap();
    let (code, out) = repro(&dir, &["run", "c1m_init"]);
    assert_eq!(code, 0, "{out}");
    let m = read_json(&output_of(&dir, "c1m_init").join("metrics.json"));
    assert_eq!(m["model"], "cnn-4-8-16+init");
}
