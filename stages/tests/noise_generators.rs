//! Label-noise generators and the `inject_noise` kind.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use repro_stages::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use repro_stages::data::split::class_counts;
use repro_stages::noise::{self, Corruption, Matrix, NoisyLabels, Trusted};
use repro_stages::{InputRef, Kind, NoProgress, StageContext};

const ALL: [Corruption; 6] = [
    Corruption::Uniform,
    Corruption::Flip,
    Corruption::Hierarchical,
    Corruption::MlcUniform,
    Corruption::MlcSymmetric,
    Corruption::MlcPair,
];

/// `n` labels cycling through `k` classes; coarse label = fine / 5 (CIFAR-100-like).
fn labels(n: usize, k: usize) -> (Vec<u32>, Vec<u32>) {
    let y: Vec<u32> = (0..n).map(|i| (i * 7 % k) as u32).collect();
    let c = y.iter().map(|&f| f / 5).collect();
    (y, c)
}

fn assert_stochastic(m: &Matrix) {
    for i in 0..m.k {
        let s: f64 = m.row(i).iter().sum();
        assert!((s - 1.0).abs() < 1e-12, "row {i} sums to {s}");
        assert!(m.row(i).iter().all(|&v| v >= 0.0));
    }
}

#[test]
fn every_matrix_row_sums_to_one() {
    let f2c: Vec<u32> = (0..100).map(|f| f / 5).collect();
    for p in [0.0, 0.1, 0.37, 0.5, 1.0] {
        assert_stochastic(&noise::uniform_mix_c(10, p));
        assert_stochastic(&noise::symmetric_c(10, p));
        assert_stochastic(&noise::flip_c(
            10,
            p,
            &mut noise::rng(1, noise::STREAM_MATRIX),
        ));
        assert_stochastic(&noise::hierarchical_c(&f2c, p));
        assert_stochastic(&noise::pair_c(&[1, 0, 0], p));
    }
    // uniform_mix: p/K off the diagonal, 1 - p + p/K on it.
    let u = noise::uniform_mix_c(4, 0.4);
    assert_eq!((u.at(0, 1), u.at(2, 2)), (0.1, 0.7));
    let f = noise::flip_c(10, 0.3, &mut noise::rng(5, noise::STREAM_MATRIX));
    for i in 0..10 {
        assert_eq!(f.at(i, i), 0.7);
        assert_eq!(f.row(i).iter().filter(|&&v| v == 0.3).count(), 1);
    }
}

#[test]
fn zero_strength_changes_nothing() {
    let (y, c) = labels(600, 100);
    for corr in ALL {
        let nl = noise::inject(
            &y,
            Some(&c),
            100,
            corr,
            0.0,
            Trusted::Fraction(0.1),
            3,
            ("t", "id"),
        )
        .unwrap();
        assert_eq!(nl.noisy, y, "{corr:?}");
        assert_eq!(nl.meta.actual_noise_rate, 0.0);
    }
}

