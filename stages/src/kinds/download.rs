//! `download`: fetches a dataset's raw files from mirrors, verifies them, and converts them
//! into the internal dataset format ([`crate::data::dataset`]).
//!
//! What it computes: for each raw file of `dataset` (built-in mirrors and checksums in
//! [`crate::data::sources`], overridable by `files`), a verified copy in the shared
//! download cache `<download_dir>/<dataset>/<name>` ([`crate::data::fetch`]: streamed,
//! hashed as it arrives, resumed with HTTP Range, retried with exponential backoff across
//! mirrors, the env var `REPRO_MIRROR` tried first as `$REPRO_MIRROR/<dataset>/<name>`; a
//! file placed there by hand is verified and used with no network). Then the dataset's
//! reader turns the raw bytes into [`Dataset`], whose identity is the SHA-256 of the raw
//! (decompressed) content, or, for several files, of their raw digests in the reader's
//! order ([`crate::data::raw::identity`]).
//!
//! Datasets: `digits` (the embedded UCI optdigits, `file://data/optdigits/digits.csv.gz`;
//! seeded stratified split), `mnist`, `fashion_mnist` (IDX), `cifar10`, `cifar100` (binary
//! archives), `twitter` (GLC's Twitter POS; optional hand-placed embeddings), `clothing1m`
//! (a hand-placed root only: key lists, labels and images are checked, and the dataset
//! refers to the images in place, decoded batch by batch during training).
//!
//! Inputs: none. Outputs: `dataset.safetensors`, `dataset.json`.
//! Papers: the data of Hendrycks et al. 2018 (GLC) and Wang et al. 2020 (MLC).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::data::fetch::{self, FetchOptions, FileSpec};
use crate::data::sources::DatasetName;
use crate::data::{cifar, clothing1m, digits, idx, raw, twitter};
use crate::declared::Inputs;
use crate::stage_kind::StageKind;

/// The environment variable naming an extra first mirror (base URL or directory).
pub const MIRROR_ENV: &str = "REPRO_MIRROR";

