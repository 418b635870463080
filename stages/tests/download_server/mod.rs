//! A small HTTP/1.1 file server on 127.0.0.1 for the download tests (no internet).
//!
//! Routes, each `/<route>/<name>` serving the registered file `name`:
//! * `range`: 200, or 206 with `Content-Range` when the request has `Range: bytes=N-`;
//! * `plain`: always 200 with the whole file (ignores `Range`);
//! * `drop`: announces the full length, sends half the bytes, closes the connection;
//! * `wrong`: the right length, wrong bytes;
//! * `slow`: sends the headers, then stalls for 5 s before the body;
//! * `halfstall`: sends the headers and half the body, then stalls for 5 s;
//! * `stall`: reads the request and never answers (holds the connection for 60 s);
//! * `trickle`: sends the headers, then the body in 12 pieces 100 ms apart (1.2 s);
//! * `flaky`: 503 for the first request of a path, then as `range`;
//! * anything else, or an unknown name: 404.
//!
//! Every request line (with its Range header, if any) is logged for the tests to inspect.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Server {
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(files);
        let l2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (files, log) = (files.clone(), l2.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &files, &log);
                });
            }
        });
        Server { base, log }
    }

    pub fn url(&self, route: &str, name: &str) -> String {
        format!("{}/{route}/{name}", self.base)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A port nothing listens on.
pub fn dead_url(name: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/range/{name}")
}

fn handle(
    stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<u64> = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    let earlier = {
        let mut log = log.lock().unwrap();
        let earlier = log
            .iter()
            .filter(|l| l.split_whitespace().nth(1) == Some(path.as_str()))
            .count();
        log.push(match range {
            Some(n) => format!("GET {path} range={n}"),
            None => format!("GET {path}"),
        });
        earlier
    };
    let mut w = stream;
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (route, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(body) = files.get(name) else {
        return w.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n{extra}Connection: close\r\n\r\n")
    };
    let route = match route {
        "flaky" if earlier == 0 => return w.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        "flaky" => "range",
        other => other,
    };
    match route {
        "stall" => {
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        "trickle" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            w.flush()?;
            let piece = body.len().div_ceil(12).max(1);
            for chunk in body.chunks(piece) {
                std::thread::sleep(Duration::from_millis(100));
                w.write_all(chunk)?;
                w.flush()?;
            }
            Ok(())
        }
        "range" => match range {
            Some(n) if (n as usize) < body.len() => {
                let n = n as usize;
                let extra = format!("Content-Range: bytes {n}-{}/{}\r\n", body.len() - 1, body.len());
                w.write_all(head("206 Partial Content", body.len() - n, &extra).as_bytes())?;
                w.write_all(&body[n..])
            }
            Some(_) => w.write_all(
                format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len())
                    .as_bytes(),
            ),
            None => {
                w.write_all(head("200 OK", body.len(), "").as_bytes())?;
                w.write_all(body)
            }
        },
        "plain" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            w.write_all(body)
        }
        "drop" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            w.write_all(&body[..body.len() / 2])?;
            w.flush()?;
            w.shutdown(std::net::Shutdown::Both)
        }
        "wrong" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            let bad: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
            w.write_all(&bad)
        }
        "halfstall" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            w.write_all(&body[..body.len() / 2])?;
            w.flush()?;
            std::thread::sleep(Duration::from_secs(5));
            w.write_all(&body[body.len() / 2..])
        }
        "slow" => {
            w.write_all(head("200 OK", body.len(), "").as_bytes())?;
            w.flush()?;
            std::thread::sleep(Duration::from_secs(5));
            w.write_all(body)
        }
        _ => w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}