#[test]
fn trusted_subset_is_stratified_seeded_and_clean() {
    let (y, c) = labels(1000, 10);
    let nl = noise::inject(
        &y,
        Some(&c),
        10,
        Corruption::Uniform,
        1.0,
        Trusted::Fraction(0.05),
        7,
        ("t", "id"),
    )
    .unwrap();
    assert_eq!(nl.trusted.len(), 50);
    let ty: Vec<u32> = nl.trusted.iter().map(|&i| y[i as usize]).collect();
    assert_eq!(class_counts(&ty, 10), vec![5; 10]);
    assert!(nl.trusted.windows(2).all(|w| w[0] < w[1]));
    for &i in &nl.trusted {
        assert_eq!(nl.noisy[i as usize], y[i as usize]);
    }
    // The trusted subset does not depend on the corruption, only on the seed.
    let other = noise::inject(
        &y,
        Some(&c),
        10,
        Corruption::MlcPair,
        0.4,
        Trusted::Fraction(0.05),
        7,
        ("t", "id"),
    )
    .unwrap();
    assert_eq!(other.trusted, nl.trusted);
    let seed8 = noise::inject(
        &y,
        Some(&c),
        10,
        Corruption::Uniform,
        1.0,
        Trusted::Fraction(0.05),
        8,
        ("t", "id"),
    )
    .unwrap();
    assert_ne!(seed8.trusted, nl.trusted);
    // Per class (MLC protocol).
    let pc = noise::inject(
        &y,
        None,
        10,
        Corruption::Flip,
        0.2,
        Trusted::PerClass(3),
        7,
        ("t", "id"),
    )
    .unwrap();
    let ty: Vec<u32> = pc.trusted.iter().map(|&i| y[i as usize]).collect();
    assert_eq!(class_counts(&ty, 10), vec![3; 10]);
    assert_eq!(pc.meta.trusted_fraction, 0.03);
    assert!(noise::inject(
        &y,
        None,
        10,
        Corruption::Flip,
        0.2,
        Trusted::PerClass(101),
        7,
        ("t", "id")
    )
    .is_err());
}

/// Literal values recorded from this implementation (ChaCha8Rng, rand 0.9): a change in
/// any of them means a seed no longer reproduces the same noisy labels.
#[test]
fn fixed_seed_gives_exact_counts() {
    let (y, _) = labels(1000, 10);
    let nl = noise::inject(
        &y,
        None,
        10,
        Corruption::Uniform,
        0.5,
        Trusted::Fraction(0.1),
        1,
        ("t", "id"),
    )
    .unwrap();
    let flipped = (0..1000).filter(|&i| nl.noisy[i] != y[i]).count();
    assert_eq!(flipped, FLIPPED_UNIFORM);
    assert_eq!(&nl.trusted[..5], &TRUSTED_HEAD);
    // The per-seed flip draw (`flip_targets: per_seed`); GLC's draw is held to NumPy below.
    let per_seed = noise::Injection {
        corruption: Corruption::Flip,
        flip_targets: noise::FlipTargets::PerSeed,
        strength: 0.5,
        trusted: Trusted::Fraction(0.1),
        seed: 1,
    };
    let fl = noise::inject_with(&y, None, 10, &per_seed, ("t", "id")).unwrap();
    let flipped = (0..1000).filter(|&i| fl.noisy[i] != y[i]).count();
    assert_eq!(flipped, FLIPPED_FLIP);
    assert_eq!(class_counts(&fl.noisy, 10), FLIP_COUNTS.to_vec());
}
const FLIPPED_UNIFORM: usize = 414; // expectation 900 * 0.45 = 405
const TRUSTED_HEAD: [u32; 5] = [0, 1, 2, 15, 32];
const FLIPPED_FLIP: usize = 487; // expectation 900 * 0.5 = 450
const FLIP_COUNTS: [usize; 10] = [52, 104, 103, 104, 96, 50, 92, 104, 140, 155];

#[test]
fn realized_matrix_approaches_c_as_n_grows() {
    for corr in [Corruption::Uniform, Corruption::Flip] {
        let dist = |n: usize| {
            let (y, _) = labels(n, 10);
            let nl = noise::inject(
                &y,
                None,
                10,
                corr,
                0.6,
                Trusted::Fraction(0.0),
                2,
                ("t", "id"),
            )
            .unwrap();
            nl.realized_c.mean_row_l1_distance(&nl.true_c)
        };
        let (small, large) = (dist(500), dist(200_000));
        assert!(large < small, "{corr:?}: {large} !< {small}");
        assert!(large < 0.03, "{corr:?}: {large}");
    }
    // Actual noise rate of uniform_mix is p(K-1)/K.
    let (y, _) = labels(200_000, 10);
    let nl = noise::inject(
        &y,
        None,
        10,
        Corruption::Uniform,
        0.6,
        Trusted::Fraction(0.0),
        2,
        ("t", "id"),
    )
    .unwrap();
    assert!(
        (nl.meta.actual_noise_rate - 0.54).abs() < 0.005,
        "{}",
        nl.meta.actual_noise_rate
    );
}

