//! Fetching one raw file from a list of mirrors into a verified cache.
//!
//! [`fetch`] puts `<dir>/<name>` in place and returns its path:
//!
//! 1. A file already at `<dir>/<name>` (cached by an earlier run, or placed there by hand)
//!    is verified and used without any network access. If it does not verify, the stage
//!    fails and says so (the file is left alone: it may be the user's).
//! 2. Otherwise the sources are tried in order: the extra first mirror (the `REPRO_MIRROR`
//!    environment variable, joined with the file's cache path), then the spec's mirrors.
//!    A mirror is a URL (`https://`, `http://`, `file://`) or a plain path; a URL or path
//!    that ends in `/` is a base to which the file name is appended; `file://rel/path` and
//!    relative paths resolve against the project directory.
//! 3. Bytes stream into `<dir>/<name>.part` (a private temporary name for local
//!    sources, which need no resume) and are hashed (SHA-256 and MD5) as they
//!    arrive; progress goes to the stage's progress sink (phase `download`, unit `bytes`,
//!    total = the length the server announced). A `.part` left by an interrupted transfer
//!    is resumed with an HTTP `Range` request; a server that answers 206 appends, one that
//!    answers 200 starts over.
//! 4. A mirror that gives no answer (its name does not resolve, the connection is refused,
//!    or connecting or the first byte of the answer takes longer than `timeout`) is dropped
//!    at once: a dead host does not come back within seconds, and trying it again each
//!    round would hold a stage for minutes. So a dead set of N mirrors is reported after at
//!    most about N × `timeout` (4 × 5 s with the `download` kind's defaults). A mirror that
//!    answers with its headers and then sends no byte of the file for `read_timeout` is
//!    dropped the same way: it holds a fetch for at most the time to its headers plus
//!    `read_timeout` (about 30 s with the defaults), not that once per round. A mirror
//!    that answered and then failed otherwise (a 5xx, 408 or 429, a transfer that broke, or
//!    stalled for `read_timeout` after sending part of the file) moves on to the next
//!    mirror and is tried again after the round, resuming: the fetch waits
//!    `backoff × 2^round`, up to `retries` more rounds. A mirror that answers 4xx or whose
//!    file does not exist is dropped too. No limit applies to a whole transfer: a slow but
//!    live mirror is never cut off.
//! 5. The complete file is accepted when any checksum the spec gives matches: `sha256`
//!    or `md5` of the file as fetched, or `raw_sha256` of its decompressed content (so a
//!    re-gzipped copy with identical content, like Debian's Fashion-MNIST, is accepted).
//!    Then `.part` is renamed to `<name>`. On a mismatch the `.part` is deleted and the
//!    stage fails naming the mirror and the expected and actual digests (except after a
//!    resume: the kept prefix may have come from another copy, so the file is fetched
//!    once more from zero before a mismatch is final).
//!
//! When every mirror fails, the error has one line per mirror (its last failure, and how
//! many attempts it had), then names the file to place by hand, where, and the checksum
//! it must have.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::{Interrupted, Progress};
use crate::data::raw::{self, HashingReader};

/// One raw file: its cache name, its checksums (at least one) and where to get it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File name in the cache (also appended to base-URL mirrors and to `REPRO_MIRROR`).
    pub name: String,
    /// SHA-256 (hex) of the file as fetched. Default: none.
    #[serde(default)]
    pub sha256: Option<String>,
    /// SHA-256 (hex) of the decompressed content (gzip files), or of the file itself when
    /// it is not compressed. Default: none.
    #[serde(default)]
    pub raw_sha256: Option<String>,
    /// MD5 (hex) of the file as fetched, for archives whose publishers give only MD5.
    /// Default: none.
    #[serde(default)]
    pub md5: Option<String>,
    /// URLs or paths, tried in order. Default: none (then only the cache and
    /// `REPRO_MIRROR` are tried).
    #[serde(default)]
    pub mirrors: Vec<String>,
}

