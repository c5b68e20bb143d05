//! The loopback HTTP server that stands in for the internet in the kaniko
//! peer suite: kaniko's Dockerfiles ADD files from github.com and
//! raw.githubusercontent.com, the adapted ones from `${HTTP}`, this
//! server. It serves the files under one directory (the URL path is the
//! path below it) and answers anything else with 404, which
//! `Dockerfile_test_add_404` expects.
//!
//! Bound to 127.0.0.1 only, one connection at a time (the files are a few
//! hundred bytes); [`HttpServer`]'s drop stops it and joins its thread.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A running server; dropping it stops it.
pub struct HttpServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves the files below `root` on an ephemeral loopback port.
    pub fn start(root: &Path) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the loopback HTTP server");
        let address = listener.local_addr().expect("the HTTP server's address");
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // A client that hangs up mid-request is its failure,
                        // reported by the build that made it.
                        let _ = serve(&root, stream);
                    }
                }
            })
        };
        HttpServer {
            url: format!("http://{address}"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The file below `root` that `url_path` names, if it is a plain path
/// inside it (no `..`, no query).
fn file_for(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.strip_prefix('/')?);
    if url_path.contains('?')
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

/// Answers one request (GET or HEAD) and closes the connection.
fn serve(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are read and dropped: nothing here depends on them.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = match (method, file_for(root, path)) {
        ("GET" | "HEAD", Some(file)) => Some(std::fs::read(file)?),
        _ => None,
    };
    let mut stream = stream;
    match body {
        Some(body) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method == "GET" {
                stream.write_all(&body)?;
            }
        }
        None => {
            stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
            )?;
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::file_for;

    #[test]
    fn only_plain_paths_inside_the_root_are_served() {
        let root = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(root.path().join("a")).expect("mkdir");
        std::fs::write(root.path().join("a/b.txt"), "b").expect("write");
        let cases = [
            ("/a/b.txt", true),
            ("/a", false),
            ("/a/../a/b.txt", false),
            ("/a/b.txt?x=1", false),
            ("a/b.txt", false),
            ("/404", false),
        ];
        for (path, served) in cases {
            assert_eq!(file_for(root.path(), path).is_some(), served, "{path}");
        }
    }
}
