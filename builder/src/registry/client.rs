//! The I/O shell: one [`Registry`] per build, holding an [`Endpoint`] (a
//! `reqwest::Client` with the registry's TLS settings, its challenge and
//! tokens) per registry and access direction, credentials, and the retry
//! policies. The protocol's requests are in `distribution`; what their
//! answers mean for a build (digests, sizes, bounds, progress, retries) is
//! here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use reqwest::{Method, StatusCode, header};
use sha2::Digest as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::auth::{Credentials, RegistryAuth};
use super::distribution::{
    Endpoint, TransportError, asks_for_client_certificate, expect, pull_scope, push_scope,
    status_error,
};
use super::error::{
    Failure, RegistryError, classify, error_chain, is_certificate_failure,
    is_client_certificate_refusal,
};
use super::names::repository_of;
use super::options::{Access, ClientCertificate, RegistryOptions, Tls};
use super::retry::with_retries;
use super::select::{
    ACCEPTED_MANIFESTS, ManifestKind, config_platform, list_platforms, manifest_kind,
    manifest_media_type, select_entry,
};
use crate::platform::Platform;
use crate::progress::{Direction, Transfer};

const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));
const PUSH_FLAG: &str = "--push-retry";
const DOWNLOAD_FLAG: &str = "--image-download-retry";
/// Reads from the file and the network in pieces this large: few syscalls,
/// bounded memory.
const IO_CHUNK: usize = 256 * 1024;

/// Registry access for one build. Cheap to clone; clones share clients,
/// tokens and credentials.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    options: RegistryOptions,
    credentials: Arc<Credentials>,
    /// PEM bytes of every `--registry-certificate`, read once at start.
    certificates: HashMap<PathBuf, Vec<u8>>,
    /// Every `--registry-client-cert`, read and checked once at start.
    identities: HashMap<ClientCertificate, reqwest::Identity>,
    clients: Mutex<HashMap<(String, Access), Clients>>,
    /// One HTTP client per distinct TLS setting, shared by the registries
    /// and directions that have it: building one reads and parses every
    /// system root certificate (about 10 ms), which a build paid once per
    /// registry and direction before.
    http: Mutex<HashMap<Tls, reqwest::Client>>,
    /// One lock per blob being uploaded (`registry/repository@digest`):
    /// a second upload of the same blob (two platforms' equal layers, an
    /// early upload and the final push) waits for the first and then finds
    /// it there, instead of racing it, which registries answer with errors.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held blob upload lock; forgotten on drop once nobody else holds or
/// waits for it (a long-lived operator uploads many blobs).
struct UploadLock {
    registry: Registry,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let lock = Arc::clone(tokio::sync::OwnedMutexGuard::mutex(&guard));
        drop(guard);
        let mut uploads = match self.registry.inner.uploads.lock() {
            Ok(uploads) => uploads,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Ours and the map's: nobody else holds or waits for it.
        if Arc::strong_count(&lock) == 2 {
            uploads.remove(&self.key);
        }
    }
}

/// The most a manifest or an index may weigh (containerd's bound too): real
/// ones are a few KiB, an index of every platform well under 100 KiB.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// The most an image configuration may weigh: its history of every layer
/// is the largest part, a few hundred KiB for the largest real images.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The endpoint for one registry and direction.
#[derive(Clone)]
struct Clients {
    endpoint: Arc<Endpoint>,
    /// `host[:port]`.
    registry: String,
    plain_http: bool,
    client_certificate: bool,
}

/// A base image resolved for one platform.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// The reference as asked for, made canonical
    /// (`alpine` → `docker.io/library/alpine:latest`).
    pub reference: Reference,
    /// Where the manifest was found: `reference`, or a `--registry-mirror`'s
    /// copy of it. Fetch the layers from here.
    pub source: Reference,
    /// The digest of the image manifest chosen for the platform.
    pub manifest_digest: String,
    /// The digest of the index or manifest list the tag pointed to, if any.
    pub index_digest: Option<String>,
    pub manifest_bytes: Vec<u8>,
    pub manifest_media_type: String,
    pub manifest: ImageManifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfiguration,
}

/// A manifest the registry stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// `sha256:…` of the bytes pushed.
    pub digest: String,
    /// The registry answered `OCI-Subject`: it indexed the manifest's
    /// `subject` for its referrers API.
    pub subject_indexed: bool,
}

/// Parses an image reference, making Docker Hub names canonical.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    super::reference::parse(text.trim()).map_err(|source| RegistryError::InvalidReference {
        reference: text.to_string(),
        source,
    })
}

/// What a request was doing, for its error message.
struct Op {
    text: String,
    registry: String,
    plain_http: bool,
    /// Whether a `--registry-client-cert` was presented.
    client_certificate: bool,
    /// Said after an HTTP 404.
    not_found_hint: &'static str,
}

