//! Registry credentials from docker's `config.json`: `auths` entries
//! (base64 `auth` or `username`/`password`), `credHelpers` and `credsStore`
//! (looked up by the `docker_credential` crate), anonymous otherwise.
//!
//! The file is found once per build: an explicit directory, else
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, then kaniko's
//! `/kaniko/.docker/config.json`, the first that exists. A config *taken*
//! at start (`--take-docker-config`, [`take_docker_config`]) comes before
//! all of these but the explicit directory: its bytes are kept in memory
//! and its file is removed before any build step runs, so that a RUN step
//! cannot read it (kaniko#106).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::error::RegistryError;
use super::options::canonical_registry;

const KANIKO_CONFIG_DIR: &str = "/kaniko/.docker";

/// The credentials for one registry. Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum RegistryAuth {
    Anonymous,
    /// User and password, sent as HTTP basic authentication (to the
    /// registry, or to its token server for a token).
    Basic(String, String),
    /// A token sent as it is (an identity token from a credential helper).
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic(user, _) => f
                .debug_tuple("Basic")
                .field(user)
                .field(&"<redacted>")
                .finish(),
            RegistryAuth::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

/// A docker config.json read once and removed: the bytes, and where they
/// were (for messages). Its `Debug` shows the path only.
pub struct TakenDockerConfig {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for TakenDockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakenDockerConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The config taken by this process, if any ([`install_taken_docker_config`]).
static TAKEN: OnceLock<TakenDockerConfig> = OnceLock::new();

/// Reads the docker config.json at `path` and removes the file: after this,
/// the credentials are in this process's memory only (which a RUN step
/// cannot read once kiln is not dumpable).
pub fn take_docker_config(path: &Path) -> Result<TakenDockerConfig, RegistryError> {
    let fail = |action: &'static str| {
        move |source| RegistryError::TakeDockerConfig {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let bytes = std::fs::read(path).map_err(fail("reading"))?;
    std::fs::remove_file(path).map_err(fail("removing"))?;
    Ok(TakenDockerConfig {
        path: path.to_path_buf(),
        bytes,
    })
}

/// Makes `taken` the config of every registry client of this process
/// that is not given a directory explicitly. Once per process: a second
/// call is refused (returns `taken` back).
pub fn install_taken_docker_config(taken: TakenDockerConfig) -> Result<(), Box<TakenDockerConfig>> {
    TAKEN.set(taken).map_err(Box::new)
}

/// Copies the docker config.json `from` to `to` (mode 0600), creating
/// `to` anew: what the operator's init container does, from the registry
/// Secret's volume (which the builder container never mounts) to a
/// memory-backed volume the builder then takes it from.
pub fn copy_docker_config(from: &Path, to: &Path) -> Result<(), RegistryError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RegistryError::TakeDockerConfig {
            action,
            path,
            source,
        }
    };
    let bytes = std::fs::read(from).map_err(fail("reading", from))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(fail("creating", to))?;
    file.write_all(&bytes).map_err(fail("writing", to))?;
    file.sync_all().map_err(fail("writing", to))
}

/// Credentials for every registry of a build, read lazily and remembered.
#[derive(Debug)]
pub(crate) struct Credentials {
    /// The config.json in use, if any exists.
    file: Option<PathBuf>,
    /// Its bytes, when it was taken at start (the file is gone).
    taken: Option<&'static TakenDockerConfig>,
    /// Every place looked at, for messages when none exists.
    searched: Vec<PathBuf>,
    cache: Mutex<HashMap<String, RegistryAuth>>,
    /// `--credential-helpers`, asked in order when the file has nothing.
    helpers: Vec<String>,
}

