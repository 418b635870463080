//! The `paper` profile end to end without its data: `paper_smoke` is `paper` with every
//! dataset replaced by a synthetic copy in the dataset's own on-disk format (`data/smoke/`:
//! MNIST's IDX files, CIFAR-10's and CIFAR-100's binary archives, the Twitter POS files with
//! a word-vector file, a Clothing1M tree of JPEGs with its key lists), each grid shrunk to
//! one setting and every training to one short epoch, through every kind and every network
//! `paper` declares (MLPs, WRN-40-2 in both layouts, ResNet-18, ResNet-50 on small crops).
//!
//! * `smoke_data_is_what_its_generator_writes`: the committed files are exactly what
//!   [`write_smoke_data`] writes (`REPRO_WRITE_SMOKE_DATA=1 cargo test --test paper_smoke
//!   smoke_data` rewrites them), so their checksums in `pipeline.yaml` have a source.
//! * `paper_smoke_publishes_every_paper_target`: `repro run -p paper_smoke` in a copy of the
//!   project publishes each `paper` target's tables, with a finite number in every table.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::{copy_dir, repro, write_clothing_annotations};

/// Where the synthetic copies live, relative to the project.
const SMOKE_DIR: &str = "data/smoke";

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A deterministic byte stream (xorshift), for pixel texture and choices.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}

/// A `c`-channel `side`×`side` image of class `class` (planar, channel after channel): a
/// class-coloured gradient with a texture of 4×4 blocks, so that the classes can be
/// learned, no two images are alike, and the files stay small.
fn image(class: usize, c: usize, side: usize, rng: &mut Bytes) -> Vec<u8> {
    let blocks = side.div_ceil(4);
    let mut v = Vec::with_capacity(c * side * side);
    for ch in 0..c {
        let base = (class * (37 + 29 * ch) + 40 * ch) % 200;
        let texture: Vec<usize> = (0..blocks * blocks)
            .map(|_| rng.next() as usize % 8)
            .collect();
        for y in 0..side {
            for x in 0..side {
                let t = texture[(y / 4) * blocks + x / 4];
                v.push((base + (x + y) * 48 / side + t) as u8);
            }
        }
    }
    v
}

fn idx_images(images: &[Vec<u8>], side: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0803u32, images.len() as u32, side, side] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    images.iter().for_each(|i| b.extend_from_slice(i));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0801u32, labels.len() as u32] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(labels);
    b
}

/// MNIST's four IDX files: `per_class` training and `test_per_class` test images of 28×28
/// for each of the 10 classes.
fn mnist(dir: &Path) {
    let mut rng = Bytes(0x6d6e697374);
    for (prefix, n) in [("train", 6), ("t10k", 3)] {
        let labels: Vec<u8> = (0..n * 10).map(|i| (i % 10) as u8).collect();
        let images: Vec<Vec<u8>> = labels
            .iter()
            .map(|&l| image(l as usize, 1, 28, &mut rng))
            .collect();
        let name = |what: &str, n: u8| format!("{prefix}-{what}-idx{n}-ubyte.gz");
        write(dir, &name("images", 3), &gzip(&idx_images(&images, 28)));
        write(dir, &name("labels", 1), &gzip(&idx_labels(&labels)));
    }
}

/// A `.tar.gz` of `members` (fixed times, modes and owners).
fn tar_gz(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

/// CIFAR-10's binary archive: 5 training batches of 4 records (2 per class in all) and a
/// test batch of 20 (2 per class).
fn cifar10(dir: &Path) {
    let mut rng = Bytes(0x6369666172);
    let mut next = 0usize;
    let mut batch = |n: usize, rng: &mut Bytes| -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..n {
            let class = next % 10;
            next += 1;
            b.push(class as u8);
            b.extend(image(class, 3, 32, rng));
        }
        b
    };
    let root = "cifar-10-batches-bin";
    let mut members: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|i| (format!("{root}/data_batch_{i}.bin"), batch(4, &mut rng)))
        .collect();
    members.push((format!("{root}/test_batch.bin"), batch(20, &mut rng)));
    let names: String = (0..10).map(|c| format!("class{c}\n")).collect();
    members.push((format!("{root}/batches.meta.txt"), names.into_bytes()));
    write(dir, "cifar-10-binary.tar.gz", &tar_gz(&members));
}