impl Registry {
    /// Reads the `--registry-certificate` and `--registry-client-cert`
    /// files (a client certificate must come with its own key) and finds
    /// config.json. Registries are contacted only when used.
    pub fn new(options: RegistryOptions) -> Result<Registry, RegistryError> {
        crate::tls::install_crypto_provider();
        let mut certificates = HashMap::new();
        for (registry, path) in &options.registry_certificates {
            let pem = std::fs::read(path).map_err(|source| RegistryError::Certificate {
                registry: registry.clone(),
                path: path.clone(),
                source,
            })?;
            certificates.insert(path.clone(), pem);
        }
        let mut identities = HashMap::new();
        for certificate in &options.registry_client_certs {
            identities.insert(certificate.clone(), load_identity(certificate)?);
        }
        let credentials = Arc::new(
            Credentials::discover(options.docker_config_dir.as_deref())
                .with_helpers(options.credential_helpers.clone()),
        );
        Ok(Registry {
            inner: Arc::new(Inner {
                options,
                credentials,
                certificates,
                identities,
                clients: Mutex::new(HashMap::new()),
                http: Mutex::new(HashMap::new()),
                uploads: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Resolves `reference` for `platform`: follows a tag to its manifest,
    /// an OCI index or Docker manifest list to its best entry for the
    /// platform, and fetches the configuration. A single-platform image must
    /// be built for the platform. Docker Hub images are tried on each
    /// `--registry-mirror` first.
    pub async fn pull_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<PulledImage, RegistryError> {
        let requested = parse_reference(reference)?;
        let (source, (bytes, media_type, digest)) = self.find_manifest(&requested).await?;

        let (manifest_bytes, manifest_media_type, manifest_digest, index_digest) =
            match manifest_kind(&media_type) {
                Some(ManifestKind::Image) => (bytes, media_type, digest, None),
                Some(ManifestKind::Index) => {
                    let index: ImageIndex =
                        serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json {
                            reference: requested.whole(),
                            what: "image index",
                            source,
                        })?;
                    let entry = select_entry(&index, platform).map_err(|available| {
                        RegistryError::NoMatchingPlatform {
                            reference: requested.whole(),
                            platform: platform.to_string(),
                            available: list_platforms(&available),
                        }
                    })?;
                    let child = source.clone_with_digest(entry.digest().to_string());
                    let (child_bytes, child_type, child_digest) =
                        self.fetch_manifest_raw(&child, Access::Pull).await?;
                    if manifest_kind(&child_type) != Some(ManifestKind::Image) {
                        return Err(RegistryError::UnsupportedMediaType {
                            reference: child.whole(),
                            media_type: child_type,
                            hint: format!(
                                "; the {platform} entry of {} must be an image manifest",
                                requested.whole()
                            ),
                        });
                    }
                    (child_bytes, child_type, child_digest, Some(digest))
                }
                None => {
                    return Err(RegistryError::UnsupportedMediaType {
                        reference: requested.whole(),
                        media_type,
                        hint: "; expected an image manifest or index".to_string(),
                    });
                }
            };

        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| RegistryError::Json {
                reference: format!("{}@{manifest_digest}", requested.whole()),
                what: "image manifest",
                source,
            })?;
        let config_bytes = self
            .fetch_blob_bytes(&source, manifest.config(), Access::Pull)
            .await?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|source| RegistryError::Json {
                reference: format!("{}@{manifest_digest}", requested.whole()),
                what: "image configuration",
                source,
            })?;
        if let Some(found) = config_platform(&config)
            && !platform.accepts(&found)
        {
            return Err(RegistryError::PlatformMismatch {
                reference: requested.whole(),
                wanted: platform.to_string(),
                found: found.to_string(),
            });
        }
        Ok(PulledImage {
            reference: requested,
            source,
            manifest_digest,
            index_digest,
            manifest_bytes,
            manifest_media_type,
            manifest,
            config_bytes,
            config,
        })
    }

    /// The first of the mirrors and the original that has the manifest.
    /// Mirror failures are logged; the original's is the one reported.
    async fn find_manifest(
        &self,
        requested: &Reference,
    ) -> Result<(Reference, (Vec<u8>, String, String)), RegistryError> {
        let mut candidates = self.inner.options.pull_candidates(requested);
        let original = candidates.pop().unwrap_or_else(|| requested.clone());
        for mirror in candidates {
            match self.fetch_manifest_raw(&mirror, Access::Pull).await {
                Ok(found) => return Ok((mirror, found)),
                Err(err) => tracing::info!("registry mirror failed, trying the next source: {err}"),
            }
        }
        let found = self.fetch_manifest_raw(&original, Access::Pull).await?;
        Ok((original, found))
    }

    /// Fetches a manifest (or index) as stored: its bytes, media type and
    /// digest, verified against the reference's digest when it has one.
    /// Retried `--image-download-retry` times. A missing manifest is an error
    /// for which [`RegistryError::is_not_found`] holds.
    pub async fn fetch_manifest_raw(
        &self,
        reference: &Reference,
        access: Access,
    ) -> Result<(Vec<u8>, String, String), RegistryError> {
        let clients = self.clients(reference, access)?;
        let auth = self.auth_for(reference).await?;
        let op = self.op(
            format!("fetching manifest {reference}"),
            reference,
            &clients,
            "; check the image name and tag",
        );
        let (bytes, digest) = self
            .explained(
                &clients,
                with_retries(self.inner.options.download_policy(), DOWNLOAD_FLAG, || {
                    self.get_manifest(&clients, reference, &auth, &op)
                })
                .await,
            )
            .await?;
        let media_type =
            manifest_media_type(&bytes).map_err(|found| RegistryError::UnsupportedMediaType {
                reference: reference.whole(),
                media_type: found,
                hint: String::new(),
            })?;
        Ok((bytes.to_vec(), media_type, digest))
    }

    /// One GET of a manifest, its body read up to [`MAX_MANIFEST_BYTES`]
    /// (a registry serving an endless manifest would fill kiln's memory)
    /// and checked against the reference's digest, or the registry's
    /// `Docker-Content-Digest`.
    async fn get_manifest(
        &self,
        clients: &Clients,
        reference: &Reference,
        auth: &RegistryAuth,
        op: &Op,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let endpoint = &clients.endpoint;
        let url = manifest_url(endpoint, reference);
        let scopes = [pull_scope(reference.repository())];
        let accept = ACCEPTED_MANIFESTS.join(", ");
        let mut response = endpoint
            .send(auth, &scopes, Method::GET, &url, |request| {
                request.header(header::ACCEPT, accept.as_str())
            })
            .await
            .map_err(|e| self.fail(op, e))?;
        let status = response.status();
        let header_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let too_large = || RegistryError::TooLarge {
            what: "manifest",
            reference: reference.whole(),
            limit: MAX_MANIFEST_BYTES as u64,
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_MANIFEST_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.fail(op, TransportError::Request(e)))?
        {
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status == StatusCode::UNAUTHORIZED {
            // The registry's "authentication required" says less than the
            // hint about credentials that follows it.
            return Err(self.fail(
                op,
                TransportError::Status {
                    status: status.as_u16(),
                    body: String::new(),
                },
            ));
        }
        if status != StatusCode::OK {
            return Err(self.fail(
                op,
                TransportError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
            ));
        }
        // The digest the content must have: the one asked for, else the
        // registry's own, else (no header) the body's sha256.
        let expected = reference
            .digest()
            .map(str::to_string)
            .or(header_digest)
            .unwrap_or_default();
        let mut hasher = BlobHasher::for_digest(&expected)
            .unwrap_or_else(|| BlobHasher::Sha256(sha2::Sha256::new()));
        hasher.update(&body);
        let actual = hasher.finish();
        if !expected.is_empty() && actual != expected {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                reference: reference.whole(),
                digest: expected,
                actual,
            });
        }
        Ok((body, actual))
    }

    /// Downloads the blob `descriptor` of `image` into `dest`, streaming, and
    /// checks its size and digest. Retried `--image-download-retry` times;
    /// a blob that does not match its digest is an error. `dest` is removed
    /// whenever the download fails.
    pub async fn fetch_blob_to_file(
        &self,
        image: &Reference,
        descriptor: &Descriptor,
        dest: &Path,
        access: Access,
    ) -> Result<(), RegistryError> {
        let clients = self.clients(image, access)?;
        let auth = self.auth_for(image).await?;
        let digest = descriptor.digest().to_string();
        let size = descriptor.size();
        let op = self.op(
            format!("pulling blob {digest} from {image}"),
            image,
            &clients,
            "",
        );
        self.explained(
            &clients,
            with_retries(
                self.inner.options.download_policy(),
                DOWNLOAD_FLAG,
                || async {
                    let result = self
                        .download_to_file(&clients, &auth, image, &digest, size, dest, &op)
                        .await;
                    if result.is_err() {
                        let _ = tokio::fs::remove_file(dest).await;
                    }
                    result
                },
            )
            .await,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_to_file(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        image: &Reference,
        digest: &str,
        size: u64,
        dest: &Path,
        op: &Op,
    ) -> Result<(), RegistryError> {
        let io_err = |source| RegistryError::Io {
            operation: op.text.clone(),
            path: dest.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::create(dest).await.map_err(io_err)?;
        let mut out = tokio::io::BufWriter::with_capacity(IO_CHUNK, file);
        let transfer = Transfer::start(Direction::Pull, digest, size, &repository_of(image));
        let blob = Blob {
            image,
            digest,
            size,
        };
        self.download(clients, auth, &blob, &mut out, dest, op, Some(&transfer))
            .await?;
        out.flush().await.map_err(io_err)?;
        transfer.finish();
        Ok(())
    }

    /// Downloads a small blob (an image configuration) into memory, checking
    /// its size and digest. A descriptor claiming more than
    /// [`MAX_CONFIG_BYTES`] is refused before anything is read.
    pub async fn fetch_blob_bytes(
        &self,
        image: &Reference,
        descriptor: &Descriptor,
        access: Access,
    ) -> Result<Vec<u8>, RegistryError> {
        let digest = descriptor.digest().to_string();
        let size = descriptor.size();
        if size > MAX_CONFIG_BYTES {
            return Err(RegistryError::TooLarge {
                what: "configuration",
                reference: format!("{}@{digest}", image.whole()),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let clients = self.clients(image, access)?;
        let auth = self.auth_for(image).await?;
        let op = self.op(
            format!("pulling blob {digest} from {image}"),
            image,
            &clients,
            "",
        );
        let blob = Blob {
            image,
            digest: &digest,
            size,
        };
        self.explained(
            &clients,
            with_retries(
                self.inner.options.download_policy(),
                DOWNLOAD_FLAG,
                || async {
                    let mut bytes = Vec::new();
                    self.download(
                        &clients,
                        &auth,
                        &blob,
                        &mut bytes,
                        Path::new("(memory)"),
                        &op,
                        None,
                    )
                    .await?;
                    Ok(bytes)
                },
            )
            .await,
        )
        .await
    }

    /// Streams one blob into `out`, hashing as it goes; never more than
    /// `size` bytes are accepted. A registry may redirect the GET to its
    /// storage on another host; the redirect is followed without the
    /// registry's Authorization header.
    #[allow(clippy::too_many_arguments)]
    async fn download<W: AsyncWrite + Unpin>(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        blob: &Blob<'_>,
        out: &mut W,
        dest: &Path,
        op: &Op,
        progress: Option<&Transfer>,
    ) -> Result<(), RegistryError> {
        let Blob {
            image,
            digest,
            size,
        } = *blob;
        let mut hasher = BlobHasher::for_digest(digest).ok_or_else(|| RegistryError::Protocol {
            operation: op.text.clone(),
            message: format!("unsupported digest algorithm in {digest}"),
        })?;
        let endpoint = &clients.endpoint;
        let url = endpoint.url(image.repository(), &format!("blobs/{digest}"));
        let scopes = [pull_scope(image.repository())];
        let response = endpoint
            .send(auth, &scopes, Method::GET, &url, |request| request)
            .await
            .map_err(|e| self.fail(op, e))?;
        let mut response = expect(response, &[StatusCode::OK])
            .await
            .map_err(|e| self.fail(op, e))?;
        let mut received: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.fail(op, TransportError::Request(e)))?
        {
            received += chunk.len() as u64;
            if received > size {
                return Err(RegistryError::SizeMismatch {
                    what: "blob",
                    reference: image.whole(),
                    digest: digest.to_string(),
                    expected: size,
                    actual: received,
                });
            }
            hasher.update(&chunk);
            if let Some(progress) = progress {
                progress.advance(chunk.len() as u64);
            }
            out.write_all(&chunk)
                .await
                .map_err(|source| RegistryError::Io {
                    operation: op.text.clone(),
                    path: dest.to_path_buf(),
                    source,
                })?;
        }
        if received != size {
            return Err(RegistryError::SizeMismatch {
                what: "blob",
                reference: image.whole(),
                digest: digest.to_string(),
                expected: size,
                actual: received,
            });
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "blob",
                reference: image.whole(),
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(())
    }

    /// Whether `target` already has blob `digest`, or got it by a
    /// cross-repository mount from `mount_from` on the same registry:
    /// then nothing needs uploading, and a blob still only in the registry
    /// need not be downloaded first. Retried `--push-retry` times.
    pub async fn blob_present_or_mounted(
        &self,
        target: &Reference,
        digest: &str,
        mount_from: Option<&Reference>,
    ) -> Result<bool, RegistryError> {
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let op = self.op(
            format!("checking blob {digest} in {}", repository_of(target)),
            target,
            &clients,
            "",
        );
        self.explained(
            &clients,
            with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                self.present_or_mounted(&clients, &auth, target, digest, mount_from, &op)
                    .await
            })
            .await,
        )
        .await
    }

    /// Takes the upload lock of `digest` in `target`'s repository: a
    /// second upload of one blob waits for the first, then finds the blob.
    async fn lock_upload(&self, target: &Reference, digest: &str) -> UploadLock {
        let key = format!(
            "{}/{}@{digest}",
            target.resolve_registry(),
            target.repository()
        );
        let lock = {
            let mut uploads = match self.inner.uploads.lock() {
                Ok(uploads) => uploads,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(uploads.entry(key.clone()).or_default())
        };
        let guard = lock.lock_owned().await;
        UploadLock {
            registry: self.clone(),
            key,
            guard: Some(guard),
        }
    }

    /// A failed blob upload whose blob is in the repository all the same
    /// succeeded: two uploads of one blob at once (two platforms' equal
    /// layers, two builds) can make a registry fail one of them (Docker's
    /// registry 2.8 answers 500 to the loser of the commit) while the other
    /// lands the same bytes under the same digest.
    async fn landed_anyway(
        &self,
        uploaded: Result<(), RegistryError>,
        clients: &Clients,
        auth: &RegistryAuth,
        target: &Reference,
        digest: &str,
        op: &Op,
    ) -> Result<(), RegistryError> {
        let Err(error) = uploaded else {
            return Ok(());
        };
        let server_error = error.status().is_some_and(|status| status >= 500);
        if server_error
            && self
                .blob_exists(clients, auth, target, digest, op)
                .await
                .unwrap_or(false)
        {
            tracing::debug!(
                "{}: {error}; the blob is there (another upload landed it)",
                op.text
            );
            return Ok(());
        }
        Err(error)
    }

    async fn present_or_mounted(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        target: &Reference,
        digest: &str,
        mount_from: Option<&Reference>,
        op: &Op,
    ) -> Result<bool, RegistryError> {
        let repository = repository_of(target);
        if self.blob_exists(clients, auth, target, digest, op).await? {
            tracing::debug!("blob {digest} already in {repository}");
            return Ok(true);
        }
        let mount_source = mount_from.filter(|source| {
            source.resolve_registry() == target.resolve_registry()
                && source.repository() != target.repository()
        });
        let Some(source) = mount_source else {
            return Ok(false);
        };
        let endpoint = &clients.endpoint;
        let mut url = endpoint.url(target.repository(), "blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", source.repository());
        let scopes = [
            push_scope(target.repository()),
            pull_scope(source.repository()),
        ];
        let sent = endpoint
            .send(auth, &scopes, Method::POST, &url, |request| {
                request.header(header::CONTENT_LENGTH, "0")
            })
            .await;
        match sent {
            Ok(response) if response.status() == StatusCode::CREATED => {
                tracing::debug!("mounted blob {digest} from {source} into {repository}");
                Ok(true)
            }
            // A registry that declines answers 202 and opens an upload,
            // which it expires unused; the blob is uploaded anew.
            Ok(response) => {
                tracing::debug!(
                    "mount of {digest} from {source} declined: HTTP {}",
                    response.status()
                );
                Ok(false)
            }
            Err(e) => {
                tracing::debug!("mount of {digest} from {source} declined: {e}");
                Ok(false)
            }
        }
    }

    /// `HEAD` of the blob: 200 is there, 404 is not, anything else fails.
    async fn blob_exists(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        target: &Reference,
        digest: &str,
        op: &Op,
    ) -> Result<bool, RegistryError> {
        let endpoint = &clients.endpoint;
        let url = endpoint.url(target.repository(), &format!("blobs/{digest}"));
        let scopes = [push_scope(target.repository())];
        let response = endpoint
            .send(auth, &scopes, Method::HEAD, &url, |request| request)
            .await
            .map_err(|e| self.fail(op, e))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.fail(op, status_error(response).await)),
        }
    }

    /// Opens an upload session (`POST …/blobs/uploads/`, answered 202):
    /// where to send the blob.
    async fn start_upload(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        target: &Reference,
    ) -> Result<url::Url, TransportError> {
        let endpoint = &clients.endpoint;
        let url = endpoint.url(target.repository(), "blobs/uploads/");
        let scopes = [push_scope(target.repository())];
        let response = endpoint
            .send(auth, &scopes, Method::POST, &url, |request| {
                request.header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        let response = expect(response, &[StatusCode::ACCEPTED]).await?;
        endpoint.location(&response)
    }

    /// Uploads `size` bytes from `body` as blob `digest` in one request
    /// (monolithic: an upload session, then one PUT of the whole blob,
    /// the most widely supported flow).
    async fn upload(
        &self,
        clients: &Clients,
        auth: &RegistryAuth,
        target: &Reference,
        digest: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), TransportError> {
        let mut url = self.start_upload(clients, auth, target).await?;
        url.query_pairs_mut().append_pair("digest", digest);
        let scopes = [push_scope(target.repository())];
        let response = clients
            .endpoint
            .send_once(auth, &scopes, Method::PUT, &url, |request| {
                request
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body)
            })
            .await?;
        expect(response, &[StatusCode::CREATED]).await?;
        Ok(())
    }

    /// Makes the blob `digest` (`size` bytes, stored at `path`) present in
    /// `target`'s repository: nothing to do when the registry has it,
    /// a cross-repository mount from `mount_from` when that is on the same
    /// registry and the registry agrees, else an upload streamed from the
    /// file in one request. Retried `--push-retry` times.
    pub async fn push_blob_from_file(
        &self,
        target: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
        mount_from: Option<&Reference>,
    ) -> Result<(), RegistryError> {
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let repository = repository_of(target);
        let op = self.op(
            format!("pushing blob {digest} to {repository}"),
            target,
            &clients,
            "",
        );
        let io_err = |source| RegistryError::Io {
            operation: op.text.clone(),
            path: path.to_path_buf(),
            source,
        };
        let on_disk = tokio::fs::metadata(path).await.map_err(io_err)?.len();
        if on_disk != size {
            return Err(RegistryError::Protocol {
                operation: op.text.clone(),
                message: format!("{} is {on_disk} bytes, the blob is {size}", path.display()),
            });
        }
        let _uploading = self.lock_upload(target, digest).await;
        self.explained(
            &clients,
            with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                if self
                    .present_or_mounted(&clients, &auth, target, digest, mount_from, &op)
                    .await?
                {
                    return Ok(());
                }
                let file = tokio::fs::File::open(path).await.map_err(io_err)?;
                let transfer = Transfer::start(Direction::Push, digest, size, &repository);
                let bar = transfer.bar();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, IO_CHUNK)
                    .inspect_ok(move |chunk| {
                        if let Some(bar) = &bar {
                            bar.inc(chunk.len() as u64);
                        }
                    });
                let uploaded = self
                    .upload(
                        &clients,
                        &auth,
                        target,
                        digest,
                        size,
                        reqwest::Body::wrap_stream(stream),
                    )
                    .await
                    .map_err(|e| self.fail(&op, e));
                self.landed_anyway(uploaded, &clients, &auth, target, digest, &op)
                    .await?;
                transfer.finish();
                Ok(())
            })
            .await,
        )
        .await
    }

    /// Makes a small blob held in memory (a config, a signature payload, an
    /// attached document) present in `target`'s repository and returns its
    /// digest. Retried `--push-retry` times.
    pub async fn push_blob_bytes(
        &self,
        target: &Reference,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let repository = repository_of(target);
        let op = self.op(
            format!("pushing blob {digest} to {repository}"),
            target,
            &clients,
            "",
        );
        let body = bytes::Bytes::copy_from_slice(bytes);
        let _uploading = self.lock_upload(target, &digest).await;
        self.explained(
            &clients,
            with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                if self
                    .present_or_mounted(&clients, &auth, target, &digest, None, &op)
                    .await?
                {
                    return Ok(());
                }
                let uploaded = self
                    .upload(
                        &clients,
                        &auth,
                        target,
                        &digest,
                        body.len() as u64,
                        reqwest::Body::from(body.clone()),
                    )
                    .await
                    .map_err(|e| self.fail(&op, e));
                self.landed_anyway(uploaded, &clients, &auth, target, &digest, &op)
                    .await
            })
            .await,
        )
        .await?;
        Ok(digest)
    }

