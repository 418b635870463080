//! Raw bytes as fetched: digests, gzip detection and the dataset identity.
//!
//! * "Raw" content is a file's decompressed bytes (gzip is recognised by its magic
//!   `1f 8b`, not by the file name); a file that is not gzip is its own raw content.
//! * A dataset's **identity** is the SHA-256 (hex) of its raw content when it comes from
//!   one file. When it comes from several, it is the SHA-256 of a `SHA256SUMS`-style text
//!   listing each file's raw digest in the reader's fixed order: one line
//!   `<raw sha256 hex>  <name>\n` per file (see [`identity`]).

use std::io::Read;

use anyhow::{Context, Result};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex MD5 of `bytes` (only to check published MD5 checksums).
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// The git blob id of `bytes`: SHA-1 of `"blob <len>\0"` followed by the bytes, which is
/// what `git hash-object FILE` prints.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

/// True when `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The raw content of a file: gunzipped when it is gzip, else the bytes themselves.
/// `what` names the file in errors.
pub fn raw_content(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    if is_gzip(bytes) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .with_context(|| format!("{what}: the file starts like gzip but does not decompress (truncated or corrupt)"))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Reads a whole file and returns its raw content (see [`raw_content`]).
pub fn read_raw_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    raw_content(&bytes, &path.display().to_string())
}

/// The identity of a dataset read from `files`: `(name, raw sha256 hex)` in the reader's
/// fixed order. One file: its raw digest itself. Several: SHA-256 over the lines
/// `<digest>  <name>\n`.
pub fn identity(files: &[(&str, &str)]) -> String {
    if let [(_, d)] = files {
        return d.to_string();
    }
    let mut h = Sha256::new();
    for (name, digest) in files {
        h.update(format!("{digest}  {name}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

/// A reader adapter that hashes (SHA-256) everything read through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// Reads the rest of the stream (so the digest covers all of it) and returns the hex digest.
    pub fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // the empty blob
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn identity_of_one_file_is_its_digest() {
        assert_eq!(identity(&[("a", "abc")]), "abc");
        let two = identity(&[("a", "abc"), ("b", "def")]);
        assert_eq!(two, sha256_hex(b"abc  a\ndef  b\n"));
        assert_ne!(two, identity(&[("b", "def"), ("a", "abc")]));
    }

    #[test]
    fn raw_content_gunzips_only_gzip() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"payload").unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(raw_content(&gz, "x").unwrap(), b"payload");
        assert_eq!(raw_content(b"plain", "x").unwrap(), b"plain");
        let err = raw_content(&gz[..gz.len() / 2], "f.gz").unwrap_err();
        assert!(format!("{err:#}").contains("f.gz"), "{err:#}");
    }
}