/// CIFAR-100's binary archive: 1 training record per fine class (hierarchical noise needs
/// every fine class's superclass) and 1 test record for each of the fine classes 0, 5, ...,
/// 95; fine class `f` belongs to superclass `f / 5`, as each superclass holds 5 fine classes
/// in the real dataset.
fn cifar100(dir: &Path) {
    let mut rng = Bytes(0x63313030);
    let records = |n: usize, step: usize, rng: &mut Bytes| -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..n {
            let fine = i * step % 100;
            b.push((fine / 5) as u8);
            b.push(fine as u8);
            b.extend(image(fine, 3, 32, rng));
        }
        b
    };
    let root = "cifar-100-binary";
    let fine: String = (0..100).map(|c| format!("fine{c}\n")).collect();
    let coarse: String = (0..20).map(|c| format!("coarse{c}\n")).collect();
    let members = vec![
        (format!("{root}/train.bin"), records(100, 1, &mut rng)),
        (format!("{root}/test.bin"), records(20, 5, &mut rng)),
        (format!("{root}/fine_label_names.txt"), fine.into_bytes()),
        (
            format!("{root}/coarse_label_names.txt"),
            coarse.into_bytes(),
        ),
    ];
    write(dir, "cifar-100-binary.tar.gz", &tar_gz(&members));
}

/// GLC's Twitter POS files (train, dev, devtest: `token<TAB>TAG` lines, a blank line after
/// each tweet) over a vocabulary of 50 words, each with its own tag, and the 50-d word
/// vectors of every word plus `UUUNKKK` and `</s>`.
fn twitter(dir: &Path) {
    use repro_stages::data::twitter::TAGS;
    let mut rng = Bytes(0x7477656574);
    let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    let tag_of = |w: usize| TAGS[w % TAGS.len()];
    for (file, tweets) in [
        ("tweets-train.txt", 12),
        ("tweets-dev.txt", 4),
        ("tweets-devtest.txt", 6),
    ] {
        let mut s = String::new();
        for _ in 0..tweets {
            for _ in 0..8 {
                let w = rng.next() as usize % words.len();
                writeln!(s, "{}\t{}", words[w], tag_of(w)).unwrap();
            }
            s.push('\n');
        }
        write(dir, file, s.as_bytes());
    }
    let mut e = String::new();
    for w in words.iter().map(String::as_str).chain(["UUUNKKK", "</s>"]) {
        e.push_str(w);
        for _ in 0..50 {
            let v = (rng.next() as f32 - 127.5) / 128.0;
            write!(e, " {v:.4}").unwrap();
        }
        e.push('\n');
    }
    write(dir, "embeddings-twitter.txt", e.as_bytes());
}

/// A Clothing1M tree: per class 2 noisy-train images (1 keeps its class, 1 takes the next),
/// 1 clean-train image (also with a noisy label, wrong for odd classes), 1 clean-val and
/// 1 clean-test image,
/// 40×32 or 32×40 JPEGs, with the official key lists and label files.
fn clothing1m(dir: &Path) {
    let mut rng = Bytes(0x636c6f746831);
    let (mut noisy_kv, mut clean_kv) = (String::new(), String::new());
    let mut lists: [String; 4] = Default::default();
    let mut n = 0usize;
    let mut key = |class: usize, rng: &mut Bytes| -> String {
        n += 1;
        let k = format!("images/{}/{:02}/{n}.jpg", n % 10, n % 7);
        let (w, h) = if n % 2 == 0 { (40, 32) } else { (32, 40) };
        let px = image(class, 3, 40, rng);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let at = |ch: usize| px[ch * 1600 + (y * 40 + x) as usize];
            image::Rgb([at(0), at(1), at(2)])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        write(dir, &k, &bytes);
        k
    };
    for c in 0..14 {
        for i in 0..2 {
            let k = key(c, &mut rng);
            writeln!(noisy_kv, "{k} {}", if i == 0 { c } else { (c + 1) % 14 }).unwrap();
            writeln!(lists[0], "{k}").unwrap();
        }
        let k = key(c, &mut rng);
        writeln!(clean_kv, "{k} {c}").unwrap();
        writeln!(lists[1], "{k}").unwrap();
        writeln!(
            noisy_kv,
            "{k} {}",
            if c % 2 == 0 { c } else { (c + 1) % 14 }
        )
        .unwrap();
        for list in [2, 3] {
            let k = key(c, &mut rng);
            writeln!(clean_kv, "{k} {c}").unwrap();
            writeln!(lists[list], "{k}").unwrap();
        }
    }
    write_clothing_annotations(
        dir,
        &noisy_kv,
        &clean_kv,
        lists.each_ref().map(String::as_str),
    );
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Writes every synthetic dataset under `root` (`mnist/`, `cifar10/`, `cifar100/`,
/// `twitter/`, `clothing1M/`).
fn write_smoke_data(root: &Path) {
    mnist(&root.join("mnist"));
    cifar10(&root.join("cifar10"));
    cifar100(&root.join("cifar100"));
    twitter(&root.join("twitter"));
    clothing1m(&root.join("clothing1M"));
    let readme = "Synthetic copies of the `paper` profile's datasets in their own file formats, \
                  written by `tests/paper_smoke.rs` (`REPRO_WRITE_SMOKE_DATA=1 cargo test --test \
                  paper_smoke smoke_data`) for the `paper_smoke` profile. Every image, word and \
                  label here is made up.\n";
    write(root, "README.md", readme.as_bytes());
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn smoke_data_is_what_its_generator_writes() {
    let committed = project_root().join(SMOKE_DIR);
    if std::env::var_os("REPRO_WRITE_SMOKE_DATA").is_some() {
        let _ = std::fs::remove_dir_all(&committed);
        write_smoke_data(&committed);
    }
    let tmp = tempfile::tempdir().unwrap();
    write_smoke_data(tmp.path());
    let (want, got) = (tree(tmp.path()), tree(&committed));
    let names = |t: &[(PathBuf, Vec<u8>)]| t.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want), names(&got), "files under {SMOKE_DIR}");
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        assert!(
            a == b,
            "{SMOKE_DIR}/{}: not what the generator writes",
            name.display()
        );
    }
}