    /// Pushes manifest (or index) bytes exactly as given and returns their
    /// digest, `sha256:…`. Retried `--push-retry` times.
    pub async fn push_manifest_raw(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        Ok(self.put_manifest(target, bytes, media_type).await?.digest)
    }

    /// [`Registry::push_manifest_raw`] of a manifest with a `subject`, and
    /// whether the registry says it indexed it for the referrers API (its
    /// `OCI-Subject` answer, OCI distribution 1.1).
    pub async fn push_referrer_manifest(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<PushedManifest, RegistryError> {
        self.put_manifest(target, bytes, media_type).await
    }

    async fn put_manifest(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<PushedManifest, RegistryError> {
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let op = self.op(
            format!("pushing manifest to {target}"),
            target,
            &clients,
            "",
        );
        let content_type =
            header::HeaderValue::from_str(media_type).map_err(|_| RegistryError::Protocol {
                operation: op.text.clone(),
                message: format!("invalid media type {media_type:?}"),
            })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        let endpoint = &clients.endpoint;
        let url = manifest_url(endpoint, target);
        let scopes = [push_scope(target.repository())];
        let subject_indexed = self
            .explained(
                &clients,
                with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                    let response = endpoint
                        .send(&auth, &scopes, Method::PUT, &url, |request| {
                            request
                                .header(header::CONTENT_TYPE, content_type.clone())
                                .body(body.clone())
                        })
                        .await
                        .map_err(|e| self.fail(&op, e))?;
                    let response = expect(response, &[StatusCode::CREATED])
                        .await
                        .map_err(|e| self.fail(&op, e))?;
                    Ok(response.headers().contains_key("OCI-Subject"))
                })
                .await,
            )
            .await?;
        Ok(PushedManifest {
            digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
            subject_indexed,
        })
    }

