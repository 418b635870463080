//! The fetch machinery against a real HTTP server on 127.0.0.1 (see `download_server`):
//! verified success, resume after a dropped connection, checksum mismatch, mirror
//! fallback, timeouts, the hand-placed path, the first mirror, `file://` sources, and the
//! `download` kind end to end.

mod download_server;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use download_server::{dead_url, Server};
use repro_stages::data::fetch::{fetch, FetchOptions, FileSpec};
use repro_stages::data::raw::sha256_hex;
use repro_stages::{Kind, NoProgress, Progress, StageContext};

fn payload(n: usize) -> Vec<u8> {
    // Deterministic, incompressible-looking bytes.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn spec(name: &str, body: &[u8], mirrors: Vec<String>) -> FileSpec {
    FileSpec {
        name: name.into(),
        sha256: Some(sha256_hex(body)),
        raw_sha256: None,
        md5: None,
        mirrors,
    }
}

fn opts<'a>(dir: &Path, progress: &'a dyn Progress) -> FetchOptions<'a> {
    FetchOptions {
        dir: dir.to_path_buf(),
        project_dir: dir.to_path_buf(),
        first_mirror: None,
        timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(500),
        retries: 1,
        backoff: Duration::from_millis(10),
        progress,
        stop: None,
    }
}

fn server_with(name: &str, body: &[u8]) -> Server {
    Server::start(HashMap::from([(name.to_string(), body.to_vec())]))
}

#[derive(Default)]
struct Record(Mutex<Vec<String>>);
impl Progress for Record {
    fn phase(&self, name: &str, unit: &str, total: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("phase {name} {unit} {total}"));
    }
    fn position(&self, done: u64) {
        self.0.lock().unwrap().push(format!("pos {done}"));
    }
    fn message(&self, _: &str) {}
}

