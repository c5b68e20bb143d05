//! Registry credentials from docker's `config.json`: `auths` entries
//! (base64 `auth` or `username`/`password`), `credHelpers` and `credsStore`
//! (looked up by the `docker_credential` crate), anonymous otherwise.
//!
//! The file is found once per build: an explicit directory, else
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, then kaniko's
//! `/kaniko/.docker/config.json`, the first that exists.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use super::error::RegistryError;
use super::options::canonical_registry;

const KANIKO_CONFIG_DIR: &str = "/kaniko/.docker";

/// Credentials for every registry of a build, read lazily and remembered.
#[derive(Debug)]
pub(crate) struct Credentials {
    /// The config.json in use, if any exists.
    file: Option<PathBuf>,
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
        let docker_config = std::env::var_os("DOCKER_CONFIG");
        let home = std::env::var_os("HOME");
        let searched =
            config_file_candidates(explicit_dir, docker_config.as_deref(), home.as_deref());
        let file = searched.iter().find(|p| p.is_file()).cloned();
        Credentials {
            file,
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
            let reader = std::fs::File::open(file)
                .map(std::io::BufReader::new)
                .map_err(|e| fail(e.to_string()))?;
            match docker_credential::get_credential_from_reader(reader, &server) {
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

/// An identity token is an OAuth2 refresh token, which oci-client cannot
/// exchange; it is offered as a bearer token, which registries that mint
/// long-lived tokens (e.g. GitLab deploy tokens via helpers) accept.
fn to_registry_auth(credential: DockerCredential) -> RegistryAuth {
    match credential {
        DockerCredential::UsernamePassword(user, password) => RegistryAuth::Basic(user, password),
        DockerCredential::IdentityToken(token) => RegistryAuth::Bearer(token),
    }
}

#[cfg(test)]
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