    /// The referrers of `subject` (a manifest digest) in `repository`'s
    /// repository, as the registry's referrers API lists them (an OCI image
    /// index), or `None` when the registry has no such API (it answers 404,
    /// OCI distribution 1.1's signal to use the tag schema instead).
    pub async fn fetch_referrers(
        &self,
        repository: &Reference,
        subject: &str,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let clients = self.clients(repository, Access::Pull)?;
        let auth = self.auth_for(repository).await?;
        let op = self.op(
            format!("listing the referrers of {subject} in {repository}"),
            repository,
            &clients,
            "",
        );
        let endpoint = &clients.endpoint;
        let url = endpoint.url(repository.repository(), &format!("referrers/{subject}"));
        let scopes = [pull_scope(repository.repository())];
        self.explained(
            &clients,
            with_retries(
                self.inner.options.download_policy(),
                DOWNLOAD_FLAG,
                || async {
                    let response = endpoint
                        .send(&auth, &scopes, Method::GET, &url, |request| {
                            request.header(header::ACCEPT, crate::image::media::OCI_INDEX)
                        })
                        .await
                        .map_err(|e| self.fail(&op, e))?;
                    if response.status() == StatusCode::NOT_FOUND {
                        return Ok(None);
                    }
                    let mut response = expect(response, &[StatusCode::OK])
                        .await
                        .map_err(|e| self.fail(&op, e))?;
                    let mut body = Vec::new();
                    while let Some(chunk) = response
                        .chunk()
                        .await
                        .map_err(|e| self.fail(&op, TransportError::Request(e)))?
                    {
                        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                            return Err(RegistryError::TooLarge {
                                what: "referrers index",
                                reference: repository.whole(),
                                limit: MAX_MANIFEST_BYTES as u64,
                            });
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(Some(body))
                },
            )
            .await,
        )
        .await
    }

    /// Checks that `target` accepts pushes with the configured credentials
    /// by opening an upload session and cancelling it (`--dry-run`, and a
    /// fast failure before a long build).
    pub async fn check_push_access(&self, target: &Reference) -> Result<(), RegistryError> {
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let op = self.op(
            format!("checking push access to {}", repository_of(target)),
            target,
            &clients,
            "",
        );
        let scopes = [push_scope(target.repository())];
        self.explained(
            &clients,
            with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                let location = self
                    .start_upload(&clients, &auth, target)
                    .await
                    .map_err(|e| self.fail(&op, e))?;
                // Cancelling is a courtesy: registries expire abandoned
                // sessions. Only the registry's own sessions are cancelled.
                if clients.endpoint.is_own(&location) {
                    let _ = clients
                        .endpoint
                        .send(&auth, &scopes, Method::DELETE, &location, |r| r)
                        .await;
                }
                Ok(())
            })
            .await,
        )
        .await
    }

    /// Whether `target`'s repository accepts an OCI image manifest: the
    /// question a registry without OCI support answers only at the end of
    /// a build. Pushes a two-byte image config (`{}`) and an OCI manifest
    /// with no layers that references it, by digest (no tag is created or
    /// moved), then asks the registry to delete that manifest.
    ///
    /// Limits: a registry that refuses deletes keeps the untagged probe
    /// manifest and the config blob until its garbage collection (they are
    /// the same bytes on every run and every repository); a registry that
    /// accepts OCI manifests but refuses an OCI index, zstd layers or
    /// annotations is not detected; a registry that only refuses by tag
    /// (a policy on tag names) answers yes here.
    pub async fn check_oci_support(&self, target: &Reference) -> Result<(), RegistryError> {
        let clients = self.clients(target, Access::Push)?;
        let auth = self.auth_for(target).await?;
        let config_digest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(OCI_PROBE_CONFIG))
        );
        let op = self.op(
            format!("pushing blob {config_digest} to {}", repository_of(target)),
            target,
            &clients,
            "",
        );
        self.explained(
            &clients,
            with_retries(self.inner.options.push_policy(), PUSH_FLAG, || async {
                if !self
                    .blob_exists(&clients, &auth, target, &config_digest, &op)
                    .await?
                {
                    self.upload(
                        &clients,
                        &auth,
                        target,
                        &config_digest,
                        OCI_PROBE_CONFIG.len() as u64,
                        reqwest::Body::from(OCI_PROBE_CONFIG),
                    )
                    .await
                    .map_err(|e| self.fail(&op, e))?;
                }
                Ok(())
            })
            .await,
        )
        .await?;
        let manifest = oci_probe_manifest(&config_digest);
        let manifest_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        let probe = target.clone_with_digest(manifest_digest.clone());
        self.push_manifest_raw(&probe, &manifest, crate::image::media::OCI_MANIFEST)
            .await?;
        // Best effort: registries may refuse deletes (405), which leaves an
        // untagged manifest nobody can list by tag.
        let url = clients
            .endpoint
            .url(target.repository(), &format!("manifests/{manifest_digest}"));
        let scopes = [push_scope(target.repository())];
        if let Ok(response) = clients
            .endpoint
            .send(&auth, &scopes, Method::DELETE, &url, |r| r)
            .await
        {
            tracing::debug!("deleting the OCI probe manifest: {}", response.status());
        }
        Ok(())
    }

    /// A failed connection to a TLS registry that does not say why (under
    /// TLS 1.3 a refused client certificate often reads as a closed
    /// connection): asks the registry whether it wants a client
    /// certificate, and when it does, says so instead.
    async fn explained<T>(
        &self,
        clients: &Clients,
        result: Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let Err(mut error) = result else {
            return result;
        };
        if clients.plain_http || clients.client_certificate {
            return Err(error);
        }
        let connection = match &mut error {
            RegistryError::RetriesExhausted { last, .. } => last.as_mut(),
            other => other,
        };
        let RegistryError::Connection {
            message,
            hint,
            transient,
            ..
        } = connection
        else {
            return Err(error);
        };
        if is_certificate_failure(message) {
            return Err(error);
        }
        let registry = clients.registry.clone();
        let asked = tokio::task::spawn_blocking(move || asks_for_client_certificate(&registry))
            .await
            .ok()
            .flatten();
        if asked == Some(true) {
            *hint = asks_for_client_certificate_hint(&clients.registry);
            *transient = false;
        }
        Err(error)
    }

    fn op(
        &self,
        text: String,
        reference: &Reference,
        clients: &Clients,
        not_found_hint: &'static str,
    ) -> Op {
        Op {
            text,
            registry: reference.resolve_registry().to_string(),
            plain_http: clients.plain_http,
            client_certificate: clients.client_certificate,
            not_found_hint,
        }
    }

    /// Turns a transport failure into kiln's error, with the advice that
    /// fits.
    fn fail(&self, op: &Op, err: TransportError) -> RegistryError {
        match classify(&err) {
            Failure::Status { status, detail } => {
                let hint = match status {
                    401 | 403 => self.inner.credentials.hint_for_denied(&op.registry),
                    404 => op.not_found_hint.to_string(),
                    _ => String::new(),
                };
                RegistryError::Status {
                    operation: op.text.clone(),
                    status,
                    detail,
                    hint,
                }
            }
            Failure::Connection { message, transient } => RegistryError::Connection {
                operation: op.text.clone(),
                registry: op.registry.clone(),
                hint: connection_hint(&op.registry, op.plain_http, &message, op.client_certificate),
                message,
                transient,
            },
            Failure::Protocol { message } => RegistryError::Protocol {
                operation: op.text.clone(),
                message,
            },
        }
    }

    async fn auth_for(&self, reference: &Reference) -> Result<RegistryAuth, RegistryError> {
        let credentials = Arc::clone(&self.inner.credentials);
        let registry = reference.resolve_registry().to_string();
        let lookup_registry = registry.clone();
        // Credential helpers are processes, possibly slow ones.
        tokio::task::spawn_blocking(move || credentials.lookup(&lookup_registry))
            .await
            .map_err(|e| RegistryError::Credentials {
                registry,
                source_description: self.inner.credentials.source_description(),
                message: format!("the credential lookup failed: {e}"),
            })?
    }

    fn clients(&self, reference: &Reference, access: Access) -> Result<Clients, RegistryError> {
        let registry = reference.resolve_registry().to_string();
        let key = (registry.clone(), access);
        if let Ok(clients) = self.inner.clients.lock()
            && let Some(found) = clients.get(&key)
        {
            return Ok(found.clone());
        }
        let built = self.build_clients(&registry, access)?;
        if let Ok(mut clients) = self.inner.clients.lock() {
            // Two tasks may race to build; keep the first so all share its tokens.
            return Ok(clients.entry(key).or_insert(built).clone());
        }
        Ok(built)
    }

    fn build_clients(&self, registry: &str, access: Access) -> Result<Clients, RegistryError> {
        let transport = self.inner.options.transport(registry, access);
        let client_error = |message: String| RegistryError::Client {
            registry: registry.to_string(),
            message,
        };
        let http = self.http_client(&transport.tls).map_err(client_error)?;
        let endpoint = Endpoint::new(registry, transport.plain_http, http)
            .map_err(|e| client_error(format!("{registry} is not a host[:port]: {e}")))?;
        Ok(Clients {
            endpoint: Arc::new(endpoint),
            registry: registry.to_string(),
            plain_http: transport.plain_http,
            client_certificate: transport
                .tls
                .client_certificate
                .as_ref()
                .is_some_and(|c| self.inner.identities.contains_key(c)),
        })
    }

    /// The HTTP client for `settings`, built on first use.
    fn http_client(&self, settings: &Tls) -> Result<reqwest::Client, String> {
        if let Ok(clients) = self.inner.http.lock()
            && let Some(found) = clients.get(settings)
        {
            return Ok(found.clone());
        }
        let mut extra_roots = Vec::new();
        for pem in settings
            .ca_certificates
            .iter()
            .filter_map(|path| self.inner.certificates.get(path))
        {
            extra_roots.extend(
                reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("invalid CA certificate: {e}"))?,
            );
        }
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(settings.accept_invalid_certs)
            .tls_certs_merge(extra_roots)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .user_agent(USER_AGENT);
        if let Some(identity) = settings
            .client_certificate
            .as_ref()
            .and_then(|c| self.inner.identities.get(c))
        {
            builder = builder.identity(identity.clone());
        }
        let built = builder.build().map_err(|e| error_chain(&e))?;
        if let Ok(mut clients) = self.inner.http.lock() {
            return Ok(clients.entry(settings.clone()).or_insert(built).clone());
        }
        Ok(built)
    }
}

