//! A `git daemon` serving one repository made from a directory, for
//! `git://` contexts: started by the test that needs it, listening only on
//! the address it is given (loopback for the pod runner, the real node's
//! bridge address for real pods), and killed with its process group when
//! dropped (the daemon forks a `git-daemon` child of its own).

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GitDaemon {
    child: Child,
    address: SocketAddr,
    _served: tempfile::TempDir,
}

impl GitDaemon {
    /// Commits the files of `tree` on a branch `main` of a fresh
    /// repository, tags it `v1`, and serves it as `app.git` on `listen`.
    pub fn serve(tree: &Path, listen: IpAddr) -> GitDaemon {
        let served = tempfile::tempdir().unwrap();
        let work = served.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(tree.join("."))
            .arg(&work)
            .status()
            .unwrap();
        assert!(
            copied.success(),
            "copying {} to {}",
            tree.display(),
            work.display()
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A", "."]);
        git(&work, &["commit", "-q", "-m", "the context"]);
        git(&work, &["tag", "-a", "v1", "-m", "version 1"]);
        git(
            served.path(),
            &["clone", "-q", "--bare", "work", "repos/app.git"],
        );
        let repos = served.path().join("repos");

        // A free port on that address; git daemon binds it right after.
        let port = TcpListener::bind((listen, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .arg("daemon")
            .arg(format!("--base-path={}", repos.display()))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--listen={listen}"))
            .arg(format!("--port={port}"))
            .arg(&repos)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting git daemon (is git installed?): {e}"));
        let daemon = GitDaemon {
            child,
            address: SocketAddr::new(listen, port),
            _served: served,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(daemon.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {}",
                daemon.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// `git://address:port/app.git`.
    pub fn url(&self) -> String {
        format!("git://{}/app.git", self.address)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("running git {args:?}: {e}"));
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
