//! A real OCI registry on loopback: Debian's `docker-registry`
//! (distribution 2.8) with its storage in a temporary directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry, killed on drop.
///
/// ```ignore
/// let registry = TestRegistry::start();
/// let reference = format!("{}/app:1", registry.host());
/// ```
pub struct TestRegistry {
    host: String,
    dir: tempfile::TempDir,
    child: Child,
    credentials: Option<(String, String)>,
    ca_certificate: Option<PathBuf>,
    client_certificate: Option<ClientCertificate>,
}

/// A TLS client certificate and its key, PEM files signed by a test
/// registry's CA (`openssl`, as the server's).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestRegistry {
    /// Starts an open registry (no authentication). Panics, naming the
    /// package to install, when the binary is missing.
    pub fn start() -> TestRegistry {
        TestRegistry::launch(None, Tls::None)
    }

    /// Starts an open registry serving HTTPS with a certificate for
    /// `127.0.0.1` and `localhost`, signed by a fresh test CA (see
    /// [`TestRegistry::ca_certificate`]). Needs the `openssl` command.
    pub fn start_tls() -> TestRegistry {
        TestRegistry::launch(None, Tls::Server)
    }

    /// [`TestRegistry::start_tls`], refusing every connection that does
    /// not present a client certificate signed by its CA
    /// (docker-registry's `http.tls.clientcas`); one such certificate is
    /// made for the tests ([`TestRegistry::client_certificate`]).
    pub fn start_mtls() -> TestRegistry {
        TestRegistry::launch(None, Tls::ClientCertificates)
    }

    /// Starts a registry that requires HTTP basic authentication with
    /// this user and password (bcrypt htpasswd via apache2-utils).
    pub fn start_with_auth(user: &str, password: &str) -> TestRegistry {
        TestRegistry::launch(Some((user.to_string(), password.to_string())), Tls::None)
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The user and password, for registries started with authentication.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The PEM file of the CA that signed a TLS registry's certificate.
    pub fn ca_certificate(&self) -> Option<&Path> {
        self.ca_certificate.as_deref()
    }

    /// The client certificate a registry started with [`TestRegistry::start_mtls`] accepts.
    pub fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.client_certificate.as_ref()
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where a blob's bytes live on disk, for tests that corrupt them.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn launch(credentials: Option<(String, String)>, mode: Tls) -> TestRegistry {
        let tls = mode != Tls::None;
        assert!(
            Path::new(REGISTRY_BINARY).is_file(),
            "{REGISTRY_BINARY} is missing: install Debian's docker-registry package (apt-get install docker-registry)"
        );
        // A free port can be taken between probing and binding; try again.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory for the registry");
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let auth = credentials.as_ref().map(|(user, password)| {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd, user, password);
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    htpasswd.display()
                )
            });
            let ca_certificate = tls.then(|| write_tls_files(dir.path()));
            let client_certificate = (mode == Tls::ClientCertificates)
                .then(|| write_client_certificate(dir.path(), &dir.path().join("client")));
            let mut tls_config = if tls {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("cert.pem").display(),
                    dir.path().join("key.pem").display()
                )
            } else {
                String::new()
            };
            if client_certificate.is_some() {
                tls_config.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.path().join("ca.pem").display()
                ));
            }
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {host}\n  secret: kiln-test-secret\n{tls_config}\
                 {}",
                dir.path().join("storage").display(),
                auth.unwrap_or_default()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("writing the registry config");
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .expect("creating the registry log");
            let log_err = log.try_clone().expect("cloning the registry log handle");
            let child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {REGISTRY_BINARY}: {e}"));
            let mut registry = TestRegistry {
                host,
                dir,
                child,
                credentials: credentials.clone(),
                ca_certificate,
                client_certificate,
            };
            if registry.wait_until_ready() {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("{REGISTRY_BINARY} did not start; its last log:\n{last_log}");
    }

    /// Polls `/v2/` until the registry answers (200, or 401 with auth).
    fn wait_until_ready(&mut self) -> bool {
        let tls_ready = self.ca_certificate.is_some();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(status) = http_get_status(&self.host, "/v2/") {
                // A TLS registry answers plain HTTP with 400.
                if status == 200 || status == 401 || (tls_ready && status == 400) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tls {
    None,
    Server,
    ClientCertificates,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/config.json` with basic-auth credentials for `host`, as
/// `docker login` would (base64 `user:password` under `auths`).
pub fn write_docker_config(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = serde_json::json!({ "auths": { host: { "auth": auth } } });
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&json).expect("config JSON"),
    )
    .expect("writing config.json");
    path
}

/// Writes a test CA (`ca.pem`) and a server certificate signed by it
/// (`cert.pem`, `key.pem`) for 127.0.0.1 and localhost into `dir`.
pub fn write_tls_files(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (Debian package openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=kiln test CA",
    ]);
    openssl(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing the certificate extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    dir.join("ca.pem")
}

/// Writes a client certificate (`CN=kiln test client`, clientAuth) and its
/// key into `out` (created), signed by the CA [`write_tls_files`] wrote
/// into `ca_dir`.
pub fn write_client_certificate(ca_dir: &Path, out: &Path) -> ClientCertificate {
    std::fs::create_dir_all(out).expect("creating the client certificate directory");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(out)
            .output()
            .expect("running openssl (Debian package openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=kiln test client",
    ]);
    std::fs::write(
        out.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("writing the client certificate extensions");
    let ca = ca_dir.join("ca.pem");
    let ca_key = ca_dir.join("ca.key");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        ca.to_str().expect("a UTF-8 temporary path"),
        "-CAkey",
        ca_key.to_str().expect("a UTF-8 temporary path"),
        "-CAcreateserial",
        "-CAserial",
        "client.srl",
        "-out",
        "client.crt",
        "-days",
        "2",
        "-extfile",
        "client.ext",
    ]);
    ClientCertificate {
        cert: out.join("client.crt"),
        key: out.join("client.key"),
    }
}

fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("running htpasswd: install apache2-utils");
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(path, &output.stdout).expect("writing htpasswd");
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// The status of a plain-HTTP GET, or `None` if nothing answered.
fn http_get_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// kiln registry options for tests: an empty docker config directory, so
/// the developer's own credentials never leak in (and no environment
/// variable is read or set), and retry delays of milliseconds.
pub fn isolated_options() -> kiln_builder::registry::RegistryOptions {
    let config_dir = tempfile::tempdir()
        .expect("temporary docker config directory")
        .keep();
    kiln_builder::registry::RegistryOptions {
        docker_config_dir: Some(config_dir),
        push_retry_initial_delay: Duration::from_millis(10),
        push_retry_max_delay: Duration::from_millis(40),
        ..kiln_builder::registry::RegistryOptions::default()
    }
}