/// A blob to fetch: where, which, how large.
#[derive(Clone, Copy)]
struct Blob<'a> {
    image: &'a Reference,
    digest: &'a str,
    size: u64,
}

/// Reads a `--registry-client-cert`'s files and checks that they are a
/// certificate and the private key that belongs to it, so that a wrong
/// pair is refused before a build starts rather than at its first push.
fn load_identity(certificate: &ClientCertificate) -> Result<reqwest::Identity, RegistryError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| RegistryError::ClientCertificateFile {
            registry: certificate.registry.clone(),
            cert: certificate.cert.clone(),
            key: certificate.key.clone(),
            path: path.to_path_buf(),
            source,
        })
    };
    let invalid = |message: String| RegistryError::ClientIdentity {
        registry: certificate.registry.clone(),
        cert: certificate.cert.clone(),
        key: certificate.key.clone(),
        message,
    };
    let cert = read(&certificate.cert)?;
    let key = read(&certificate.key)?;
    if !contains(&cert, b"-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!(
            "{} holds no PEM certificate",
            certificate.cert.display()
        )));
    }
    if !contains(&key, b"PRIVATE KEY-----") {
        return Err(invalid(format!(
            "{} holds no PEM private key",
            certificate.key.display()
        )));
    }
    let mut pem = cert;
    pem.push(b'\n');
    pem.extend_from_slice(&key);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| invalid(error_chain(&e)))?;
    // rustls checks that the key is the certificate's when a client is
    // built with them.
    reqwest::Client::builder()
        .identity(identity.clone())
        .build()
        .map_err(|e| invalid(error_chain(&e)))?;
    Ok(identity)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The config of [`Registry::check_oci_support`]'s probe image: the