#[test]
fn hierarchical_noise_never_leaves_the_superclass() {
    let (y, c) = labels(20_000, 100);
    let nl = noise::inject(
        &y,
        Some(&c),
        100,
        Corruption::Hierarchical,
        1.0,
        Trusted::Fraction(0.0),
        4,
        ("t", "id"),
    )
    .unwrap();
    for (i, (&noisy, &clean)) in nl.noisy.iter().zip(&y).enumerate() {
        assert_eq!(noisy / 5, clean / 5, "example {i} left its superclass");
        assert_ne!(noisy, clean);
    }
    // p spread evenly over the 4 siblings.
    assert_eq!(nl.true_c.at(0, 1), 0.25);
    assert_eq!(nl.true_c.at(0, 5), 0.0);
    // Without coarse labels it is refused.
    let e = noise::inject(
        &y,
        None,
        100,
        Corruption::Hierarchical,
        0.5,
        Trusted::Fraction(0.0),
        4,
        ("t", "id"),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("coarse labels"), "{e:#}");
}

/// Confusion counts `[clean][noisy]` over the untrusted examples.
fn confusion(nl: &NoisyLabels, k: usize) -> Vec<Vec<usize>> {
    let mask = nl.trusted_mask();
    let mut m = vec![vec![0usize; k]; k];
    for i in 0..nl.clean.len() {
        if !mask[i] {
            m[nl.clean[i] as usize][nl.noisy[i] as usize] += 1;
        }
    }
    m
}

#[test]
fn mlc_generators_relabel_exact_counts_per_class() {
    // 110 examples per class, 10 trusted per class -> 100 untrusted per class; r = 0.4.
    let (y, _) = labels(1100, 10);
    let run =
        |c| noise::inject(&y, None, 10, c, 0.4, Trusted::PerClass(10), 9, ("t", "id")).unwrap();
    // Uniform: 40 chosen per class, 4 relabelled to each class (so 4 keep their label).
    let nl = run(Corruption::MlcUniform);
    for (c, row) in confusion(&nl, 10).iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            assert_eq!(n, if j == c { 64 } else { 4 }, "class {c} -> {j}");
        }
    }
    assert_eq!(nl.realized_c, nl.true_c);
    assert!((nl.meta.actual_noise_rate - 0.36).abs() < 1e-12);
    // Symmetric: exactly 40 of each class change, never to the true class.
    let nl = run(Corruption::MlcSymmetric);
    for (c, row) in confusion(&nl, 10).iter().enumerate() {
        assert_eq!(row[c], 60);
        assert_eq!(row.iter().sum::<usize>(), 100);
    }
    assert_eq!(nl.true_c, noise::symmetric_c(10, 0.4));
    // Pair: exactly 40 of each class go to one other class.
    let nl = run(Corruption::MlcPair);
    for (c, row) in confusion(&nl, 10).iter().enumerate() {
        let mut nz: Vec<usize> = row.iter().copied().filter(|&n| n > 0).collect();
        nz.sort();
        assert_eq!(nz, vec![40, 60], "class {c}: {row:?}");
        assert_eq!(row[c], 60);
    }
    assert_eq!(nl.realized_c, nl.true_c);
    // A count that K does not divide: 35 chosen = 3 per class + 5 distinct extra classes.
    let nl = noise::inject(
        &y,
        None,
        10,
        Corruption::MlcUniform,
        0.35,
        Trusted::PerClass(10),
        9,
        ("t", "id"),
    )
    .unwrap();
    for row in confusion(&nl, 10) {
        let off_or_on: Vec<usize> = row.clone();
        assert_eq!(off_or_on.iter().sum::<usize>(), 100);
    }
    let rows = confusion(&nl, 10);
    for (c, row) in rows.iter().enumerate() {
        // 65 unchosen keep the label, plus 3 or 4 chosen ones drawing their own class.
        assert!(row[c] == 68 || row[c] == 69, "class {c}: {row:?}");
        assert!(row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != c)
            .all(|(_, &n)| n == 3 || n == 4));
    }
}

