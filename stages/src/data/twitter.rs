//! Reader for the Twitter part-of-speech data as GLC uses it (Hendrycks et al. 2018,
//! `mmazeika/glc`, `Twitter/`; the tweets are Gimpel et al. 2011's "oct27" split).
//!
//! Files: `tweets-train.txt`, `tweets-dev.txt`, `tweets-devtest.txt`: UTF-8, one
//! `token<TAB>TAG` a line, a blank line after each tweet. As in GLC, train and dev are
//! merged for training (1,327 tweets, 19,442 tokens) and devtest is the test split (7,152
//! tokens). One example per token: the window (left, centre, right) with `</s>` padding at
//! tweet boundaries. Labels: the 25 tags in GLC's numbering [`TAGS`].
//!
//! Features:
//! * With the 50-d embeddings file `embeddings-twitter.txt` (hand-placed; verified by its
//!   git blob id [`EMBEDDINGS_BLOB`]): `word v1 … v50` per line, whitespace separated, must
//!   contain `UUUNKKK` (used for unknown words) and `</s>`. Each example is the three
//!   vectors concatenated: `Features`, F32 `[150]` — GLC's input.
//! * Without it (the offline fallback): `Tokens { vocab }`, U32 `[3]` token ids, for a model
//!   with a learned embedding layer. The vocabulary is built from the training tokens
//!   (train+dev): id 0 = `</s>`, id 1 = `UUUNKKK` (every token not in the vocabulary),
//!   then the training tokens in byte order. The meta notes say this is not GLC's input.
//!
//! Identity: over the raw digests of train, dev, devtest (and the embeddings when used).

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, ensure, Context, Result};

use crate::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use crate::data::raw;

/// GLC's tag numbering.
pub const TAGS: [&str; 25] = [
    "N", "O", "S", "^", "Z", "L", "M", "V", "A", "R", "!", "D", "P", "&", "T", "X", "Y", "#", "@",
    "~", "U", "E", "$", ",", "G",
];
pub const FILES: [&str; 3] = ["tweets-train.txt", "tweets-dev.txt", "tweets-devtest.txt"];
pub const EMBEDDINGS_FILE: &str = "embeddings-twitter.txt";
/// `git hash-object embeddings-twitter.txt` of the file in mmazeika/glc.
pub const EMBEDDINGS_BLOB: &str = "771febee0aec21c1f736401e30621f1594646d2b";
pub const PAD: &str = "</s>";
pub const UNK: &str = "UUUNKKK";
pub const FALLBACK_NOTE: &str = "Twitter features: learned-embedding FALLBACK (token ids, vocabulary from train+dev, OOV -> UUUNKKK); the GLC 50-d embeddings file was not supplied, so results are not GLC's setting";

/// One tweet: (token, tag index) pairs.
pub type Tweet = Vec<(String, u32)>;

/// Parses a `token<TAB>TAG` file into tweets. `what` names the file in errors.
pub fn parse_tweets(bytes: &[u8], what: &str) -> Result<Vec<Tweet>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{what} is not UTF-8"))?;
    let tag_id: HashMap<&str, u32> = TAGS
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i as u32))
        .collect();
    let mut tweets = Vec::new();
    let mut cur: Tweet = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.is_empty() {
                tweets.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let Some((tok, tag)) = line.split_once('\t') else {
            bail!(
                "{what} line {}: expected `token<TAB>TAG`, got `{line}`",
                ln + 1
            );
        };
        let Some(&t) = tag_id.get(tag.trim()) else {
            bail!(
                "{what} line {}: unknown tag `{tag}` (expected one of the 25 ARK tags)",
                ln + 1
            );
        };
        cur.push((tok.to_string(), t));
    }
    if !cur.is_empty() {
        tweets.push(cur);
    }
    ensure!(!tweets.is_empty(), "{what} holds no tweets");
    Ok(tweets)
}

/// The (left, centre, right) windows of every token, with [`PAD`] at tweet boundaries,
/// and the centre token's tag.
pub fn windows(tweets: &[Tweet]) -> Vec<([&str; 3], u32)> {
    let mut out = Vec::new();
    for tw in tweets {
        for i in 0..tw.len() {
            let left = if i == 0 { PAD } else { tw[i - 1].0.as_str() };
            let right = if i + 1 == tw.len() {
                PAD
            } else {
                tw[i + 1].0.as_str()
            };
            out.push(([left, tw[i].0.as_str(), right], tw[i].1));
        }
    }
    out
}