#[test]
fn verified_download_lands_in_the_cache_with_progress() {
    let body = payload(300_000);
    let srv = server_with("a.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let rec = Record::default();
    let p = fetch(
        &spec("a.bin", &body, vec![srv.url("range", "a.bin")]),
        &opts(tmp.path(), &rec),
    )
    .unwrap();
    assert_eq!(p, tmp.path().join("a.bin"));
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert!(!tmp.path().join("a.bin.part").exists());
    let log = rec.0.lock().unwrap().clone();
    assert_eq!(log[0], "phase download bytes 300000");
    assert_eq!(log.last().unwrap(), "pos 300000");
    // A second fetch uses the cache: no request.
    let n = srv.requests().len();
    fetch(
        &spec("a.bin", &body, vec![srv.url("range", "a.bin")]),
        &opts(tmp.path(), &NoProgress),
    )
    .unwrap();
    assert_eq!(srv.requests().len(), n);
}

#[test]
fn dropped_connection_is_resumed_with_range() {
    let body = payload(200_000);
    let srv = server_with("b.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(
        "b.bin",
        &body,
        vec![srv.url("drop", "b.bin"), srv.url("range", "b.bin")],
    );
    let p = fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    let reqs = srv.requests();
    assert_eq!(reqs[0], "GET /drop/b.bin");
    assert_eq!(reqs[1], "GET /range/b.bin range=100000", "{reqs:?}");
    assert_eq!(reqs.len(), 2);
}

#[test]
fn server_without_range_support_restarts_from_zero() {
    let body = payload(50_000);
    let srv = server_with("c.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(
        "c.bin",
        &body,
        vec![srv.url("drop", "c.bin"), srv.url("plain", "c.bin")],
    );
    let p = fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    assert_eq!(srv.requests()[1], "GET /plain/c.bin range=25000");
}

#[test]
fn checksum_mismatch_fails_and_keeps_nothing() {
    let body = payload(10_000);
    let srv = server_with("d.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url("wrong", "d.bin");
    // A good mirror after the bad one must not be used: a mismatch stops the stage.
    let s = spec("d.bin", &body, vec![url.clone(), srv.url("range", "d.bin")]);
    let err = format!(
        "{:#}",
        fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap_err()
    );
    let bad: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        err.contains(&sha256_hex(&body)),
        "expected digest missing: {err}"
    );
    assert!(
        err.contains(&sha256_hex(&bad)),
        "actual digest missing: {err}"
    );
    assert!(err.contains(&url), "mirror missing: {err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "something was kept"
    );
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn falls_back_across_mirrors_and_times_out_slow_ones() {
    let body = payload(20_000);
    let srv = server_with("e.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(
        "e.bin",
        &body,
        vec![
            dead_url("e.bin"),
            srv.url("missing", "e.bin"),
            srv.url("slow", "e.bin"),
            srv.url("range", "e.bin"),
        ],
    );
    let t0 = Instant::now();
    let p = fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(std::fs::read(p).unwrap(), body);
    let reqs = srv.requests();
    assert_eq!(
        reqs,
        vec!["GET /missing/e.bin", "GET /slow/e.bin", "GET /range/e.bin"]
    );
}

#[test]
fn no_mirror_answering_says_where_to_place_the_file_and_a_placed_file_is_used() {
    let body = payload(5_000);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("f.bin", &body, vec![dead_url("f.bin")]);
    let mut o = opts(tmp.path(), &NoProgress);
    o.retries = 2;
    let err = format!("{:#}", fetch(&s, &o).unwrap_err());
    // A refused connection is no answer: the mirror is named once, not once per round.
    assert_eq!(err.matches(&dead_url_of(&s)).count(), 1, "{err}");
    assert!(err.contains("no answer"), "{err}");
    let place = tmp.path().join("f.bin");
    assert!(err.contains("Place the file by hand at"), "{err}");
    assert!(err.contains(&place.display().to_string()), "{err}");
    assert!(err.contains(&sha256_hex(&body)), "{err}");
    // Placed by hand: verified and used, the (dead) mirror is not needed.
    std::fs::write(&place, &body).unwrap();
    assert_eq!(fetch(&s, &o).unwrap(), place);
    // A wrong file placed there is reported, not replaced.
    std::fs::write(&place, b"not it").unwrap();
    let err = format!("{:#}", fetch(&s, &o).unwrap_err());
    assert!(
        err.contains("does not verify") && err.contains(&sha256_hex(b"not it")),
        "{err}"
    );
    assert_eq!(std::fs::read(&place).unwrap(), b"not it");
}

#[test]
fn first_mirror_is_tried_first() {
    let body = payload(4_000);
    let srv = server_with("g.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &NoProgress);
    o.first_mirror = Some(format!("{}/plain/", srv.base));
    fetch(&spec("g.bin", &body, vec![srv.url("range", "g.bin")]), &o).unwrap();
    assert_eq!(srv.requests(), vec!["GET /plain/g.bin"]);
    // A directory works as a first mirror too.
    let mirror = tempfile::tempdir().unwrap();
    std::fs::write(mirror.path().join("h.bin"), &body).unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let mut o = opts(tmp2.path(), &NoProgress);
    o.first_mirror = Some(mirror.path().display().to_string());
    fetch(&spec("h.bin", &body, vec![dead_url("h.bin")]), &o).unwrap();
    assert_eq!(std::fs::read(tmp2.path().join("h.bin")).unwrap(), body);
}

#[test]
fn file_urls_absolute_relative_and_base() {
    let body = payload(3_000);
    let proj = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(proj.path().join("data/sub")).unwrap();
    std::fs::write(proj.path().join("data/sub/i.bin"), &body).unwrap();
    for mirror in [
        "file://data/sub/i.bin".to_string(),
        "data/sub/".to_string(),
        format!("file://{}", proj.path().join("data/sub/i.bin").display()),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path(), &NoProgress);
        o.project_dir = proj.path().to_path_buf();
        let p = fetch(
            &spec(
                "i.bin",
                &body,
                vec!["file://nowhere/i.bin".into(), mirror.clone()],
            ),
            &o,
        )
        .unwrap();
        assert_eq!(std::fs::read(p).unwrap(), body, "{mirror}");
    }
}

#[test]
fn raw_sha256_or_md5_verify_a_recompressed_copy() {
    use std::io::Write;
    let content = payload(8_000);
    let gz = |level| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(&content).unwrap();
        e.finish().unwrap()
    };
    let (a, b) = (gz(9), gz(1));
    assert_ne!(a, b);
    let srv = Server::start(HashMap::from([("j.gz".to_string(), b.clone())]));
    let tmp = tempfile::tempdir().unwrap();
    // sha256 names copy `a`, but the raw content of `b` matches raw_sha256.
    let s = FileSpec {
        name: "j.gz".into(),
        sha256: Some(sha256_hex(&a)),
        raw_sha256: Some(sha256_hex(&content)),
        md5: None,
        mirrors: vec![srv.url("range", "j.gz")],
    };
    fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap();
    // md5 alone.
    let tmp = tempfile::tempdir().unwrap();
    let md5 = repro_stages::data::raw::md5_hex(&b);
    let s = FileSpec {
        name: "j.gz".into(),
        sha256: None,
        raw_sha256: None,
        md5: Some(md5),
        mirrors: vec![srv.url("range", "j.gz")],
    };
    fetch(&s, &opts(tmp.path(), &NoProgress)).unwrap();
}

fn ctx<'a>(
    proj: &Path,
    dl: &Path,
    out: &Path,
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
) -> StageContext<'a> {
    StageContext {
        member: "download[test]".into(),
        profile: "test".into(),
        seed: 0,
        coords: BTreeMap::new(),
        inputs: BTreeMap::new(),
        out_dir: out.to_path_buf(),
        checkpoint_dir: out.join("ckpt"),
        project_dir: proj.to_path_buf(),
        download_dir: dl.to_path_buf(),
        threads: 1,
        progress,
        stop,
    }
}