#[test]
fn same_seed_same_labels() {
    let (y, c) = labels(3000, 100);
    for corr in ALL {
        let a = noise::inject(
            &y,
            Some(&c),
            100,
            corr,
            0.5,
            Trusted::Fraction(0.1),
            11,
            ("t", "id"),
        )
        .unwrap();
        let b = noise::inject(
            &y,
            Some(&c),
            100,
            corr,
            0.5,
            Trusted::Fraction(0.1),
            11,
            ("t", "id"),
        )
        .unwrap();
        assert_eq!(a, b);
        let d = noise::inject(
            &y,
            Some(&c),
            100,
            corr,
            0.5,
            Trusted::Fraction(0.1),
            12,
            ("t", "id"),
        )
        .unwrap();
        assert_ne!(a.noisy, d.noisy, "{corr:?}");
    }
}

fn tiny_dataset(n: usize) -> Dataset {
    let (y, _) = labels(n, 10);
    Dataset {
        meta: DatasetMeta {
            name: "tiny".into(),
            identity: "abc".into(),
            num_classes: 10,
            class_names: (0..10).map(|i| i.to_string()).collect(),
            num_coarse: None,
            example_shape: vec![1],
            encoding: Encoding::Features,
            train_len: n,
            test_len: 1,
            notes: vec![],
        },
        train: Split {
            x: Features::F32(vec![0.0; n]),
            y,
            coarse: None,
        },
        test: Split {
            x: Features::F32(vec![0.0]),
            y: vec![0],
            coarse: None,
        },
        real_noise: None,
    }
}

#[test]
fn inject_noise_kind_writes_identical_bytes_for_a_seed() {
    let data = tempfile::tempdir().unwrap();
    let ds = tiny_dataset(500);
    ds.save(data.path()).unwrap();
    let stop = AtomicBool::new(false);
    let params =
        serde_json::json!({"corruption": "flip", "strength": 0.3, "trusted_fraction": 0.1});
    Kind::InjectNoise.validate(&params).unwrap();
    let run = || {
        let out = tempfile::tempdir().unwrap();
        let ctx = StageContext {
            member: "inject_noise[test]".into(),
            profile: "test".into(),
            seed: 5,
            coords: BTreeMap::new(),
            inputs: BTreeMap::from([(
                "data".to_string(),
                vec![InputRef {
                    dir: data.path().to_path_buf(),
                    member: "download[tiny]".into(),
                    coords: BTreeMap::new(),
                }],
            )]),
            out_dir: out.path().to_path_buf(),
            checkpoint_dir: out.path().join("ckpt"),
            project_dir: out.path().to_path_buf(),
            download_dir: out.path().join("dl"),
            threads: 1,
            progress: &NoProgress,
            stop: &stop,
        };
        Kind::InjectNoise.run(&params, &ctx).unwrap();
        let bytes = (
            std::fs::read(out.path().join(noise::TENSORS_FILE)).unwrap(),
            std::fs::read(out.path().join(noise::META_FILE)).unwrap(),
        );
        (NoisyLabels::load(out.path()).unwrap(), bytes)
    };
    let (a, ba) = run();
    let (_, bb) = run();
    assert_eq!(ba, bb);
    assert_eq!(a.meta.num_trusted, 50);
    assert_eq!(a.meta.num_untrusted, 450);
    assert_eq!(a.meta.corruption, "flip");
    assert_eq!(a.meta.dataset_identity, "abc");
    assert_eq!(a.clean, ds.train.y);
    let expected = noise::inject(
        &ds.train.y,
        None,
        10,
        Corruption::Flip,
        0.3,
        Trusted::Fraction(0.1),
        5,
        ("tiny", "abc"),
    )
    .unwrap();
    assert_eq!(a, expected);
    let e = Kind::InjectNoise
        .validate(&serde_json::json!({"corruption": "flip", "strength": 1.5}))
        .unwrap_err();
    assert!(e.contains("strength must be in [0, 1], got 1.5"), "{e}");
    let e = Kind::InjectNoise
        .validate(&serde_json::json!({"corruption": "flip", "trusted_fraction": -0.1}))
        .unwrap_err();
    assert!(e.contains("trusted_fraction must be in [0, 1]"), "{e}");
    let p: repro_stages::kinds::inject_noise::Params = serde_json::from_value(
        serde_json::json!({"corruption": "flip", "trusted_fraction": 0.1, "trusted_per_class": 5}),
    )
    .unwrap();
    assert!(repro_stages::kinds::inject_noise::make(&p, &tiny_dataset(100), 0).is_err());
    assert!(Kind::InjectNoise
        .validate(&serde_json::json!({"corruption": "sideways"}))
        .is_err());
}