fn default_timeout() -> f64 {
    5.0
}
fn default_read_timeout() -> f64 {
    30.0
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which dataset: `digits` | `mnist` | `fashion_mnist` | `cifar10` | `cifar100` |
    /// `twitter` | `clothing1m`. Required.
    pub dataset: DatasetName,
    /// Replacements for built-in file specs, matched by `name` (each entry: `name`,
    /// `sha256`, `raw_sha256`, `md5`, `mirrors`; see [`FileSpec`]). Default: none (the
    /// built-in mirrors and checksums).
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// A folder of its own in the download cache (a plain name): the files are kept in
    /// `<download_dir>/<cache>/<dataset>/` instead of the shared `<dataset>/` folder, so
    /// that copies other than the published files (`paper_smoke`'s synthetic ones, with
    /// their own `files` checksums) never meet the real ones. Default: none.
    #[serde(default)]
    pub cache: Option<String>,
    /// `digits` only: examples in the test split. Default 500.
    #[serde(default)]
    pub test_size: Option<usize>,
    /// `digits`: seed of the stratified train/test split; `clothing1m`: seed of the
    /// `max_noisy` subset. Default 0.
    #[serde(default)]
    pub split_seed: Option<u64>,
    /// `twitter` only: path of GLC's `embeddings-twitter.txt` (relative to the project),
    /// verified by its git blob id. Default: none, then the token-id fallback is used and
    /// labelled in `dataset.json` notes.
    #[serde(default)]
    pub embeddings: Option<PathBuf>,
    /// `twitter` only: the git blob id the `embeddings` file must have, for a word-vector
    /// file other than GLC's. Default: GLC's ([`twitter::EMBEDDINGS_BLOB`]).
    #[serde(default)]
    pub embeddings_blob: Option<String>,
    /// `clothing1m` only: the hand-placed dataset root. Required for `clothing1m`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `clothing1m` only: shorter image side after resizing. Default 256.
    #[serde(default)]
    pub resize: Option<usize>,
    /// `clothing1m` only: side of the square crop the network sees. Default 224.
    #[serde(default)]
    pub crop: Option<usize>,
    /// `clothing1m` only: keep this many noisy training images (a seeded subset, for
    /// smaller runs). Default: all 1,000,000.
    #[serde(default)]
    pub max_noisy: Option<usize>,
    /// `clothing1m` only: require the official release's line counts. Default true;
    /// false accepts a partial copy (the identity still covers what was read).
    #[serde(default)]
    pub check_counts: Option<bool>,
    /// `clothing1m` only: digest every image into the dataset identity (one read of all
    /// images). Default true; false digests the annotation files only, and says so in
    /// `dataset.json`'s notes.
    #[serde(default)]
    pub hash_images: Option<bool>,
    /// `cifar10` and `cifar100` only: the per-channel input normalisation written into
    /// `dataset.json`: `glc` (default; GLC's mean and std, `cifar::GLC_MEAN`, `GLC_STD`)
    /// or `half` (mean 0.5 and std 0.5 for every channel, the released MLC code's
    /// `Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`, `load_cifar10_data.py:70-75`).
    #[serde(default)]
    pub normalization: Option<CifarNormalization>,
    /// Seconds a mirror may take to be resolved, to accept the connection, and to send
    /// the first byte of its answer; a mirror that does not is dropped (see
    /// [`crate::data::fetch`]). Default 5.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Seconds a transfer may wait for its next bytes once the mirror has answered (a
    /// limit between reads, not on the whole transfer: a slow but live mirror is never
    /// cut off). A mirror that sends its headers and then no byte for this long is dropped
    /// like one that does not answer. Default 30.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: f64,
    /// Extra rounds over all mirrors after the first. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the second round in seconds, doubled each further round. Default 1.
    #[serde(default = "default_backoff")]
    pub backoff_secs: f64,
}

/// The per-channel normalisation of a CIFAR dataset's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CifarNormalization {
    /// GLC's mean and std (the default).
    Glc,
    /// Mean 0.5 and std 0.5 per channel: inputs in [-1, 1].
    Half,
}

impl StageKind for Params {
    const VERSION: u32 = 1;