/// The tables each `paper` report target publishes, by directory under
/// `results/paper_smoke/` (the `paper_smoke` profile's publish directories).
const PUBLISHED: [(&str, &str, &[&str]); 9] = [
    (
        "paper_mnist_report",
        "mnist",
        &["t1_glc_table1", "t4_noisy", "t6_t_estimation"],
    ),
    (
        "paper_cifar_report",
        "cifar10",
        &["t1_glc_table1", "t4_noisy", "t6_t_estimation"],
    ),
    (
        "paper_cifar_report",
        "cifar100",
        &["t1_glc_table1", "t4_noisy", "t6_t_estimation"],
    ),
    (
        "paper_clean_report",
        "cifar10",
        &["t3_clean", "t5_distillation"],
    ),
    (
        "paper_clean_report",
        "cifar100",
        &["t3_clean", "t5_distillation"],
    ),
    (
        "paper_cifar100_hierarchical_report",
        "cifar100_hierarchical",
        &["t1_glc_table1"],
    ),
    (
        "paper_twitter_report",
        "twitter",
        &["t1_glc_table1", "t4_noisy"],
    ),
    ("paper_clothing1m_report", "clothing1m", &["t4_noisy"]),
    ("paper_report_mlc_code", "", &["t2_mlc_code"]),
];

#[test]
fn paper_smoke_publishes_every_paper_target() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    let root = project_root();
    copy_dir(&root.join(SMOKE_DIR), &dir.join(SMOKE_DIR));
    std::fs::copy(root.join("pipeline.yaml"), dir.join("pipeline.yaml")).unwrap();
    let (code, out) = repro(&dir, &["run", "-q", "-p", "paper_smoke", "-j", "2"]);
    assert_eq!(code, 0, "{out}");
    // every member ran: nothing is left to run
    let (code, out) = repro(&dir, &["status", "-q", "-p", "paper_smoke"]);
    assert_eq!(code, 0, "{out}");
    let published = dir.join("results/paper_smoke");
    for (target, sub, tables) in PUBLISHED {
        for t in tables {
            let csv = published.join(sub).join("tables").join(format!("{t}.csv"));
            let text = std::fs::read_to_string(&csv)
                .unwrap_or_else(|e| panic!("{target}: {}: {e}", csv.display()));
            let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            assert!(
                rows.len() >= 2,
                "{target}: {} has no row:\n{text}",
                csv.display()
            );
            for ext in ["md", "tex"] {
                assert!(csv.with_extension(ext).is_file(), "{target}: no {t}.{ext}");
            }
        }
    }
    // the union report holds every dataset's rows in one T1
    let t1 = std::fs::read_to_string(published.join("tables/t1_glc_table1.csv")).unwrap();
    for name in ["MNIST", "CIFAR-10", "CIFAR-100", "Twitter", "Clothing1M"] {
        assert!(t1.contains(name), "no {name} row in the union's T1:\n{t1}");
    }
}