fn params(v: serde_json::Value) -> repro_stages::kinds::inject_noise::Params {
    serde_json::from_value(v).unwrap()
}

#[test]
fn real_noise_trusts_the_verified_examples_and_measures_c_on_their_noisy_labels() {
    use repro_stages::data::dataset::{RealNoise, NO_LABEL};
    let mut ds = tiny_dataset(20);
    // Examples 10..20 are verified. Class pairs (verified, noisy): (y, y) twice, (y, y+1)
    // once for classes 0 and 1; the others have no noisy label, so their rows stay identity.
    ds.train.y[10..20].copy_from_slice(&[0, 0, 0, 1, 1, 1, 2, 3, 4, 5]);
    let noisy_of_verified = vec![0, 0, 1, 1, 2, 1, NO_LABEL, NO_LABEL, NO_LABEL, NO_LABEL];
    ds.real_noise = Some(RealNoise {
        verified: (10..20).collect(),
        noisy_of_verified,
    });
    let nl = repro_stages::kinds::inject_noise::make(
        &params(serde_json::json!({"corruption": "real"})),
        &ds,
        3,
    )
    .unwrap();
    assert_eq!(nl.trusted, (10..20).collect::<Vec<u32>>());
    assert_eq!(nl.noisy, ds.train.y);
    assert_eq!(nl.clean, ds.train.y);
    assert_eq!((nl.meta.num_trusted, nl.meta.num_untrusted), (10, 10));
    assert_eq!(nl.meta.corruption, "real");
    // 2 of 6 pairs differ.
    assert!((nl.meta.actual_noise_rate - 2.0 / 6.0).abs() < 1e-12);
    assert_eq!(nl.meta.strength, nl.meta.actual_noise_rate);
    assert!((nl.meta.trusted_fraction - 0.5).abs() < 1e-12);
    let third = 1.0 / 3.0;
    assert_eq!(&nl.true_c.row(0)[..3], &[2.0 * third, third, 0.0]);
    assert_eq!(&nl.true_c.row(1)[..3], &[0.0, 2.0 * third, third]);
    assert_eq!(nl.true_c.row(2), Matrix::identity(10).row(2));
    assert_eq!(nl.realized_c, nl.true_c);
    // The noise comes with the data: nothing else may be asked for.
    let e = repro_stages::kinds::inject_noise::make(
        &params(serde_json::json!({"corruption": "real", "strength": 0.2})),
        &ds,
        3,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("takes no strength"), "{e:#}");
    let e = repro_stages::kinds::inject_noise::make(
        &params(serde_json::json!({"corruption": "flip", "strength": 0.2})),
        &ds,
        3,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("use `corruption: real`"), "{e:#}");
    let e = repro_stages::kinds::inject_noise::make(
        &params(serde_json::json!({"corruption": "real"})),
        &tiny_dataset(20),
        3,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("has no noise of its own"),
        "{e:#}"
    );
}