#[test]
fn download_kind_reads_digits_served_over_http() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gz = std::fs::read(repo.join("data/optdigits/digits.csv.gz")).unwrap();
    let srv = server_with("digits.csv.gz", &gz);
    let (dl, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stop = AtomicBool::new(false);
    let params = serde_json::json!({
        "dataset": "digits",
        "files": [{"name": "digits.csv.gz", "sha256": sha256_hex(&gz), "mirrors": [srv.url("range", "digits.csv.gz")]}],
        "timeout_secs": 2,
        "retries": 0
    });
    Kind::Download.validate(&params).unwrap();
    // The project dir is a temp dir: the committed file is reachable only over HTTP.
    let proj = tempfile::tempdir().unwrap();
    Kind::Download
        .run(
            &params,
            &ctx(proj.path(), dl.path(), out.path(), &NoProgress, &stop),
        )
        .unwrap();
    let ds = repro_stages::data::dataset::Dataset::load(out.path()).unwrap();
    assert_eq!(ds.meta.identity, repro_stages::data::digits::RAW_SHA256);
    assert_eq!((ds.meta.train_len, ds.meta.test_len), (1297, 500));
    assert!(dl.path().join("digits/digits.csv.gz").is_file());
}

#[test]
fn download_kind_rejects_misplaced_params() {
    for bad in [
        serde_json::json!({"dataset": "mnist", "test_size": 100}),
        serde_json::json!({"dataset": "mnist", "normalization": "half"}),
        serde_json::json!({"dataset": "digits", "files": [{"name": "other.gz", "sha256": "00"}]}),
        serde_json::json!({"dataset": "clothing1m"}),
    ] {
        let (dl, out, proj) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let stop = AtomicBool::new(false);
        let err = format!(
            "{:#}",
            Kind::Download
                .run(
                    &bad,
                    &ctx(proj.path(), dl.path(), out.path(), &NoProgress, &stop)
                )
                .unwrap_err()
        );
        assert!(
            err.contains("does not apply")
                || err.contains("is not a file of")
                || err.contains("needs the `root` param"),
            "{err}"
        );
    }
    assert!(Kind::Download
        .validate(&serde_json::json!({"dataset": "svhn"}))
        .is_err());
    assert!(Kind::Download
        .validate(&serde_json::json!({"dataset": "digits", "typo": 1}))
        .is_err());
}