/// Parses the embeddings file: word → vector; all vectors of one length.
pub fn parse_embeddings(bytes: &[u8]) -> Result<HashMap<String, Vec<f32>>> {
    let text = std::str::from_utf8(bytes).context("embeddings file is not UTF-8")?;
    let mut m = HashMap::new();
    let mut dim = None;
    for (ln, line) in text.lines().enumerate() {
        let mut it = line.split_whitespace();
        let Some(w) = it.next() else { continue };
        let v: Vec<f32> = it
            .map(|s| s.parse::<f32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("embeddings line {}: a value is not a number", ln + 1))?;
        let d = *dim.get_or_insert(v.len());
        ensure!(
            d > 0 && v.len() == d,
            "embeddings line {}: {} values, expected {d}",
            ln + 1,
            v.len()
        );
        m.insert(w.to_string(), v);
    }
    for w in [UNK, PAD] {
        ensure!(
            m.contains_key(w),
            "the embeddings file lacks the token `{w}`"
        );
    }
    Ok(m)
}

/// Checks the embeddings file's git blob id against `blob`, by default
/// [`EMBEDDINGS_BLOB`] (GLC's file).
pub fn verify_embeddings(bytes: &[u8], what: &str, blob: Option<&str>) -> Result<()> {
    let id = raw::git_blob_id(bytes);
    match blob {
        None => ensure!(
            id == EMBEDDINGS_BLOB,
            "{what}: git blob id {id}, expected {EMBEDDINGS_BLOB} (the file `Twitter/data/Tweets/{EMBEDDINGS_FILE}` of mmazeika/glc)"
        ),
        Some(want) => ensure!(
            id == want,
            "{what}: git blob id {id}, expected {want} (the `embeddings_blob` param)"
        ),
    }
    Ok(())
}

/// Builds the dataset from the raw files (in the order of [`FILES`]) and, optionally,
/// the embeddings file's raw bytes (not verified here: see [`verify_embeddings`]).
pub fn read(raw_files: [&[u8]; 3], embeddings: Option<&[u8]>) -> Result<Dataset> {
    let mut train_tweets = parse_tweets(raw_files[0], FILES[0])?;
    train_tweets.extend(parse_tweets(raw_files[1], FILES[1])?);
    let test_tweets = parse_tweets(raw_files[2], FILES[2])?;
    let train_w = windows(&train_tweets);
    let test_w = windows(&test_tweets);
    let mut digests: Vec<(String, String)> = FILES
        .iter()
        .zip(raw_files)
        .map(|(n, b)| (n.to_string(), raw::sha256_hex(b)))
        .collect();
    let ys = |w: &[([&str; 3], u32)]| w.iter().map(|(_, y)| *y).collect::<Vec<u32>>();
    let (train_x, test_x, example_shape, encoding, notes) = match embeddings {
        Some(eb) => {
            let emb = parse_embeddings(eb)?;
            let d = emb[UNK].len();
            let unk = &emb[UNK];
            let feats = |w: &[([&str; 3], u32)]| {
                let mut x = Vec::with_capacity(w.len() * 3 * d);
                for (win, _) in w {
                    for tok in win {
                        x.extend_from_slice(emb.get(*tok).unwrap_or(unk));
                    }
                }
                Features::F32(x)
            };
            digests.push((EMBEDDINGS_FILE.into(), raw::sha256_hex(eb)));
            let oov = train_w
                .iter()
                .filter(|(w, _)| !emb.contains_key(w[1]))
                .count();
            (
                feats(&train_w),
                feats(&test_w),
                vec![3 * d],
                Encoding::Features,
                vec![format!("GLC features: 3-token windows of {d}-d embeddings; {oov} training tokens map to UUUNKKK")],
            )
        }
        None => {
            let set: BTreeSet<&str> = train_w
                .iter()
                .map(|(w, _)| w[1])
                .filter(|t| *t != PAD && *t != UNK)
                .collect();
            let mut id: HashMap<&str, u32> = HashMap::new();
            id.insert(PAD, 0);
            id.insert(UNK, 1);
            for (i, t) in set.iter().enumerate() {
                id.insert(t, i as u32 + 2);
            }
            let vocab = set.len() + 2;
            let toks = |w: &[([&str; 3], u32)]| {
                Features::U32(
                    w.iter()
                        .flat_map(|(win, _)| win.map(|t| *id.get(t).unwrap_or(&1)))
                        .collect(),
                )
            };
            (
                toks(&train_w),
                toks(&test_w),
                vec![3],
                Encoding::Tokens { vocab },
                vec![FALLBACK_NOTE.to_string()],
            )
        }
    };
    let named: Vec<(&str, &str)> = digests
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_str()))
        .collect();
    let ds = Dataset {
        meta: DatasetMeta {
            name: "twitter".into(),
            identity: raw::identity(&named),
            num_classes: TAGS.len(),
            class_names: TAGS.iter().map(|s| s.to_string()).collect(),
            num_coarse: None,
            example_shape,
            encoding,
            train_len: train_w.len(),
            test_len: test_w.len(),
            notes,
        },
        train: Split {
            x: train_x,
            y: ys(&train_w),
            coarse: None,
        },
        test: Split {
            x: test_x,
            y: ys(&test_w),
            coarse: None,
        },
        real_noise: None,
    };
    ds.validate()?;
    Ok(ds)
}