// ---------------------------------------------------------------------------------------
// GLC's flip matrix, as NumPy draws it
// ---------------------------------------------------------------------------------------

/// The target class of each row of GLC's flip matrix for K classes, computed with NumPy
/// 2.4.6 (`pip install numpy` in a venv) by GLC's own function, copied verbatim from
/// `mmazeika/glc` (`CIFAR/load_corrupted_data.py`):
///
/// ```python
/// import numpy as np
/// def flip_labels_C(corruption_prob, num_classes, seed=1):
///     np.random.seed(seed)
///     C = np.eye(num_classes) * (1 - corruption_prob)
///     row_indices = np.arange(num_classes)
///     for i in range(num_classes):
///         C[i][np.random.choice(row_indices[row_indices != i])] = corruption_prob
///     return C
/// for k in (2, 3, 10, 14, 100):
///     C = flip_labels_C(0.5, k)
///     t = []
///     for i in range(k):
///         r = C[i].copy(); r[i] = 0.0
///         assert (r == 0.5).sum() == 1
///         t.append(int(np.argmax(r)))
///     print(k, t)
/// ```
const NUMPY_GLC_TARGETS: [(usize, &[usize]); 5] = [
    (2, &[1, 0]),
    (3, &[2, 2, 0]),
    (10, &[6, 9, 6, 0, 0, 1, 8, 6, 2, 4]),
    (14, &[6, 12, 13, 9, 10, 12, 5, 0, 0, 1, 13, 7, 13, 6]),
    (
        100,
        &[
            38, 13, 73, 10, 76, 6, 80, 65, 17, 1, 77, 72, 6, 26, 51, 21, 19, 85, 11, 29, 30, 14,
            51, 69, 88, 88, 95, 97, 87, 13, 9, 7, 64, 62, 22, 58, 1, 0, 61, 82, 8, 89, 13, 48, 73,
            30, 72, 3, 71, 21, 49, 58, 3, 69, 24, 43, 77, 26, 52, 81, 41, 83, 15, 65, 69, 25, 99,
            88, 7, 26, 25, 22, 9, 67, 23, 27, 37, 57, 84, 38, 8, 32, 34, 10, 23, 15, 88, 25, 71,
            93, 74, 62, 46, 32, 88, 23, 55, 65, 77, 3,
        ],
    ),
];

#[test]
fn mt19937_seeded_with_1_gives_numpys_outputs() {
    use repro_stages::numpy_legacy::Mt19937;
    // NumPy 2.4.6: `r = np.random.RandomState(1); x = r.randint(0, 2**32, size=2000,
    // dtype=np.uint64)` (a full 32-bit range returns the raw outputs); x[:10], then x[623],
    // x[624] (either side of the first twist after the initial one), x[1247], x[1999].
    let mut r = Mt19937::new(1);
    let first: Vec<u32> = (0..10).map(|_| r.next_u32()).collect();
    assert_eq!(
        first,
        [
            1791095845, 4282876139, 3093770124, 4005303368, 491263, 550290313, 1298508491,
            4290846341, 630311759, 1013994432
        ]
    );
    let mut r = Mt19937::new(1);
    let all: Vec<u32> = (0..2000).map(|_| r.next_u32()).collect();
    assert_eq!(
        (all[623], all[624], all[1247], all[1999]),
        (2006116153, 1104314680, 1926754611, 138279050)
    );
}