impl FileSpec {
    /// The checksums a file must match, for messages.
    pub fn expected(&self) -> String {
        let mut v = Vec::new();
        if let Some(s) = &self.sha256 {
            v.push(format!("SHA-256 {s}"));
        }
        if let Some(s) = &self.raw_sha256 {
            v.push(format!("decompressed SHA-256 {s}"));
        }
        if let Some(s) = &self.md5 {
            v.push(format!("MD5 {s}"));
        }
        v.join(" or ")
    }

    pub fn check(&self) -> Result<()> {
        ensure!(
            !self.name.is_empty() && !self.name.contains(['/', '\\']) && self.name != "..",
            "file name `{}` must be a plain file name",
            self.name
        );
        ensure!(
            self.sha256.is_some() || self.raw_sha256.is_some() || self.md5.is_some(),
            "file `{}` needs at least one of sha256, raw_sha256, md5",
            self.name
        );
        for (f, v, len) in [
            ("sha256", &self.sha256, 64),
            ("raw_sha256", &self.raw_sha256, 64),
            ("md5", &self.md5, 32),
        ] {
            if let Some(v) = v {
                ensure!(
                    v.len() == len
                        && v.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "file `{}`: {f} must be {len} lower-case hex digits, got `{v}`",
                    self.name
                );
            }
        }
        Ok(())
    }
}

/// Where and how to fetch.
pub struct FetchOptions<'a> {
    /// The cache folder: the verified file ends up at `dir/<name>`.
    pub dir: PathBuf,
    /// Relative paths and `file://` URLs without a leading `/` resolve against it.
    pub project_dir: PathBuf,
    /// Tried before the spec's mirrors: a base URL or directory to which `<name>` is
    /// appended (the kind passes `$REPRO_MIRROR/<dataset>`).
    pub first_mirror: Option<String>,
    /// Longest wait for a mirror's answer: for each of resolving its name, connecting,
    /// sending the request and receiving the first byte of the answer.
    pub timeout: Duration,
    /// Longest wait between two reads once the mirror has answered (an idle limit, not a
    /// total one).
    pub read_timeout: Duration,
    /// Extra rounds over all mirrors after the first.
    pub retries: u32,
    /// Wait before the second round; doubled before each further round.
    pub backoff: Duration,
    pub progress: &'a dyn Progress,
    /// When set during a transfer, the `.part` is kept and [`Interrupted`] returned.
    pub stop: Option<&'a AtomicBool>,
}

/// Digests of a complete file.
#[derive(Clone, Debug, PartialEq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
}

enum Failure {
    /// Try again later (network error, timeout, dropped connection, 5xx).
    Retry(String),
    /// This mirror will not have it (4xx, no such file).
    Drop(String),
    /// Stop everything (checksum mismatch, local I/O error, interruption).
    Fatal(anyhow::Error),
}

/// Checks a complete file against the spec. `digests` are of the file as stored.
/// Returns a description of the mismatch, or `None` when it verifies.
pub fn verify(spec: &FileSpec, path: &Path, digests: &Digests) -> Result<Option<String>> {
    if spec.sha256.as_deref() == Some(digests.sha256.as_str())
        || spec.md5.as_deref() == Some(digests.md5.as_str())
    {
        return Ok(None);
    }
    let mut got = Vec::new();
    if spec.sha256.is_some() {
        got.push(format!("SHA-256 {}", digests.sha256));
    }
    if spec.md5.is_some() {
        got.push(format!("MD5 {}", digests.md5));
    }
    if let Some(want) = &spec.raw_sha256 {
        let raw = raw_sha256_of_file(path)?;
        match raw {
            Ok(d) if &d == want => return Ok(None),
            Ok(d) => got.push(format!("decompressed SHA-256 {d}")),
            Err(e) => got.push(format!("no decompressed content ({e})")),
        }
    }
    Ok(Some(format!(
        "expected {}, got {}",
        spec.expected(),
        got.join(", ")
    )))
}

