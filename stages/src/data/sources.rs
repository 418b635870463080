//! The datasets `download` knows, and the built-in mirrors and checksums of their raw
//! files (from the publishers and the public copies listed in the project's dataset
//! notes). A pipeline can say `dataset: mnist` and nothing more; a `files` entry with the
//! same name replaces the built-in one.

use serde::{Deserialize, Serialize};

use crate::data::fetch::FileSpec;

/// A dataset name as written in `pipeline.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    Digits,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    Twitter,
    Clothing1m,
}

impl DatasetName {
    /// The dataset named `name` in params and `metrics.json`.
    pub fn from_name(name: &str) -> Option<DatasetName> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<serde::de::value::Error> =
            name.into_deserializer();
        DatasetName::deserialize(name).ok()
    }

    /// How tables show it.
    pub fn display(self) -> &'static str {
        match self {
            DatasetName::Digits => "Digits (UCI optdigits)",
            DatasetName::Mnist => "MNIST",
            DatasetName::FashionMnist => "Fashion-MNIST",
            DatasetName::Cifar10 => "CIFAR-10",
            DatasetName::Cifar100 => "CIFAR-100",
            DatasetName::Twitter => "Twitter",
            DatasetName::Clothing1m => "Clothing1M",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Digits => "digits",
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion_mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Twitter => "twitter",
            DatasetName::Clothing1m => "clothing1m",
        }
    }

    /// The raw files the reader needs, in the reader's order, with the built-in mirrors and
    /// checksums. Clothing1M has none (hand-placed root only).
    pub fn default_files(self) -> Vec<FileSpec> {
        match self {
            DatasetName::Digits => vec![spec(
                "digits.csv.gz",
                Some("09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"),
                Some(crate::data::digits::RAW_SHA256),
                None,
                &["file://data/optdigits/digits.csv.gz"],
            )],
            DatasetName::Mnist => mnist_files(),
            DatasetName::FashionMnist => fashion_mnist_files(),
            DatasetName::Cifar10 => vec![spec(
                crate::data::cifar::CIFAR10_ARCHIVE,
                Some("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
                None,
                Some("c32a1d4ab5d03f1284b67883e8d87530"),
                &["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"],
            )],
            DatasetName::Cifar100 => vec![spec(
                crate::data::cifar::CIFAR100_ARCHIVE,
                None,
                None,
                Some("03b5dce01913d631647c71ecec9e9cb8"),
                &["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"],
            )],
            DatasetName::Twitter => twitter_files(),
            DatasetName::Clothing1m => vec![],
        }
    }
}

/// A file spec from its name, checksums (`sha256` of the file, `raw` SHA-256 of its
/// decompressed content, `md5`) and mirrors.
fn spec(
    name: &str,
    sha256: Option<&str>,
    raw: Option<&str>,
    md5: Option<&str>,
    mirrors: &[&str],
) -> FileSpec {
    FileSpec {
        name: name.into(),
        sha256: sha256.map(Into::into),
        raw_sha256: raw.map(Into::into),
        md5: md5.map(Into::into),
        mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
    }
}

/// The four IDX files of MNIST and Fashion-MNIST, in the reader's order.
const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// IDX files with their checksums (`sha256`, raw SHA-256, `md5` per file of
/// [`IDX_FILES`]) from `mirrors`.
fn idx_files(
    sums: [(Option<&str>, Option<&str>, Option<&str>); 4],
    mirrors: &[&str],
) -> Vec<FileSpec> {
    IDX_FILES
        .iter()
        .zip(sums)
        .map(|(name, (sha256, raw, md5))| spec(name, sha256, raw, md5, mirrors))
        .collect()
}

/// MNIST (LeCun's site and two copies of it).
fn mnist_files() -> Vec<FileSpec> {
    idx_files(
        [
            (
                Some("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                None,
                Some("f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ),
            (
                Some("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                Some("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
                Some("d53e105ee54ea40749a09fcbcd1e9432"),
            ),
            (
                Some("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                Some("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
                Some("9fb629c4189551a2d022fa330f9573f3"),
            ),
            (
                Some("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
                Some("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
                Some("ec29112dd5afa0611ce80d1b7f02629c"),
            ),
        ],
        &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
    )
}

/// Fashion-MNIST.
fn fashion_mnist_files() -> Vec<FileSpec> {
    idx_files(
        [
            (
                None,
                Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                Some("8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ),
            (
                None,
                Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                Some("25c81989df183df01b3e8a0aad5dffbe"),
            ),
            (
                None,
                Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                Some("bef4ecab320f06d8554ea6380940ec79"),
            ),
            (
                None,
                Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
                Some("bb300cfdad3c16e7a12a480ee83cd310"),
            ),
        ],
        &[
            // Debian's `dataset-fashion-mnist` (re-gzipped: verified by the raw SHA-256).
            "file:///usr/share/datasets/fashion-mnist/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
    )
}

/// GLC's Twitter POS splits, from GLC's repository.
fn twitter_files() -> Vec<FileSpec> {
    const GLC: &str = "https://raw.githubusercontent.com/mmazeika/glc/master/Twitter/data/Tweets/";
    vec![
        spec(
            "tweets-train.txt",
            Some("0eeb02801b1097aa32bfac490a61c0919c9e74f2c74dd0048b520041bf218f7c"),
            None,
            Some("99ab462ad7e1f9af13c9e3ffd4d75014"),
            &[GLC],
        ),
        spec(
            "tweets-dev.txt",
            Some("304eedc25cf601111ed2daac954092a026e11bc515effda8f9de09616e91dbc8"),
            None,
            Some("51681ff864ebb9c11140abd904024272"),
            &[GLC],
        ),
        spec(
            "tweets-devtest.txt",
            Some("5bb2323a63a17d073468b9436980232e2e7b92d0dc1e5e46e722aae189229e3c"),
            None,
            Some("3d49d22e0a68c5227cccfa9aa2bac3aa"),
            &[GLC],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_written_in_pipelines() {
        for (s, d) in [
            ("digits", DatasetName::Digits),
            ("mnist", DatasetName::Mnist),
            ("fashion_mnist", DatasetName::FashionMnist),
            ("cifar10", DatasetName::Cifar10),
            ("cifar100", DatasetName::Cifar100),
            ("twitter", DatasetName::Twitter),
            ("clothing1m", DatasetName::Clothing1m),
        ] {
            assert_eq!(
                serde_json::from_value::<DatasetName>(serde_json::json!(s)).unwrap(),
                d
            );
            assert_eq!(d.as_str(), s);
        }
    }

    #[test]
    fn every_default_spec_is_well_formed() {
        for d in [
            DatasetName::Digits,
            DatasetName::Mnist,
            DatasetName::FashionMnist,
            DatasetName::Cifar10,
            DatasetName::Cifar100,
            DatasetName::Twitter,
        ] {
            let files = d.default_files();
            assert!(!files.is_empty());
            for f in files {
                f.check().unwrap();
                assert!(!f.mirrors.is_empty(), "{}", f.name);
            }
        }
    }
}