#[test]
fn bounded_draws_match_numpys_legacy_randint() {
    use repro_stages::numpy_legacy::Mt19937;
    // NumPy 2.4.6: `list(np.random.RandomState(s).randint(0, n, size=20))` for (s, n) =
    // (1, 7), (1, 100), (12345, 3): masked rejection on the low bits of 32-bit outputs.
    let cases: [(u32, u32, [u32; 20]); 3] = [
        (
            1,
            7,
            [5, 3, 4, 0, 1, 3, 5, 0, 0, 1, 4, 5, 4, 6, 1, 2, 4, 6, 5, 2],
        ),
        (
            1,
            100,
            [
                37, 12, 72, 9, 75, 5, 79, 64, 16, 1, 76, 71, 6, 25, 50, 20, 18, 84, 11, 28,
            ],
        ),
        (
            12345,
            3,
            [2, 1, 1, 1, 0, 1, 2, 2, 1, 2, 1, 1, 2, 1, 2, 1, 2, 0, 2, 1],
        ),
    ];
    for (seed, n, want) in cases {
        let mut r = Mt19937::new(seed);
        let got: Vec<u32> = (0..20).map(|_| r.bounded(n - 1)).collect();
        assert_eq!(got, want, "seed {seed}, randint(0, {n})");
    }
    // One possible value consumes no output (NumPy returns it without drawing).
    let mut a = Mt19937::new(1);
    assert_eq!(a.bounded(0), 0);
    assert_eq!(a.next_u32(), 1791095845);
}

#[test]
fn glc_flip_targets_match_numpy_seed_1() {
    for (k, want) in NUMPY_GLC_TARGETS {
        assert_eq!(
            repro_stages::numpy_legacy::glc_flip_targets(k, 1),
            want,
            "K = {k}"
        );
        // The matrix: 1 − p on the diagonal, p at each row's target, nothing else.
        let c = noise::glc_flip_c(k, 0.3);
        assert_stochastic(&c);
        for (i, &t) in want.iter().enumerate() {
            assert_eq!(c.at(i, i), 0.7);
            assert_eq!(c.at(i, t), 0.3);
        }
    }
}

#[test]
fn flip_uses_glcs_matrix_for_every_seed_by_default() {
    let (y, _) = labels(1000, 10);
    let glc = noise::glc_flip_c(10, 0.4);
    for seed in [1, 2, 3, 17] {
        let nl = noise::inject(
            &y,
            None,
            10,
            Corruption::Flip,
            0.4,
            Trusted::Fraction(0.05),
            seed,
            ("t", "id"),
        )
        .unwrap();
        assert_eq!(nl.true_c, glc, "seed {seed}");
        // Every corrupted label went to its class's GLC target.
        for i in 0..y.len() {
            let (c, n) = (y[i] as usize, nl.noisy[i] as usize);
            assert!(n == c || glc.at(c, n) == 0.4, "example {i}: {c} -> {n}");
        }
    }
    // The kind's default is the same.
    let p = params(serde_json::json!({"corruption": "flip", "strength": 0.4}));
    assert_eq!(p.flip_targets, noise::FlipTargets::Glc);
    let nl = repro_stages::kinds::inject_noise::make(&p, &tiny_dataset(300), 9).unwrap();
    assert_eq!(nl.true_c, glc);
}

#[test]
fn per_seed_flip_draw_is_kept_behind_its_param() {
    let ds = tiny_dataset(300);
    let p = params(
        serde_json::json!({"corruption": "flip", "strength": 0.4, "flip_targets": "per_seed"}),
    );
    Kind::InjectNoise
        .validate(&serde_json::json!({"corruption": "flip", "flip_targets": "per_seed"}))
        .unwrap();
    let mut matrices = Vec::new();
    for seed in [1u64, 2, 3] {
        let nl = repro_stages::kinds::inject_noise::make(&p, &ds, seed).unwrap();
        // The per-seed draw: flip_c on the seed's matrix stream.
        let want = noise::flip_c(10, 0.4, &mut noise::rng(seed, noise::STREAM_MATRIX));
        assert_eq!(nl.true_c, want, "seed {seed}");
        matrices.push(nl.true_c);
    }
    assert!(
        matrices[0] != matrices[1] || matrices[1] != matrices[2],
        "three seeds drew one matrix: the draw is not per seed"
    );
    let e = Kind::InjectNoise
        .validate(&serde_json::json!({"corruption": "flip", "flip_targets": "numpy"}))
        .unwrap_err();
    assert!(e.contains("expected `glc` or `per_seed`"), "{e}");
}