/// SHA-256 of a file's decompressed content (the file itself if not gzip). The inner
/// error is a decompression failure.
pub fn raw_sha256_of_file(path: &Path) -> Result<std::result::Result<String, String>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = File::open(path)?;
    let r = BufReader::with_capacity(1 << 20, f);
    if raw::is_gzip(&magic[..n]) {
        Ok(HashingReader::new(flate2::read::MultiGzDecoder::new(r))
            .finish()
            .map_err(|e| e.to_string()))
    } else {
        Ok(Ok(HashingReader::new(r).finish()?))
    }
}

/// SHA-256 and MD5 of a file.
pub fn digest_file(path: &Path) -> Result<Digests> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut s, mut m) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        s.update(&buf[..n]);
        m.update(&buf[..n]);
    }
    Ok(Digests {
        sha256: hex::encode(s.finalize()),
        md5: hex::encode(m.finalize()),
    })
}

/// Resolves a mirror entry for `name`: a URL stays a URL (`Ok(Err(url))`), a `file://`
/// URL or a plain path becomes a local path (`Ok(Ok(path))`).
fn resolve(mirror: &str, name: &str, project_dir: &Path) -> std::result::Result<PathBuf, String> {
    let full = if mirror.ends_with('/') {
        format!("{mirror}{name}")
    } else {
        mirror.to_string()
    };
    if let Some(rest) = full.strip_prefix("file://") {
        let p = PathBuf::from(rest);
        return Ok(if p.is_absolute() {
            p
        } else {
            project_dir.join(p)
        });
    }
    if full.starts_with("http://") || full.starts_with("https://") {
        return Err(full);
    }
    let p = PathBuf::from(&full);
    Ok(if p.is_absolute() {
        p
    } else {
        project_dir.join(p)
    })
}

/// Joins the first-mirror base (URL or directory) with `name`.
pub fn join_base(base: &str, name: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), name)
}

/// Fetches `spec` into `opts.dir` (see the module docs) and returns the verified file.
pub fn fetch(spec: &FileSpec, opts: &FetchOptions) -> Result<PathBuf> {
    spec.check()?;
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating the download folder {}", opts.dir.display()))?;
    let dest = opts.dir.join(&spec.name);
    let part = opts.dir.join(format!("{}.part", spec.name));
    if dest.exists() {
        let d = digest_file(&dest)?;
        match verify(spec, &dest, &d)? {
            None => return Ok(dest),
            Some(why) => bail!(
                "{} is present but does not verify: {why}. Delete it (it will be fetched again) or replace it with the right file",
                dest.display()
            ),
        }
    }
    let mut sources: Vec<String> = Vec::new();
    if let Some(b) = &opts.first_mirror {
        sources.push(join_base(b, &spec.name));
    }
    sources.extend(spec.mirrors.iter().cloned());
    let mut live: Vec<bool> = vec![true; sources.len()];
    // Per source: its last failure and the number of attempts.
    let mut failures: Vec<Option<(String, u32)>> = vec![None; sources.len()];
    let agent = agent(opts.timeout, opts.read_timeout);
    for round in 0..=opts.retries {
        if round > 0 {
            if !live.iter().any(|&l| l) {
                break;
            }
            std::thread::sleep(opts.backoff * 2u32.saturating_pow(round - 1));
        }
        for (i, src) in sources.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let mut resumed = false;
            // A local copy needs no resume, so it goes to a private temporary name: two
            // stages reading the same file at once cannot interleave their writes.
            let (res, tmp) = match resolve(src, &spec.name, &opts.project_dir) {
                Ok(path) => {
                    let tmp = opts.dir.join(format!(
                        "{}.{}.{}.copy",
                        spec.name,
                        std::process::id(),
                        unique()
                    ));
                    (copy_local(&path, &tmp, opts), tmp)
                }
                Err(url) => {
                    resumed = part.metadata().map(|m| m.len() > 0).unwrap_or(false);
                    (http_get(&agent, &url, &part, opts), part.clone())
                }
            };
            let failure = match res {
                Ok(d) => match verify(spec, &tmp, &d) {
                    Ok(None) => {
                        std::fs::rename(&tmp, &dest).with_context(|| {
                            format!("renaming {} to {}", tmp.display(), dest.display())
                        })?;
                        return Ok(dest);
                    }
                    Ok(Some(why)) if resumed => {
                        // The kept prefix may come from another copy: start over once.
                        let _ = std::fs::remove_file(&tmp);
                        Failure::Retry(format!("checksum mismatch after resuming ({why}); the partial file was discarded"))
                    }
                    Ok(Some(why)) => {
                        let _ = std::fs::remove_file(&tmp);
                        Failure::Fatal(anyhow!(
                            "checksum mismatch for {} from {src}: {why}; nothing was kept",
                            spec.name
                        ))
                    }
                    Err(e) => Failure::Fatal(e),
                },
                Err(f) => {
                    if tmp != part {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    f
                }
            };
            let msg = match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Retry(m) => m,
                Failure::Drop(m) => {
                    live[i] = false;
                    m
                }
            };
            let tries = failures[i].as_ref().map_or(0, |(_, n)| *n) + 1;
            failures[i] = Some((msg, tries));
        }
    }
    let lines: Vec<String> = sources
        .iter()
        .zip(&failures)
        .filter_map(|(src, f)| {
            let (msg, tries) = f.as_ref()?;
            Some(match tries {
                1 => format!("\n  {src}: {msg}"),
                n => format!("\n  {src}: {msg} ({n} attempts; the last failure shown)"),
            })
        })
        .collect();
    bail!(
        "could not fetch {}: {}\nPlace the file by hand at {} (it must have {}) and run again",
        spec.name,
        if lines.is_empty() {
            "no mirror is configured".to_string()
        } else {
            format!("every mirror failed:{}", lines.concat())
        },
        dest.display(),
        spec.expected()
    )
}

