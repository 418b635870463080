//! The dataset readers on the committed digits file and on fixtures generated here in the
//! exact byte formats (IDX, CIFAR binary archives, Twitter POS, a Clothing1M tree),
//! including truncated and wrong-magic files.

use std::io::Write;
use std::path::Path;

use repro_stages::data::dataset::{Dataset, Encoding, Features};
use repro_stages::data::raw::{self, sha256_hex};
use repro_stages::data::split::class_counts;
use repro_stages::data::{cifar, clothing1m, digits, idx, twitter};

fn err<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.unwrap_err())
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

// ----------------------------------------------------------------------------- digits

#[test]
fn committed_digits_file_has_the_published_raw_sha256_and_a_fixed_split() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/optdigits/digits.csv.gz");
    let raw = raw::read_raw_file(&path).unwrap();
    assert_eq!(
        sha256_hex(&raw),
        "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
    );
    let ds = digits::read(&raw, 500, 0).unwrap();
    assert_eq!(ds.meta.identity, digits::RAW_SHA256);
    assert_eq!((ds.meta.train_len, ds.meta.test_len), (1297, 500));
    assert_eq!(ds.meta.example_shape, vec![1, 8, 8]);
    assert_eq!(
        ds.meta.encoding,
        Encoding::Pixels {
            scale: 1.0 / 16.0,
            mean: None,
            std: None
        }
    );
    // UCI class counts, split by largest remainder.
    let all: Vec<u32> = ds.train.y.iter().chain(&ds.test.y).copied().collect();
    assert_eq!(
        class_counts(&all, 10),
        vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    assert_eq!(
        class_counts(&ds.test.y, 10),
        vec![50, 51, 49, 51, 50, 51, 50, 50, 48, 50]
    );
    let Features::U8(x) = &ds.train.x else {
        panic!()
    };
    assert!(x.iter().all(|&v| v <= 16));
    // Same seed, same split; another seed, another split, same identity.
    assert_eq!(digits::read(&raw, 500, 0).unwrap(), ds);
    let other = digits::read(&raw, 500, 1).unwrap();
    assert_ne!(other.test.x, ds.test.x);
    assert_eq!(other.meta.identity, ds.meta.identity);
    assert_eq!(digits::read_file(&path, 500, 0).unwrap(), ds);
}

// ----------------------------------------------------------------------------- IDX