    /// Refuses sizes that cannot be meant ([`crate::bounds`]): image sides, waits, rounds.
    fn check(&self) -> Result<(), String> {
        use crate::bounds::{at_most, MAX_IMAGE_SIDE, MAX_RETRIES, MAX_WAIT_SECS};
        for (f, v) in [("resize", self.resize), ("crop", self.crop)] {
            at_most(f, v.unwrap_or(0), MAX_IMAGE_SIDE, "pixels")?;
        }
        for (f, v) in [
            ("timeout_secs", self.timeout_secs),
            ("read_timeout_secs", self.read_timeout_secs),
            ("backoff_secs", self.backoff_secs),
        ] {
            let (ok, range) = if f == "backoff_secs" {
                (v >= 0.0, "[0, 3600]")
            } else {
                (v > 0.0, "(0, 3600]")
            };
            if !(ok && v <= MAX_WAIT_SECS) {
                return Err(format!("field `{f}`: {v} s is outside {range} s"));
            }
        }
        at_most(
            "retries",
            self.retries as usize,
            MAX_RETRIES as usize,
            "rounds",
        )
    }

    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        inputs.only(&[])
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

/// The dataset's file specs after applying `files` overrides.
pub fn file_specs(p: &Params) -> Result<Vec<FileSpec>> {
    let mut specs = p.dataset.default_files();
    for o in &p.files {
        match specs.iter_mut().find(|s| s.name == o.name) {
            Some(s) => *s = o.clone(),
            None => bail!(
                "files: `{}` is not a file of {} (its files: {})",
                o.name,
                p.dataset.as_str(),
                specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    for s in &specs {
        s.check().with_context(|| format!("files: `{}`", s.name))?;
    }
    Ok(specs)
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let ds = load(p, ctx)?;
    ds.save(&ctx.out_dir)
        .with_context(|| format!("writing the dataset to {}", ctx.out_dir.display()))
}

/// Fetches and reads the dataset (everything `run` does except writing it).
pub fn load(p: &Params, ctx: &StageContext) -> Result<Dataset> {
    check_fields(p)?;
    if p.dataset == DatasetName::Clothing1m {
        return load_clothing1m(p, ctx);
    }
    let paths = fetch_files(p, ctx)?;
    ctx.progress
        .message(&format!("{}: reading", p.dataset.as_str()));
    read_files(p, ctx, &paths)
}

/// Refuses waits that are not positive (backoff: negative) and a dataset-specific field
/// set for a dataset it does not apply to.
fn check_fields(p: &Params) -> Result<()> {
    use DatasetName as D;
    let name = p.dataset.as_str();
    ensure!(
        p.timeout_secs > 0.0 && p.timeout_secs.is_finite(),
        "timeout_secs must be positive"
    );
    ensure!(
        p.read_timeout_secs > 0.0 && p.read_timeout_secs.is_finite(),
        "read_timeout_secs must be positive"
    );
    ensure!(
        p.backoff_secs >= 0.0 && p.backoff_secs.is_finite(),
        "backoff_secs must be >= 0"
    );
    let only = |set: bool, field: &str, ds: &[D]| -> Result<()> {
        ensure!(
            !set || ds.contains(&p.dataset),
            "`{field}` does not apply to dataset {name}"
        );
        Ok(())
    };
    only(p.test_size.is_some(), "test_size", &[D::Digits])?;
    only(
        p.split_seed.is_some(),
        "split_seed",
        &[D::Digits, D::Clothing1m],
    )?;
    only(p.embeddings.is_some(), "embeddings", &[D::Twitter])?;
    only(
        p.embeddings_blob.is_some(),
        "embeddings_blob",
        &[D::Twitter],
    )?;
    ensure!(
        p.embeddings_blob.is_none() || p.embeddings.is_some(),
        "`embeddings_blob` needs an `embeddings` file to check"
    );
    if let Some(c) = &p.cache {
        ensure!(
            !c.is_empty() && !c.contains(['/', '\\']) && c != "." && c != "..",
            "`cache` must be a plain folder name, got `{c}`"
        );
    }
    only(
        p.normalization.is_some(),
        "normalization",
        &[D::Cifar10, D::Cifar100],
    )?;
    for (set, field) in [
        (p.root.is_some(), "root"),
        (p.resize.is_some(), "resize"),
        (p.crop.is_some(), "crop"),
        (p.max_noisy.is_some(), "max_noisy"),
        (p.check_counts.is_some(), "check_counts"),
        (p.hash_images.is_some(), "hash_images"),
    ] {
        only(set, field, &[D::Clothing1m])?;
    }
    only(
        !p.files.is_empty(),
        "files",
        &[
            D::Digits,
            D::Mnist,
            D::FashionMnist,
            D::Cifar10,
            D::Cifar100,
            D::Twitter,
        ],
    )
}

/// Clothing1M from its hand-placed root: the key lists and images are checked, and the
/// dataset refers to the images in place.
fn load_clothing1m(p: &Params, ctx: &StageContext) -> Result<Dataset> {
    let Some(root) = &p.root else {
        bail!(
            "clothing1m needs the `root` param. {}",
            clothing1m::HOW_TO_OBTAIN
        );
    };
    let expected: &[(&str, usize)] = if p.check_counts.unwrap_or(true) {
        &clothing1m::OFFICIAL_LINES
    } else {
        &[]
    };
    ctx.progress
        .message("clothing1m: checking the key lists and images");
    let index = clothing1m::Index::open(&ctx.project_path(root), expected, true)?;
    let d = clothing1m::DatasetOptions::default();
    let opts = clothing1m::DatasetOptions {
        resize: p.resize.unwrap_or(d.resize),
        crop: p.crop.unwrap_or(d.crop),
        max_noisy: p.max_noisy,
        seed: p.split_seed.unwrap_or(0),
        hash_images: p.hash_images.unwrap_or(true),
    };
    if opts.hash_images {
        ctx.progress.message("clothing1m: digesting the images");
    }
    index.to_dataset(&opts)
}

/// Verified copies of the dataset's raw files in the download cache, in spec order.
fn fetch_files(p: &Params, ctx: &StageContext) -> Result<Vec<PathBuf>> {
    let name = p.dataset.as_str();
    let specs = file_specs(p)?;
    let env_mirror = std::env::var(MIRROR_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let cache = match &p.cache {
        Some(c) => ctx.download_dir.join(c),
        None => ctx.download_dir.clone(),
    };
    let opts = FetchOptions {
        dir: cache.join(name),
        project_dir: ctx.project_dir.clone(),
        first_mirror: env_mirror.map(|m| fetch::join_base(&m, name)),
        timeout: Duration::from_secs_f64(p.timeout_secs),
        read_timeout: Duration::from_secs_f64(p.read_timeout_secs),
        retries: p.retries,
        backoff: Duration::from_secs_f64(p.backoff_secs),
        progress: ctx.progress,
        stop: Some(ctx.stop),
    };
    let mut paths = Vec::new();
    for s in &specs {
        ctx.progress.message(&format!("{name}: {}", s.name));
        paths.push(fetch::fetch(s, &opts)?);
    }
    Ok(paths)
}

/// The dataset's reader over its fetched raw files.
fn read_files(p: &Params, ctx: &StageContext, paths: &[PathBuf]) -> Result<Dataset> {
    use DatasetName as D;
    let raws = || -> Result<Vec<Vec<u8>>> { paths.iter().map(|p| raw::read_raw_file(p)).collect() };
    Ok(match p.dataset {
        D::Digits => {
            let r = raws()?;
            digits::read(
                &r[0],
                p.test_size.unwrap_or(digits::DEFAULT_TEST_SIZE),
                p.split_seed.unwrap_or(0),
            )
            .with_context(|| format!("reading {}", paths[0].display()))?
        }
        D::Mnist | D::FashionMnist => {
            let r = raws()?;
            idx::read(p.dataset.as_str(), [&r[0], &r[1], &r[2], &r[3]])?
        }
        D::Cifar10 | D::Cifar100 => {
            let v = match p.dataset {
                D::Cifar10 => cifar::Variant::Cifar10,
                _ => cifar::Variant::Cifar100,
            };
            let mut ds = cifar::read_archive_file(v, &paths[0])?;
            if p.normalization == Some(CifarNormalization::Half) {
                cifar::normalize_half(&mut ds);
            }
            ds
        }
        D::Twitter => {
            let r = raws()?;
            let emb = match &p.embeddings {
                Some(e) => Some(read_embeddings(
                    &ctx.project_path(e),
                    p.embeddings_blob.as_deref(),
                )?),
                None => None,
            };
            twitter::read([&r[0], &r[1], &r[2]], emb.as_deref())?
        }
        D::Clothing1m => bail!("clothing1m is read from its root, not from fetched files"),
    })
}

/// GLC's Twitter embeddings file, verified by its git blob id (`blob`, default GLC's).
fn read_embeddings(path: &Path, blob: Option<&str>) -> Result<Vec<u8>> {
    let b = std::fs::read(path).with_context(|| {
        format!(
            "reading the embeddings file {} (place GLC's {} there, or drop the `embeddings` param to use the fallback)",
            path.display(),
            twitter::EMBEDDINGS_FILE
        )
    })?;
    twitter::verify_embeddings(&b, &path.display().to_string(), blob)?;
    Ok(b)
}