/// Where config.json may be, in order of preference. With an explicit
/// directory, only there: callers that pass one do not want the environment.
pub(crate) fn config_file_candidates(
    explicit_dir: Option<&Path>,
    docker_config_env: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Vec<PathBuf> {
    if let Some(dir) = explicit_dir {
        return vec![dir.join("config.json")];
    }
    let mut candidates = Vec::new();
    if let Some(dir) = docker_config_env.filter(|d| !d.is_empty()) {
        candidates.push(Path::new(dir).join("config.json"));
    }
    if let Some(home) = home.filter(|h| !h.is_empty()) {
        candidates.push(Path::new(home).join(".docker").join("config.json"));
    }
    candidates.push(Path::new(KANIKO_CONFIG_DIR).join("config.json"));
    candidates
}

/// The keys a registry's credentials are stored under: Docker Hub's are
/// under its v1 URL (what `docker login` and credential stores use) or a
/// bare host name; every other registry under its host.
fn server_keys(registry: &str) -> Vec<String> {
    let canonical = canonical_registry(registry);
    if canonical == "docker.io" {
        vec![
            "https://index.docker.io/v1/".to_string(),
            "docker.io".to_string(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

impl Credentials {
    /// Finds config.json; reading it waits until a registry needs it.
    pub(crate) fn discover(explicit_dir: Option<&Path>) -> Credentials {
        Credentials::discover_with(explicit_dir, TAKEN.get())
    }

    /// [`Credentials::discover`], with the config taken at start given.
    fn discover_with(
        explicit_dir: Option<&Path>,
        taken: Option<&'static TakenDockerConfig>,
    ) -> Credentials {
        let taken = taken.filter(|_| explicit_dir.is_none());
        if let Some(taken) = taken {
            return Credentials {
                file: Some(taken.path.clone()),
                taken: Some(taken),
                searched: vec![taken.path.clone()],
                cache: Mutex::new(HashMap::new()),
                helpers: Vec::new(),
            };
        }
        let docker_config = std::env::var_os("DOCKER_CONFIG");
        let home = std::env::var_os("HOME");
        let searched =
            config_file_candidates(explicit_dir, docker_config.as_deref(), home.as_deref());
        let file = searched.iter().find(|p| p.is_file()).cloned();
        Credentials {
            file,
            taken: None,
            searched,
            cache: Mutex::new(HashMap::new()),
            helpers: Vec::new(),
        }
    }

    /// Also asks the credential helpers `names` (kaniko's
    /// `--credential-helpers`; `docker-credential-NAME`, run as the docker
    /// CLI runs them) for registries the docker config has nothing for.
    pub(crate) fn with_helpers(mut self, names: Vec<String>) -> Credentials {
        self.helpers = names;
        self
    }

    /// Where credentials come from, for messages: the file, or where none was.
    pub(crate) fn source_description(&self) -> String {
        match &self.file {
            Some(file) if self.taken.is_some() => {
                format!("{} (taken when kiln started)", file.display())
            }
            Some(file) => file.display().to_string(),
            None => {
                let places: Vec<String> = self
                    .searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                format!("no docker config found (looked for {})", places.join(", "))
            }
        }
    }

    /// What to tell a user whose request to `registry` was refused.
    pub(crate) fn hint_for_denied(&self, registry: &str) -> String {
        match &self.file {
            Some(file) => format!(
                "; check the credentials for {registry} in {}",
                file.display()
            ),
            None => format!(
                "; no credentials for {registry}: {}; add them with `docker login {registry}` or write {}",
                self.source_description(),
                self.searched
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "config.json".to_string())
            ),
        }
    }

    /// The credentials for `registry` (a host, as
    /// `Reference::resolve_registry` gives it). May run a credential helper,
    /// so call it off the async executor.
    pub(crate) fn lookup(&self, registry: &str) -> Result<RegistryAuth, RegistryError> {
        if let Some(auth) = self.cached(registry) {
            return Ok(auth);
        }
        let mut auth = match &self.file {
            None => RegistryAuth::Anonymous,
            Some(file) => self.read(file, registry)?,
        };
        if matches!(auth, RegistryAuth::Anonymous) {
            for helper in &self.helpers {
                if let Some(found) = self.ask_helper(helper, registry)? {
                    auth = found;
                    break;
                }
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(registry.to_string(), auth.clone());
        }
        Ok(auth)
    }

    fn cached(&self, registry: &str) -> Option<RegistryAuth> {
        self.cache.lock().ok()?.get(registry).cloned()
    }

    fn read(&self, file: &Path, registry: &str) -> Result<RegistryAuth, RegistryError> {
        let fail = |message: String| RegistryError::Credentials {
            registry: registry.to_string(),
            source_description: file.display().to_string(),
            message,
        };
        for server in server_keys(registry) {
            let found = match self.taken {
                Some(taken) => docker_credential::get_credential_from_reader(
                    std::io::Cursor::new(&taken.bytes[..]),
                    &server,
                ),
                None => {
                    let reader = std::fs::File::open(file)
                        .map(std::io::BufReader::new)
                        .map_err(|e| fail(e.to_string()))?;
                    docker_credential::get_credential_from_reader(reader, &server)
                }
            };
            match found {
                Ok(credential) => return Ok(to_registry_auth(credential)),
                Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
                Err(CredentialRetrievalError::HelperCommunicationError) => {
                    // A credsStore copied from a desktop machine names a
                    // helper that is not installed here; public images must
                    // still pull.
                    tracing::warn!(
                        "the credential helper configured in {} for {registry} could not be run; continuing without credentials",
                        file.display()
                    );
                    return Ok(RegistryAuth::Anonymous);
                }
                Err(CredentialRetrievalError::HelperFailure { helper, stderr, .. }) => {
                    if stderr.contains("credentials not found") {
                        return Ok(RegistryAuth::Anonymous);
                    }
                    // stdout may carry a secret; stderr is the helper's complaint.
                    return Err(fail(format!("{helper} failed: {}", stderr.trim())));
                }
                Err(CredentialRetrievalError::ConfigReadError) => {
                    return Err(fail("the file is not valid docker config JSON".to_string()));
                }
                Err(other) => return Err(fail(other.to_string())),
            }
        }
        Ok(RegistryAuth::Anonymous)
    }
}

impl Credentials {
    /// Runs `docker-credential-<helper> get` for `registry`: `None` when the
    /// helper is not installed or has no credentials for it.
    fn ask_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<RegistryAuth>, RegistryError> {
        for server in server_keys(registry) {
            // The helper as a docker config names it, so the docker
            // credential crate runs it exactly as for credHelpers.
            let config = serde_json::json!({ "credHelpers": { &server: helper } }).to_string();
            match docker_credential::get_credential_from_reader(config.as_bytes(), &server) {
                Ok(credential) => return Ok(Some(to_registry_auth(credential))),
                Err(CredentialRetrievalError::HelperCommunicationError) => {
                    tracing::debug!(
                        "credential helper docker-credential-{helper} could not be run"
                    );
                    return Ok(None);
                }
                Err(CredentialRetrievalError::HelperFailure { stderr, .. })
                    if stderr.contains("credentials not found") =>
                {
                    continue;
                }
                Err(CredentialRetrievalError::HelperFailure { helper, stderr, .. }) => {
                    return Err(RegistryError::Credentials {
                        registry: registry.to_string(),
                        source_description: format!("--credential-helpers={helper}"),
                        // stdout may carry a secret; stderr is the helper's complaint.
                        message: format!("{helper} failed: {}", stderr.trim()),
                    });
                }
                Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
                Err(other) => {
                    return Err(RegistryError::Credentials {
                        registry: registry.to_string(),
                        source_description: format!("--credential-helpers={helper}"),
                        message: other.to_string(),
                    });
                }
            }
        }
        Ok(None)
    }
}

/// An identity token is an OAuth2 refresh token, which kiln does not
/// exchange; it is offered as a bearer token, which registries that mint
/// long-lived tokens (e.g. GitLab deploy tokens via helpers) accept.
fn to_registry_auth(credential: DockerCredential) -> RegistryAuth {
    match credential {
        DockerCredential::UsernamePassword(user, password) => RegistryAuth::Basic(user, password),
        DockerCredential::IdentityToken(token) => RegistryAuth::Bearer(token),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn config_file_search_order() {
        let env = OsString::from("/env/docker");
        let home = OsString::from("/home/u");
        // explicit dir, $DOCKER_CONFIG, $HOME, expected search order
        type Case<'a> = (
            Option<&'a Path>,
            Option<&'a OsStr>,
            Option<&'a OsStr>,
            &'a [&'a str],
        );
        let table: [Case; 4] = [
            (
                Some(Path::new("/explicit")),
                Some(&env),
                Some(&home),
                &["/explicit/config.json"],
            ),
            (
                None,
                Some(&env),
                Some(&home),
                &[
                    "/env/docker/config.json",
                    "/home/u/.docker/config.json",
                    "/kaniko/.docker/config.json",
                ],
            ),
            (
                None,
                None,
                Some(&home),
                &["/home/u/.docker/config.json", "/kaniko/.docker/config.json"],
            ),
            (
                None,
                Some(OsStr::new("")),
                None,
                &["/kaniko/.docker/config.json"],
            ),
        ];
        for (explicit, env, home, want) in table {
            let got = config_file_candidates(explicit, env, home);
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want);
        }
    }

    fn credentials_in(dir: &Path, json: &str) -> Credentials {
        std::fs::write(dir.join("config.json"), json).unwrap();
        Credentials::discover(Some(dir))
    }

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.to_string(), password.to_string())
    }

    #[test]
    fn a_taken_config_is_read_from_memory_its_file_removed_and_an_explicit_dir_still_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        // "dXNlcjpwYXNz" is base64("user:pass").
        std::fs::write(
            &file,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"}}}"#,
        )
        .unwrap();
        let taken: &'static TakenDockerConfig =
            Box::leak(Box::new(take_docker_config(&file).unwrap()));
        assert!(!file.exists(), "the file must be gone once taken");
        assert_eq!(
            format!("{taken:?}"),
            format!("TakenDockerConfig {{ path: {file:?}, .. }}")
        );
        let creds = Credentials::discover_with(None, Some(taken));
        assert_eq!(
            creds.lookup("127.0.0.1:5000").unwrap(),
            basic("user", "pass")
        );
        assert_eq!(
            creds.source_description(),
            format!("{} (taken when kiln started)", file.display())
        );
        let other = tempfile::tempdir().unwrap();
        let explicit = credentials_in(other.path(), r#"{"auths":{}}"#);
        assert_eq!(
            explicit.lookup("127.0.0.1:5000").unwrap(),
            RegistryAuth::Anonymous
        );
        let explicit = Credentials::discover_with(Some(other.path()), Some(taken));
        assert_eq!(
            explicit.lookup("127.0.0.1:5000").unwrap(),
            RegistryAuth::Anonymous
        );

        let missing = take_docker_config(&file).unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "reading the docker config {}: No such file or directory (os error 2)",
                file.display()
            )
        );
    }

    #[test]
    fn copying_a_config_makes_a_new_file_only_its_owner_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (
            dir.path().join("secret.json"),
            dir.path().join("config.json"),
        );
        std::fs::write(&from, "{}").unwrap();
        copy_docker_config(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"{}");
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let again = copy_docker_config(&from, &to).unwrap_err();
        assert_eq!(
            again.to_string(),
            format!(
                "creating the docker config {}: File exists (os error 17)",
                to.display()
            )
        );
    }

    #[test]
    fn reads_auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        // "dXNlcjpwYXNz" is base64("user:pass"); "aHViOnNlY3JldA==" is "hub:secret".
        let creds = credentials_in(
            dir.path(),
            r#"{"auths":{
                "127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},
                "https://ghcr.io":{"username":"gh","password":"tok"},
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}
            }}"#,
        );
        let table = [
            ("127.0.0.1:5000", basic("user", "pass")),
            ("ghcr.io", basic("gh", "tok")),
            ("index.docker.io", basic("hub", "secret")),
            ("docker.io", basic("hub", "secret")),
            ("quay.io", RegistryAuth::Anonymous),
        ];
        for (registry, want) in table {
            assert_eq!(creds.lookup(registry).unwrap(), want, "{registry}");
        }
    }

    #[test]
    fn bare_docker_hub_key_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials_in(
            dir.path(),
            r#"{"auths":{"docker.io":{"auth":"aHViOnNlY3JldA=="}}}"#,
        );
        assert_eq!(
            creds.lookup("index.docker.io").unwrap(),
            basic("hub", "secret")
        );
    }

    #[test]
    fn missing_file_means_anonymous_and_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials::discover(Some(dir.path()));
        assert_eq!(
            creds.lookup("127.0.0.1:5000").unwrap(),
            RegistryAuth::Anonymous
        );
        let path = dir.path().join("config.json");
        assert_eq!(
            creds.hint_for_denied("127.0.0.1:5000"),
            format!(
                "; no credentials for 127.0.0.1:5000: no docker config found (looked for {}); add them with `docker login 127.0.0.1:5000` or write {}",
                path.display(),
                path.display()
            )
        );
    }

    #[test]
    fn broken_files_and_helpers_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials_in(dir.path(), "{not json");
        let path = dir.path().join("config.json");
        assert_eq!(
            creds.lookup("ghcr.io").unwrap_err().to_string(),
            format!(
                "reading registry credentials for ghcr.io from {}: the file is not valid docker config JSON",
                path.display()
            )
        );

        let dir = tempfile::tempdir().unwrap();
        let creds = credentials_in(
            dir.path(),
            r#"{"auths":{"ghcr.io":{"auth":"!!notbase64"}}}"#,
        );
        assert_eq!(
            creds.lookup("ghcr.io").unwrap_err().to_string(),
            format!(
                "reading registry credentials for ghcr.io from {}: Unable to decode credential",
                dir.path().join("config.json").display()
            )
        );
    }

    #[test]
    fn missing_credential_helper_falls_back_to_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials_in(
            dir.path(),
            r#"{"credHelpers":{"ghcr.io":"kiln-test-helper-that-does-not-exist"}}"#,
        );
        assert_eq!(creds.lookup("ghcr.io").unwrap(), RegistryAuth::Anonymous);
    }
}