fn idx_images(n: u32, r: u32, c: u32, magic: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [magic, n, r, c] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend((0..n * r * c).map(|i| (i * 7 % 256) as u8));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&idx::LABELS_MAGIC.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

#[test]
fn idx_reader_reads_big_endian_headers_and_gzip() {
    let (tri, trl) = (
        idx_images(3, 2, 4, idx::IMAGES_MAGIC),
        idx_labels(&[5, 0, 9]),
    );
    let (tei, tel) = (idx_images(2, 2, 4, idx::IMAGES_MAGIC), idx_labels(&[1, 1]));
    // Through gzip, as the files are published.
    let files: Vec<Vec<u8>> = [&tri, &trl, &tei, &tel]
        .iter()
        .map(|b| raw::raw_content(&gzip(b), "f").unwrap())
        .collect();
    let ds = idx::read(
        "fashion_mnist",
        [&files[0], &files[1], &files[2], &files[3]],
    )
    .unwrap();
    assert_eq!(ds.meta.example_shape, vec![1, 2, 4]);
    assert_eq!(ds.train.y, vec![5, 0, 9]);
    assert_eq!(ds.test.y, vec![1, 1]);
    assert_eq!(ds.meta.class_names[9], "Ankle boot");
    let Features::U8(x) = &ds.train.x else {
        panic!()
    };
    assert_eq!(x.len(), 24);
    assert_eq!(&x[..4], &[0, 7, 14, 21]);
    let digests: Vec<String> = [&tri, &trl, &tei, &tel]
        .iter()
        .map(|b| sha256_hex(b))
        .collect();
    let named: Vec<(&str, &str)> = idx::FILES
        .iter()
        .zip(&digests)
        .map(|(n, d)| (*n, d.as_str()))
        .collect();
    assert_eq!(ds.meta.identity, raw::identity(&named));
    assert_eq!(
        ds.meta.encoding,
        Encoding::Pixels {
            scale: 1.0 / 255.0,
            mean: None,
            std: None
        }
    );
}

#[test]
fn idx_reader_rejects_truncated_and_wrong_magic_files() {
    let img = idx_images(3, 2, 2, idx::IMAGES_MAGIC);
    let e = err(idx::read_images(&img[..img.len() - 1], "train-images"));
    assert!(
        e.contains("train-images") && e.contains("truncated") && e.contains("3 images of 2x2"),
        "{e}"
    );
    let e = err(idx::read_images(&img[..10], "train-images"));
    assert!(e.contains("truncated header"), "{e}");
    let lab = idx_labels(&[1, 2, 3]);
    let e = err(idx::read_images(&lab, "x"));
    assert!(
        e.contains("wrong magic 0x00000801") && e.contains("this is a label file"),
        "{e}"
    );
    let e = err(idx::read_labels(&img, "y"));
    assert!(
        e.contains("wrong magic 0x00000803") && e.contains("this is an image file"),
        "{e}"
    );
    let e = err(idx::read_labels(&lab[..9], "y"));
    assert!(e.contains("truncated") && e.contains("3 labels"), "{e}");
    let e = err(idx::read_images(&idx_images(1, 1, 1, 0x1234), "z"));
    assert!(e.contains("wrong magic 0x00001234"), "{e}");
    // Count mismatch between images and labels.
    let two = idx_labels(&[1, 2]);
    let e = err(idx::read("mnist", [&img, &two, &img, &lab]));
    assert!(e.contains("3 images") && e.contains("2 labels"), "{e}");
    // Labels outside 0..=9.
    let e = err(idx::read(
        "mnist",
        [&img, &idx_labels(&[1, 2, 10]), &img, &lab],
    ));
    assert!(e.contains("label 10"), "{e}");
    // Truncated gzip.
    let gz = gzip(&img);
    let e = err(raw::raw_content(
        &gz[..gz.len() - 6],
        "t10k-images-idx3-ubyte.gz",
    ));
    assert!(e.contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

// ----------------------------------------------------------------------------- CIFAR

fn record10(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..cifar::PIXELS).map(|i| (i as u8).wrapping_mul(3).wrapping_add(seed)));
    r
}

fn tar_gz(members: &[(&str, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    (gzip(&tar), tar)
}

fn cifar10_members() -> Vec<(&'static str, Vec<u8>)> {
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    let mut m: Vec<(&str, Vec<u8>)> = vec![(
        "cifar-10-batches-bin/batches.meta.txt",
        names.as_bytes().to_vec(),
    )];
    for (i, n) in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
    ]
    .iter()
    .enumerate()
    {
        let mut b = record10(i as u8, 1);
        b.extend(record10(9 - i as u8, 2));
        m.push((
            Box::leak(format!("cifar-10-batches-bin/{n}.bin").into_boxed_str()),
            b,
        ));
    }
    let mut t = record10(3, 7);
    t.extend(record10(4, 8));
    t.extend(record10(5, 9));
    m.push(("cifar-10-batches-bin/test_batch.bin", t));
    m.push((
        "cifar-10-batches-bin/readme.html",
        b"<html></html>".to_vec(),
    ));
    m
}

#[test]
fn cifar10_reader_reads_the_binary_archive() {
    let (gz, tar) = tar_gz(&cifar10_members());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(cifar::CIFAR10_ARCHIVE);
    std::fs::write(&p, &gz).unwrap();
    let ds = cifar::read_archive_file(cifar::Variant::Cifar10, &p).unwrap();
    assert_eq!(ds.train.y, vec![0, 9, 1, 8, 2, 7, 3, 6, 4, 5]);
    assert_eq!(ds.test.y, vec![3, 4, 5]);
    assert_eq!(ds.meta.class_names[1], "automobile");
    assert_eq!(ds.meta.example_shape, vec![3, 32, 32]);
    assert_eq!(ds.meta.identity, sha256_hex(&tar));
    let Features::U8(x) = &ds.test.x else {
        panic!()
    };
    assert_eq!(&x[..3], &[7, 10, 13]);
    assert_eq!(x.len(), 3 * cifar::PIXELS);
    let Encoding::Pixels {
        mean: Some(m),
        std: Some(s),
        ..
    } = &ds.meta.encoding
    else {
        panic!()
    };
    assert!((m[0] - 125.3 / 255.0).abs() < 1e-6 && (s[2] - 66.7 / 255.0).abs() < 1e-6);
    // The plain tar reads the same.
    std::fs::write(&p, &tar).unwrap();
    assert_eq!(
        cifar::read_archive_file(cifar::Variant::Cifar10, &p).unwrap(),
        ds
    );
}

#[test]
fn cifar_half_normalization_replaces_mean_and_std_and_says_so() {
    let (gz, _) = tar_gz(&cifar10_members());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(cifar::CIFAR10_ARCHIVE);
    std::fs::write(&p, &gz).unwrap();
    let glc = cifar::read_archive_file(cifar::Variant::Cifar10, &p).unwrap();
    let mut half = glc.clone();
    cifar::normalize_half(&mut half);
    assert_eq!(
        half.meta.encoding,
        Encoding::Pixels {
            scale: 1.0 / 255.0,
            mean: Some(vec![0.5; 3]),
            std: Some(vec![0.5; 3]),
        }
    );
    assert!(half
        .meta
        .notes
        .iter()
        .any(|n| n.contains("normalization: half")));
    // the pixels, labels and identity are the same bytes
    assert_eq!(half.train, glc.train);
    assert_eq!(half.meta.identity, glc.meta.identity);
}

#[test]
fn cifar_reader_rejects_truncated_archives_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.tar.gz");
    // A truncated record file.
    let mut m = cifar10_members();
    let tb = m
        .iter_mut()
        .find(|(n, _)| n.ends_with("test_batch.bin"))
        .unwrap();
    tb.1.truncate(3073 * 2 + 100);
    std::fs::write(&p, tar_gz(&m).0).unwrap();
    let e = err(cifar::read_archive_file(cifar::Variant::Cifar10, &p));
    assert!(
        e.contains("test_batch.bin") && e.contains("not a whole number of 3073-byte records"),
        "{e}"
    );
    // A truncated archive.
    let gz = tar_gz(&cifar10_members()).0;
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    let e = err(cifar::read_archive_file(cifar::Variant::Cifar10, &p));
    assert!(e.contains("a.tar.gz"), "{e}");
    // The python version (or anything else) lacks the binary members.
    std::fs::write(
        &p,
        tar_gz(&[("cifar-10-batches-py/data_batch_1", vec![0u8; 10])]).0,
    )
    .unwrap();
    let e = err(cifar::read_archive_file(cifar::Variant::Cifar10, &p));
    assert!(
        e.contains("binary") && e.contains("data_batch_1.bin"),
        "{e}"
    );
    // Not an archive at all.
    std::fs::write(&p, gzip(b"hello, not a tar")).unwrap();
    assert!(cifar::read_archive_file(cifar::Variant::Cifar10, &p).is_err());
    // A label outside 0..10.
    let mut m = cifar10_members();
    m.iter_mut()
        .find(|(n, _)| n.ends_with("data_batch_2.bin"))
        .unwrap()
        .1[0] = 10;
    std::fs::write(&p, tar_gz(&m).0).unwrap();
    let e = err(cifar::read_archive_file(cifar::Variant::Cifar10, &p));
    assert!(
        e.contains("data_batch_2.bin") && e.contains("label 10"),
        "{e}"
    );
}

#[test]
fn cifar100_reader_keeps_coarse_labels() {
    let rec = |coarse: u8, fine: u8| {
        let mut r = vec![coarse, fine];
        r.extend(std::iter::repeat_n(fine, cifar::PIXELS));
        r
    };
    let fine: String = (0..100).map(|i| format!("fine{i}\n")).collect();
    let coarse: String = (0..20).map(|i| format!("coarse{i}\n")).collect();
    let train: Vec<u8> = [(4, 0), (1, 1), (19, 99)]
        .iter()
        .flat_map(|&(c, f)| rec(c, f))
        .collect();
    let test: Vec<u8> = rec(4, 0);
    let (gz, tar) = tar_gz(&[
        ("cifar-100-binary/fine_label_names.txt", fine.into_bytes()),
        (
            "cifar-100-binary/coarse_label_names.txt",
            coarse.into_bytes(),
        ),
        ("cifar-100-binary/train.bin", train),
        ("cifar-100-binary/test.bin", test),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(cifar::CIFAR100_ARCHIVE);
    std::fs::write(&p, &gz).unwrap();
    let ds = cifar::read_archive_file(cifar::Variant::Cifar100, &p).unwrap();
    assert_eq!(ds.train.y, vec![0, 1, 99]);
    assert_eq!(ds.train.coarse, Some(vec![4, 1, 19]));
    assert_eq!(ds.test.coarse, Some(vec![4]));
    assert_eq!(ds.meta.num_coarse, Some(20));
    assert_eq!(ds.meta.num_classes, 100);
    assert_eq!(ds.meta.identity, sha256_hex(&tar));
    // 3,073-byte records are not CIFAR-100.
    std::fs::write(
        &p,
        tar_gz(&[("cifar-100-binary/train.bin", vec![0u8; 3073])]).0,
    )
    .unwrap();
    assert!(cifar::read_archive_file(cifar::Variant::Cifar100, &p).is_err());
}

// ----------------------------------------------------------------------------- Twitter

const TRAIN: &str = "hello\t!\n<@MENTION>\t@\nworld\tN\n\nrt\t~\nlol\t!\n";
const DEV: &str = "good\tA\nday\tN\n\n";
const TEST: &str = "hello\t!\nunseen\tV\n\n";

#[test]
fn twitter_windows_and_token_fallback() {
    let ds = twitter::read([TRAIN.as_bytes(), DEV.as_bytes(), TEST.as_bytes()], None).unwrap();
    assert_eq!(ds.meta.class_names.len(), 25);
    assert_eq!(ds.meta.train_len, 7);
    assert_eq!(ds.meta.test_len, 2);
    // Tags in GLC's numbering: ! = 10, @ = 18, N = 0, ~ = 19, A = 8, V = 7.
    assert_eq!(ds.train.y, vec![10, 18, 0, 19, 10, 8, 0]);
    assert_eq!(ds.test.y, vec![10, 7]);
    // Vocabulary: 0 </s>, 1 UUUNKKK, then sorted train+dev tokens:
    // <@MENTION>=2, day=3, good=4, hello=5, lol=6, rt=7, world=8.
    assert_eq!(ds.meta.encoding, Encoding::Tokens { vocab: 9 });
    assert_eq!(ds.meta.example_shape, vec![3]);
    let Features::U32(x) = &ds.train.x else {
        panic!()
    };
    assert_eq!(&x[..9], &[0, 5, 2, 5, 2, 8, 2, 8, 0]);
    let Features::U32(t) = &ds.test.x else {
        panic!()
    };
    assert_eq!(t, &vec![0, 5, 1, 5, 1, 0]);
    assert!(ds.meta.notes[0].contains("FALLBACK"));
}

#[test]
fn twitter_with_embeddings_gives_150_features() {
    let vec50 = |v: f32| {
        (0..50)
            .map(|i| format!(" {}", v + i as f32 / 100.0))
            .collect::<String>()
    };
    let emb = format!(
        "UUUNKKK{}\n</s>{}\nhello{}\nworld{}\n",
        vec50(-1.0),
        vec50(0.0),
        vec50(1.0),
        vec50(2.0)
    );
    let ds = twitter::read(
        [TRAIN.as_bytes(), DEV.as_bytes(), TEST.as_bytes()],
        Some(emb.as_bytes()),
    )
    .unwrap();
    assert_eq!(ds.meta.example_shape, vec![150]);
    assert_eq!(ds.meta.encoding, Encoding::Features);
    let Features::F32(x) = &ds.train.x else {
        panic!()
    };
    // First window: (</s>, hello, <@MENTION>→UUUNKKK).
    assert_eq!((x[0], x[50], x[100], x[149]), (0.0, 1.0, -1.0, -1.0 + 0.49));
    // The fixture is not GLC's file: its blob id is refused, with the expected id named.
    let e = err(twitter::verify_embeddings(emb.as_bytes(), "emb.txt", None));
    assert!(
        e.contains(twitter::EMBEDDINGS_BLOB) && e.contains(&raw::git_blob_id(emb.as_bytes())),
        "{e}"
    );
    // ... and accepted under its own id when the params name it
    let own = raw::git_blob_id(emb.as_bytes());
    twitter::verify_embeddings(emb.as_bytes(), "emb.txt", Some(&own)).unwrap();
    let e = err(twitter::verify_embeddings(b"other", "emb.txt", Some(&own)));
    assert!(e.contains("embeddings_blob") && e.contains(&own), "{e}");
    let e = err(twitter::read(
        [TRAIN.as_bytes(), DEV.as_bytes(), TEST.as_bytes()],
        Some(b"hello 1 2\n"),
    ));
    assert!(e.contains("UUUNKKK"), "{e}");
}

#[test]
fn twitter_rejects_bad_lines() {
    let e = err(twitter::parse_tweets(
        b"hello\t!\nworld N\n",
        "tweets-train.txt",
    ));
    assert!(e.contains("tweets-train.txt line 2"), "{e}");
    let e = err(twitter::parse_tweets(b"hello\tQQ\n", "tweets-dev.txt"));
    assert!(e.contains("unknown tag `QQ`"), "{e}");
    assert!(twitter::parse_tweets(b"\n\n", "x").is_err());
}

// ----------------------------------------------------------------------------- Clothing1M

fn clothing_tree(root: &Path, annotations: bool) -> Vec<(&'static str, usize)> {
    let ann = if annotations {
        root.join("annotations")
    } else {
        root.to_path_buf()
    };
    std::fs::create_dir_all(&ann).unwrap();
    for d in ["images/0/00", "images/1/10"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let imgs = [
        "images/0/00/a.jpg",
        "images/0/00/b.jpg",
        "images/1/10/c.jpg",
        "images/1/10/d.jpg",
    ];
    for i in imgs {
        std::fs::write(root.join(i), b"\xff\xd8\xff").unwrap();
    }
    let files: [(&str, String); 7] = [
        (
            "category_names_eng.txt",
            clothing1m::CLASSES.join("\n") + "\n",
        ),
        (
            "noisy_label_kv.txt",
            "images/0/00/a.jpg 3\nimages/0/00/b.jpg 13\nimages/1/10/c.jpg 0\n".into(),
        ),
        (
            "clean_label_kv.txt",
            "images/1/10/c.jpg 1\nimages/1/10/d.jpg 2\n".into(),
        ),
        (
            "noisy_train_key_list.txt",
            "images/0/00/a.jpg\nimages/0/00/b.jpg\nimages/1/10/c.jpg\n".into(),
        ),
        ("clean_train_key_list.txt", "images/1/10/c.jpg\n".into()),
        ("clean_val_key_list.txt", "1/10/d.jpg\n".into()),
        ("clean_test_key_list.txt", "images/1/10/d.jpg\n".into()),
    ];
    // The key without the `images/` prefix needs its label under that spelling too.
    let mut out = Vec::new();
    for (n, mut text) in files {
        if n == "clean_label_kv.txt" {
            text += "1/10/d.jpg 2\n";
        }
        std::fs::write(ann.join(n), &text).unwrap();
        out.push((n, text.lines().count()));
    }
    out
}

#[test]
fn clothing1m_tree_is_checked_with_and_without_annotations_folder() {
    for annotations in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let counts = clothing_tree(dir.path(), annotations);
        let idx = clothing1m::Index::open(dir.path(), &counts, true).unwrap();
        assert_eq!(idx.noisy_train.labels, vec![3, 13, 0]);
        assert_eq!(idx.clean_train.labels, vec![1]);
        assert_eq!(idx.clean_val.paths[0], dir.path().join("images/1/10/d.jpg"));
        assert_eq!(idx.clean_test.labels, vec![2]);
        assert_eq!(idx.clean_train_noisy, vec![0]);
        let ds = idx
            .to_dataset(&clothing1m::DatasetOptions {
                resize: 8,
                crop: 6,
                ..Default::default()
            })
            .unwrap();
        // c.jpg has a clean label: it is a verified example only, never a noisy one.
        assert_eq!(
            ds.train.x,
            Features::Files(vec![
                "images/0/00/a.jpg".into(),
                "images/0/00/b.jpg".into(),
                "images/1/10/c.jpg".into()
            ])
        );
        assert_eq!(ds.train.y, vec![3, 13, 1]);
        let rn = ds.real_noise.clone().unwrap();
        assert_eq!((rn.verified, rn.noisy_of_verified), (vec![2], vec![0]));
        assert_eq!(ds.test.x, Features::Files(vec!["images/1/10/d.jpg".into()]));
        assert_eq!(ds.meta.example_shape, vec![3, 6, 6]);
        assert!(ds
            .meta
            .notes
            .iter()
            .any(|n| n.contains("1 noisy-train images that also have a clean label")));
        // The images are part of the identity.
        let again = ds.meta.identity.clone();
        std::fs::write(dir.path().join("images/0/00/a.jpg"), b"\xff\xd8\xfe").unwrap();
        let changed = idx
            .to_dataset(&clothing1m::DatasetOptions::default())
            .unwrap();
        assert_ne!(changed.meta.identity, again);
        let unhashed = idx
            .to_dataset(&clothing1m::DatasetOptions {
                hash_images: false,
                ..Default::default()
            })
            .unwrap();
        assert!(unhashed
            .meta
            .notes
            .iter()
            .any(|n| n.contains("images not hashed")));
        // Saved and loaded, the file lists and the real noise come back.
        let out = tempfile::tempdir().unwrap();
        ds.save(out.path()).unwrap();
        assert_eq!(Dataset::load(out.path()).unwrap(), ds);
        // The official line counts do not match this tiny tree.
        let e = err(clothing1m::Index::open(
            dir.path(),
            &clothing1m::OFFICIAL_LINES,
            false,
        ));
        assert!(
            e.contains("has 14 lines") || e.contains("lines, the official release has"),
            "{e}"
        );
    }
}

#[test]
fn clothing1m_errors_explain_how_to_obtain_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(clothing1m::Index::open(&dir.path().join("nope"), &[], true));
    assert!(
        e.contains("not a directory") && e.contains("ask its authors"),
        "{e}"
    );
    let counts = clothing_tree(dir.path(), false);
    std::fs::remove_file(dir.path().join("clean_val_key_list.txt")).unwrap();
    let e = err(clothing1m::Index::open(dir.path(), &counts, true));
    assert!(
        e.contains("clean_val_key_list.txt is missing") && e.contains("ask its authors"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let counts = clothing_tree(dir.path(), false);
    std::fs::remove_file(dir.path().join("images/0/00/b.jpg")).unwrap();
    let e = err(clothing1m::Index::open(dir.path(), &counts, true));
    assert!(e.contains("b.jpg") && e.contains("missing"), "{e}");
    std::fs::write(
        dir.path().join("noisy_label_kv.txt"),
        "images/0/00/a.jpg 14\nx 1\ny 1\n",
    )
    .unwrap();
    let e = err(clothing1m::Index::open(dir.path(), &counts, false));
    assert!(e.contains("label 14 outside"), "{e}");
}