/// A number unique within this process.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An HTTP client with `timeout` on each phase before the answer (resolve, connect,
/// send the request, receive the response head) and `read_timeout` between two reads;
/// no total timeout, so a slow transfer that keeps moving runs to its end.
fn agent(timeout: Duration, read_timeout: Duration) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(read_timeout))
        .user_agent(format!("repro/{}", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(cfg)
}

/// Streams `src` into `part` (starting over), hashing as it goes.
fn copy_local(
    src: &Path,
    part: &Path,
    opts: &FetchOptions,
) -> std::result::Result<Digests, Failure> {
    let f = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::Drop("no such file".into()))
        }
        Err(e) => return Err(Failure::Drop(format!("cannot open: {e}"))),
    };
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let out = File::create(part)
        .with_context(|| format!("creating {}", part.display()))
        .map_err(Failure::Fatal)?;
    let mut h = StreamHash::new();
    stream(f, out, &mut h, 0, total, opts)?;
    Ok(h.finish())
}

struct StreamHash {
    sha: Sha256,
    md5: Md5,
}

impl StreamHash {
    fn new() -> Self {
        StreamHash {
            sha: Sha256::new(),
            md5: Md5::new(),
        }
    }
    fn update(&mut self, b: &[u8]) {
        self.sha.update(b);
        self.md5.update(b);
    }
    fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha.finalize()),
            md5: hex::encode(self.md5.finalize()),
        }
    }
}