/// smallest JSON object, under the OCI image config media type (some
/// registries refuse manifests whose config has another type).
const OCI_PROBE_CONFIG: &[u8] = b"{}";

/// The probe's manifest: OCI, no layers, `config_digest` as its config.
fn oci_probe_manifest(config_digest: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        crate::image::media::OCI_MANIFEST,
        crate::image::media::OCI_CONFIG,
        OCI_PROBE_CONFIG.len()
    )
    .into_bytes()
}

/// Where `reference`'s manifest is: by digest when it has one, else by tag
/// (`latest` when it names neither).
fn manifest_url(endpoint: &Endpoint, reference: &Reference) -> url::Url {
    let name = reference.digest().or(reference.tag()).unwrap_or("latest");
    endpoint.url(reference.repository(), &format!("manifests/{name}"))
}

/// The advice for a registry that wants a client certificate and got none.
fn asks_for_client_certificate_hint(registry: &str) -> String {
    format!(
        "; {registry} asks for a TLS client certificate: pass --registry-client-cert={registry}=/path/to/client.crt,/path/to/client.key"
    )
}

/// What to try after a failed connection. `message` is the failure,
/// `client_certificate` whether one was presented.
fn connection_hint(
    registry: &str,
    plain_http: bool,
    message: &str,
    client_certificate: bool,
) -> String {
    if plain_http {
        format!("; check that a registry listens at http://{registry}")
    } else if is_client_certificate_refusal(message) {
        if client_certificate {
            format!(
                "; {registry} refused the client certificate of --registry-client-cert={registry}=…: check that it is signed by a CA {registry} trusts and has not expired"
            )
        } else {
            asks_for_client_certificate_hint(registry)
        }
    } else {
        format!(
            "; if {registry} serves plain HTTP pass --insecure-registry={registry}, for a self-signed certificate --registry-certificate={registry}=/path/to/ca.pem or --skip-tls-verify-registry={registry}"
        )
    }
}