#[test]
fn download_kind_default_digits_runs_offline_from_the_project() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (dl, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stop = AtomicBool::new(false);
    let params = serde_json::json!({"dataset": "digits", "test_size": 300, "split_seed": 4});
    Kind::Download
        .run(
            &params,
            &ctx(&repo, dl.path(), out.path(), &NoProgress, &stop),
        )
        .unwrap();
    let ds = repro_stages::data::dataset::Dataset::load(out.path()).unwrap();
    assert_eq!((ds.meta.train_len, ds.meta.test_len), (1497, 300));
    assert_eq!(ds.meta.identity, repro_stages::data::digits::RAW_SHA256);
    // Only the verified file is left in the cache.
    let names: Vec<String> = std::fs::read_dir(dl.path().join("digits"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["digits.csv.gz"]);
}

#[test]
fn download_kind_clothing1m_checks_the_hand_placed_root() {
    let (dl, out, root) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let stop = AtomicBool::new(false);
    let params = serde_json::json!({"dataset": "clothing1m", "root": root.path()});
    let err = format!(
        "{:#}",
        Kind::Download
            .run(
                &params,
                &ctx(root.path(), dl.path(), out.path(), &NoProgress, &stop)
            )
            .unwrap_err()
    );
    assert!(
        err.contains("category_names_eng.txt is missing") && err.contains("ask its authors"),
        "{err}"
    );
}

#[test]
fn stop_request_keeps_the_partial_file_and_reports_interrupted() {
    let body = payload(100_000);
    let srv = server_with("k.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(true);
    let mut o = opts(tmp.path(), &NoProgress);
    o.stop = Some(&stop);
    let e = fetch(&spec("k.bin", &body, vec![srv.url("range", "k.bin")]), &o).unwrap_err();
    assert!(
        e.downcast_ref::<repro_stages::Interrupted>().is_some(),
        "{e:#}"
    );
    assert!(tmp.path().join("k.bin.part").exists());
    assert!(!tmp.path().join("k.bin").exists());
    // The next run resumes.
    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    fetch(&spec("k.bin", &body, vec![srv.url("range", "k.bin")]), &o).unwrap();
}

#[test]
fn a_stale_partial_file_that_spoils_the_checksum_is_fetched_again_from_zero() {
    let body = payload(40_000);
    let srv = server_with("l.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("l.bin.part"), vec![0u8; 10_000]).unwrap();
    let p = fetch(
        &spec("l.bin", &body, vec![srv.url("range", "l.bin")]),
        &opts(tmp.path(), &NoProgress),
    )
    .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    assert_eq!(
        srv.requests(),
        vec!["GET /range/l.bin range=10000", "GET /range/l.bin"]
    );
    // Without a resume, the same mismatch is final.
    let tmp = tempfile::tempdir().unwrap();
    let e = fetch(
        &spec("l.bin", &body, vec![srv.url("wrong", "l.bin")]),
        &opts(tmp.path(), &NoProgress),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("checksum mismatch"));
}

#[test]
fn missing_fashion_mnist_file_names_the_file_to_place_and_writes_no_dataset() {
    // A Fashion-MNIST copy lacking its test labels: three of the four files are served by a
    // `file://` mirror, the fourth is nowhere. The stage fails naming the file to place and
    // where, and its output directory stays empty.
    let mirror = tempfile::tempdir().unwrap();
    let (proj, dl, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    let base = format!("file://{}/", mirror.path().display());
    let files: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let body = payload(100 + i);
            if i < 3 {
                std::fs::write(mirror.path().join(n), &body).unwrap();
            }
            serde_json::json!({"name": n, "sha256": sha256_hex(&body), "mirrors": [base.clone()]})
        })
        .collect();
    let params = serde_json::json!({"dataset": "fashion_mnist", "files": files, "retries": 0});
    Kind::Download.validate(&params).unwrap();
    let stop = AtomicBool::new(false);
    let err = format!(
        "{:#}",
        Kind::Download
            .run(
                &params,
                &ctx(proj.path(), dl.path(), out.path(), &NoProgress, &stop)
            )
            .unwrap_err()
    );
    let place = dl.path().join("fashion_mnist").join(names[3]);
    assert!(err.contains("Place the file by hand at"), "{err}");
    assert!(err.contains(&place.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "a failed download wrote outputs"
    );
}

fn dead_url_of(s: &FileSpec) -> String {
    s.mirrors[0].clone()
}

#[test]
fn stalled_mirror_fails_fast() {
    // Three mirrors that accept the connection and never answer, and one that refuses
    // it: each is tried once, then dropped; the error names each once.
    let body = payload(1_000);
    let servers: Vec<Server> = (0..3).map(|_| server_with("m.bin", &body)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut mirrors: Vec<String> = servers.iter().map(|s| s.url("stall", "m.bin")).collect();
    mirrors.push(dead_url("m.bin"));
    let s = spec("m.bin", &body, mirrors.clone());
    let mut o = opts(tmp.path(), &NoProgress);
    o.timeout = Duration::from_millis(300);
    o.read_timeout = Duration::from_secs(30);
    o.retries = 3;
    let t0 = Instant::now();
    let err = format!("{:#}", fetch(&s, &o).unwrap_err());
    for m in &mirrors {
        let lines = err
            .lines()
            .filter(|l| l.trim_start().starts_with(m.as_str()));
        assert_eq!(lines.count(), 1, "{m} in {err}");
    }
    assert_eq!(err.matches("no answer").count(), 4, "{err}");
    assert!(
        err.contains("waiting for the answer took longer than 300ms"),
        "{err}"
    );
    assert!(err.contains("Place the file by hand at"), "{err}");
    // No second round for a mirror that never answered.
    for srv in &servers {
        assert_eq!(srv.requests(), vec!["GET /stall/m.bin"]);
    }
    // A sanity bound only (the expected time is 3 × 0.3 s).
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn mirror_that_stalls_after_its_headers_is_dropped_like_a_silent_one() {
    // `slow` sends its headers, then nothing for 5 s: longer than the read timeout. It is
    // tried once and dropped, not retried each round; a later mirror still serves the file.
    let body = payload(4_000);
    let srv = server_with("h.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &NoProgress);
    o.read_timeout = Duration::from_millis(300);
    o.retries = 3;
    let err = format!(
        "{:#}",
        fetch(&spec("h.bin", &body, vec![srv.url("slow", "h.bin")]), &o).unwrap_err()
    );
    assert!(
        err.contains("slow/h.bin: answered, then sent no byte for 300ms: dropped like a mirror that does not answer"),
        "{err}"
    );
    assert!(!err.contains("attempts"), "{err}");
    assert_eq!(srv.requests(), vec!["GET /slow/h.bin"]);
    let p = fetch(
        &spec(
            "h.bin",
            &body,
            vec![srv.url("slow", "h.bin"), srv.url("range", "h.bin")],
        ),
        &o,
    )
    .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    // A transfer that stalls after part of the file is resumed in a later round instead.
    let srv = server_with("i.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &NoProgress);
    o.read_timeout = Duration::from_millis(300);
    o.retries = 1;
    let err = format!(
        "{:#}",
        fetch(
            &spec("i.bin", &body, vec![srv.url("halfstall", "i.bin")]),
            &o
        )
        .unwrap_err()
    );
    assert!(err.contains("transfer failed after 2000 bytes"), "{err}");
    assert_eq!(
        srv.requests(),
        vec!["GET /halfstall/i.bin", "GET /halfstall/i.bin range=2000"]
    );
}

#[test]
fn slow_live_transfer_is_not_cut_off() {
    // The body arrives over 1.2 s in pieces 100 ms apart: longer than the answer timeout
    // and than the read timeout, but no single wait comes near the read timeout.
    let body = payload(60_000);
    let srv = server_with("n.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &NoProgress);
    o.timeout = Duration::from_millis(300);
    o.read_timeout = Duration::from_secs(1);
    o.retries = 0;
    let t0 = Instant::now();
    let p = fetch(&spec("n.bin", &body, vec![srv.url("trickle", "n.bin")]), &o).unwrap();
    assert!(t0.elapsed() > o.read_timeout, "{:?}", t0.elapsed());
    assert_eq!(std::fs::read(p).unwrap(), body);
    assert_eq!(srv.requests(), vec!["GET /trickle/n.bin"]);
}

#[test]
fn mirror_that_answered_with_an_error_is_retried_after_backoff() {
    let body = payload(2_000);
    let srv = server_with("o.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let p = fetch(
        &spec("o.bin", &body, vec![srv.url("flaky", "o.bin")]),
        &opts(tmp.path(), &NoProgress),
    )
    .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), body);
    assert_eq!(srv.requests(), vec!["GET /flaky/o.bin", "GET /flaky/o.bin"]);
    // Out of rounds: one line for the mirror, with its attempts.
    let srv = server_with("o.bin", &body);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &NoProgress);
    o.retries = 0;
    let err = format!(
        "{:#}",
        fetch(&spec("o.bin", &body, vec![srv.url("flaky", "o.bin")]), &o).unwrap_err()
    );
    assert!(err.contains("flaky/o.bin: HTTP 503"), "{err}");
}