/// Copies `r` into `out`, hashing and reporting progress. `done` bytes are already in
/// the file; `total` is the full size (0 = unknown). Read errors are retryable and keep
/// what was written.
fn stream(
    mut r: impl Read,
    mut out: File,
    h: &mut StreamHash,
    mut done: u64,
    total: u64,
    opts: &FetchOptions,
) -> std::result::Result<u64, Failure> {
    opts.progress.phase("download", "bytes", total);
    opts.progress.position(done);
    let start = done;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if opts.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            let _ = out.flush();
            return Err(Failure::Fatal(anyhow::Error::new(Interrupted)));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if done == start && is_timeout(&e) => {
                let _ = out.flush();
                return Err(Failure::Drop(format!(
                    "answered, then sent no byte for {:?}: dropped like a mirror that does not \
                     answer",
                    opts.read_timeout
                )));
            }
            Err(e) => {
                let _ = out.flush();
                return Err(Failure::Retry(format!(
                    "transfer failed after {done} bytes: {e}"
                )));
            }
        };
        out.write_all(&buf[..n])
            .context("writing the download")
            .map_err(Failure::Fatal)?;
        h.update(&buf[..n]);
        done += n as u64;
        opts.progress.position(done);
    }
    out.flush()
        .context("writing the download")
        .map_err(Failure::Fatal)?;
    if total > 0 && done < total {
        return Err(Failure::Retry(format!(
            "connection closed after {done} of {total} bytes"
        )));
    }
    Ok(done)
}

/// Whether a read failed by waiting longer than the read timeout (the transport's own
/// error, or the HTTP client's wrapped in an I/O error).
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|x| x.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// Why a mirror gave no HTTP answer, in words.
fn no_answer(e: &ureq::Error, timeout: Duration) -> String {
    use ureq::Timeout as T;
    let phase = match e {
        ureq::Error::Timeout(T::Resolve) => "resolving its name",
        ureq::Error::Timeout(T::Connect) => "connecting",
        ureq::Error::Timeout(T::SendRequest) => "sending the request",
        ureq::Error::Timeout(T::RecvResponse) | ureq::Error::Timeout(T::PerRead) => {
            "waiting for the answer"
        }
        ureq::Error::Timeout(_) => "waiting",
        ureq::Error::HostNotFound => return "no answer: its host name does not resolve".into(),
        other => return format!("no answer: {other}"),
    };
    format!("no answer: {phase} took longer than {timeout:?}")
}

/// One HTTP attempt, resuming `part` when it holds bytes.
fn http_get(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    opts: &FetchOptions,
) -> std::result::Result<Digests, Failure> {
    let have = part.metadata().map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url).header("Accept-Encoding", "identity");
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(416)) if have > 0 => {
            // The partial file is as long as (or longer than) the resource: start over.
            let _ = std::fs::remove_file(part);
            return Err(Failure::Retry(
                "HTTP 416 for the resumed range; the partial file was discarded".into(),
            ));
        }
        Err(ureq::Error::StatusCode(c)) if (400..500).contains(&c) && c != 408 && c != 429 => {
            return Err(Failure::Drop(format!("HTTP {c}")))
        }
        Err(ureq::Error::StatusCode(c)) => return Err(Failure::Retry(format!("HTTP {c}"))),
        // No answer at all: the mirror is dropped (see the module docs).
        Err(e) => return Err(Failure::Drop(no_answer(&e, opts.timeout))),
    };
    let status = resp.status().as_u16();
    let len = resp.body().content_length();
    let resumed = status == 206 && have > 0 && {
        let cr = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        cr.starts_with(&format!("bytes {have}-"))
    };
    if status == 206 && !resumed {
        return Err(Failure::Drop(format!(
            "HTTP 206 with an unexpected Content-Range for bytes {have}-"
        )));
    }
    let mut h = StreamHash::new();
    let (out, done) = if resumed {
        // Hash what is already there, then append.
        let mut f = File::open(part)
            .context("reading the partial download")
            .map_err(Failure::Fatal)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f
                .read(&mut buf)
                .context("reading the partial download")
                .map_err(Failure::Fatal)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let out = OpenOptions::new()
            .append(true)
            .open(part)
            .context("appending to the partial download")
            .map_err(Failure::Fatal)?;
        (out, have)
    } else {
        (
            File::create(part)
                .with_context(|| format!("creating {}", part.display()))
                .map_err(Failure::Fatal)?,
            0,
        )
    };
    let total = len.map(|l| l + done).unwrap_or(0);
    let body = resp.into_body().into_reader();
    stream(body, out, &mut h, done, total, opts)?;
    Ok(h.finish())
}