/// Hashes a blob with the algorithm its digest names.
enum BlobHasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl BlobHasher {
    fn for_digest(digest: &str) -> Option<BlobHasher> {
        match digest.split_once(':')?.0 {
            "sha256" => Some(BlobHasher::Sha256(sha2::Sha256::new())),
            "sha512" => Some(BlobHasher::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            BlobHasher::Sha256(h) => h.update(bytes),
            BlobHasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            BlobHasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            BlobHasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_with_the_digest_algorithm() {
        let table = [
            (
                "sha256:x",
                Some("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            ),
            (
                "sha512:x",
                Some(
                    "sha512:9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043",
                ),
            ),
            ("md5:x", None),
            ("nocolon", None),
        ];
        for (digest, want) in table {
            let got = BlobHasher::for_digest(digest).map(|mut h| {
                h.update(b"hel");
                h.update(b"lo");
                h.finish()
            });
            assert_eq!(got.as_deref(), want, "{digest}");
        }
    }

    #[test]
    fn registries_with_the_same_tls_settings_share_one_http_client() {
        let registry = Registry::new(RegistryOptions {
            skip_tls_verify_pull: true,
            ..RegistryOptions::default()
        })
        .unwrap();
        let http_clients = || registry.inner.http.lock().unwrap().len();
        let a: Reference = "a.example/app:1".parse().unwrap();
        let b: Reference = "b.example/app:1".parse().unwrap();
        registry.clients(&a, Access::Push).unwrap();
        registry.clients(&b, Access::Push).unwrap();
        registry.clients(&a, Access::Push).unwrap();
        assert_eq!(http_clients(), 1, "two registries, one TLS setting");
        // Pulls skip verification here: a different setting, a client of its own.
        registry.clients(&a, Access::Pull).unwrap();
        registry.clients(&b, Access::Pull).unwrap();
        assert_eq!(http_clients(), 2);
        assert_eq!(registry.inner.clients.lock().unwrap().len(), 4);
    }

    #[test]
    fn parses_references_canonically() {
        let table = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
            (" ghcr.io/org/app ", "ghcr.io/org/app:latest"),
        ];
        for (input, want) in table {
            assert_eq!(parse_reference(input).unwrap().whole(), want);
        }
        assert_eq!(
            parse_reference("app:1:2").unwrap_err().to_string(),
            "invalid image reference \"app:1:2\": invalid reference format"
        );
    }

    #[test]
    fn connection_hints_name_the_flags() {
        assert_eq!(
            connection_hint("127.0.0.1:5000", true, "connection refused", false),
            "; check that a registry listens at http://127.0.0.1:5000"
        );
        assert_eq!(
            connection_hint("reg.example", false, "connection refused", false),
            "; if reg.example serves plain HTTP pass --insecure-registry=reg.example, for a self-signed certificate --registry-certificate=reg.example=/path/to/ca.pem or --skip-tls-verify-registry=reg.example"
        );
        let table = [
            (
                "connection error: received fatal alert: BadCertificate",
                false,
                "; reg.example asks for a TLS client certificate: pass --registry-client-cert=reg.example=/path/to/client.crt,/path/to/client.key",
            ),
            (
                "connection closed",
                false,
                "; if reg.example serves plain HTTP pass --insecure-registry=reg.example, for a self-signed certificate --registry-certificate=reg.example=/path/to/ca.pem or --skip-tls-verify-registry=reg.example",
            ),
            (
                "connection error: received fatal alert: CertificateRequired",
                true,
                "; reg.example refused the client certificate of --registry-client-cert=reg.example=…: check that it is signed by a CA reg.example trusts and has not expired",
            ),
        ];
        for (message, presented, want) in table {
            assert_eq!(
                connection_hint("reg.example", false, message, presented),
                want,
                "{message}"
            );
        }
    }

    fn assert_send<T: Send>(_: &T) {}

    /// Builds run platforms on spawned tasks: every future must be `Send`.
    #[test]
    fn futures_are_send() {
        let registry = Registry::new(RegistryOptions::default()).unwrap();
        let reference: Reference = "127.0.0.1:1/app:1".parse().unwrap();
        let platform = Platform::host();
        let descriptor: Descriptor = serde_json::from_str(
            r#"{"mediaType":"application/octet-stream","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":0}"#,
        )
        .unwrap();
        let path = Path::new("/nonexistent");
        assert_send(&registry.pull_image("app", &platform));
        assert_send(&registry.fetch_manifest_raw(&reference, Access::Pull));
        assert_send(&registry.fetch_blob_to_file(&reference, &descriptor, path, Access::Pull));
        assert_send(&registry.fetch_blob_bytes(&reference, &descriptor, Access::Push));
        assert_send(&registry.push_blob_from_file(&reference, "sha256:0", 0, path, None));
        assert_send(&registry.push_manifest_raw(&reference, b"{}", "application/json"));
        assert_send(&registry.check_push_access(&reference));
        fn assert_sync<T: Send + Sync + Clone>(_: &T) {}
        assert_sync(&registry);
    }

    #[test]
    fn unreadable_registry_certificates_fail_at_start() {
        let err = Registry::new(RegistryOptions {
            registry_certificates: vec![(
                "reg.example".to_string(),
                PathBuf::from("/nonexistent/kiln-ca.pem"),
            )],
            ..RegistryOptions::default()
        })
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "reading the CA certificate /nonexistent/kiln-ca.pem for registry reg.example: No such file or directory (os error 2)"
        );
    }
}
