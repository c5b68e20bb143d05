//! Signatures in cosign's format, made with a cosign key pair
//! (`cosign generate-key-pair`), so `cosign verify --key cosign.pub` and
//! `cosign verify-attestation --key cosign.pub` accept what kiln pushes.
//!
//! - The **private key file** is cosign's: a PEM block (`ENCRYPTED SIGSTORE
//!   PRIVATE KEY`, or `ENCRYPTED COSIGN PRIVATE KEY` from older cosign)
//!   holding JSON: scrypt parameters and salt, a NaCl secretbox nonce, and
//!   the sealed PKCS#8 key. The password comes from `COSIGN_PASSWORD`, as
//!   with cosign. ECDSA P-256 keys (cosign's default).
//! - An **image signature** is a "simple signing" payload naming the
//!   repository and the manifest digest, signed (ECDSA, SHA-256, DER),
//!   stored as a layer of the image tagged `sha256-<hex>.sig` next to the
//!   signed manifest, its signature in the layer's
//!   `dev.cosignproject.cosign/signature` annotation.
//! - A **signed attestation** is a DSSE envelope around an in-toto
//!   statement, stored as a layer of the image tagged `sha256-<hex>.att`.
//!
//! Each push reads the `.sig`/`.att` image already there and adds its layer,
//! so signatures by other keys (or of earlier builds) are kept. Keyless
//! signing (Fulcio, Rekor) needs the internet; a [`Signer`] is where another
//! kind of key would plug in.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::image::media::{OCI_CONFIG, OCI_MANIFEST};
use crate::image::sha256_digest;
use crate::registry::{Access, Registry, RegistryError, parse_reference};

/// A key file larger than this is not a cosign key.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// scrypt's cost is bounded: cosign uses N=2^15, r=8, p=1 (32 MiB); a file
/// asking for far more would take the machine's memory (128·r·N bytes),
/// not protect a key. These allow up to 256 MiB.
pub const MAX_LOG_N: u8 = 18;
pub const MAX_R: u32 = 8;
pub const MAX_P: u32 = 4;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of a DSSE envelope layer.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The annotation holding a layer's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading the signing key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {path} is not a cosign private key: {reason}")]
    NotCosignKey { path: String, reason: String },
    #[error("the signing key {path} cannot be opened with this password: {advice}")]
    WrongPassword { path: String, advice: &'static str },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the {what} in {repository} is not an image kiln can add a signature to: {reason}")]
    BadSignatureImage {
        what: &'static str,
        repository: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct ScryptParams {
    n: u64,
    #[serde(rename = "r")]
    r: u32,
    #[serde(rename = "p")]
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// A loaded signing key.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// Opens the cosign private key at `path` with `password`.
    pub fn load(path: &Path, password: &[u8]) -> Result<Signer, SignError> {
        let shown = path.display().to_string();
        let read = |source| SignError::Read {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        let not_key = |reason: String| SignError::NotCosignKey {
            path: shown.clone(),
            reason,
        };
        if size > MAX_KEY_FILE {
            return Err(not_key(format!("{size} bytes, more than a key file holds")));
        }
        let text = std::fs::read(path).map_err(read)?;
        Signer::from_pem(&text, password).map_err(|error| match error {
            KeyError::Format(reason) => not_key(reason),
            KeyError::Password => SignError::WrongPassword {
                path: shown.clone(),
                advice: "set COSIGN_PASSWORD to the key's password",
            },
        })
    }

    /// Opens a cosign private key held in a Secret (`cosign.key`, with its
    /// `cosign.password`); `secret` names it in errors.
    pub fn from_secret(key: &[u8], password: &[u8], secret: &str) -> Result<Signer, SignError> {
        let what = format!("in Secret {secret}");
        if key.len() as u64 > MAX_KEY_FILE {
            return Err(SignError::NotCosignKey {
                path: what,
                reason: format!("{} bytes, more than a key file holds", key.len()),
            });
        }
        Signer::from_pem(key, password).map_err(|error| match error {
            KeyError::Format(reason) => SignError::NotCosignKey { path: what, reason },
            KeyError::Password => SignError::WrongPassword {
                path: what,
                advice: "its cosign.password does not open its cosign.key",
            },
        })
    }

    fn from_pem(text: &[u8], password: &[u8]) -> Result<Signer, KeyError> {
        let sealed = SealedKey::parse(text).map_err(KeyError::Format)?;
        let params = scrypt::Params::new(sealed.log_n, sealed.r, sealed.p)
            .map_err(|e| KeyError::Format(format!("scrypt parameters: {e}")))?;
        let mut secret = [0u8; 32];
        scrypt::scrypt(password, &sealed.salt, &params, &mut secret)
            .map_err(|e| KeyError::Format(format!("scrypt: {e}")))?;
        let cipher = XSalsa20Poly1305::new(&secret.into());
        let pkcs8 = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map_err(|_| KeyError::Password)?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|e| KeyError::Format(format!("not an ECDSA P-256 key ({e})")))?;
        Ok(Signer { key, rng })
    }

    /// The ECDSA signature (ASN.1 DER) of `message` (hashed with SHA-256).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(&self.rng, message)
            .map(|signature| signature.as_ref().to_vec())
            .unwrap_or_default()
    }
}

enum KeyError {
    Format(String),
    Password,
}

/// A cosign private key file as read, still sealed: what the password
/// opens. Parsing is bounded (scrypt's cost above all) before any key
/// derivation runs.
#[derive(Debug)]
pub struct SealedKey {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
    pub salt: Vec<u8>,
    /// 24 bytes, NaCl secretbox's nonce.
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl SealedKey {
    /// Reads the PEM block and its JSON; says what is wrong otherwise.
    pub fn parse(text: &[u8]) -> Result<SealedKey, String> {
        let block = pem::parse(text).map_err(|e| format!("no PEM block in it ({e:?})"))?;
        if !matches!(
            block.tag(),
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY"
        ) {
            return Err(format!(
                "a PEM block {:?}, not ENCRYPTED SIGSTORE PRIVATE KEY",
                block.tag()
            ));
        }
        let sealed: EncryptedKey =
            serde_json::from_slice(block.contents()).map_err(|e| format!("its JSON: {e}"))?;
        if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
            return Err(format!(
                "key derivation {} and cipher {}, not scrypt and nacl/secretbox",
                sealed.kdf.name, sealed.cipher.name
            ));
        }
        let ScryptParams { n, r, p } = sealed.kdf.params;
        let log_n = if n.is_power_of_two() {
            n.trailing_zeros()
        } else {
            u32::MAX
        };
        let log_n = u8::try_from(log_n)
            .ok()
            .filter(|&log_n| {
                (1..=MAX_LOG_N).contains(&log_n)
                    && (1..=MAX_R).contains(&r)
                    && (1..=MAX_P).contains(&p)
            })
            .ok_or_else(|| format!("scrypt N={n} r={r} p={p} is out of bounds"))?;
        // Checked here, used when the key is opened.
        scrypt::Params::new(log_n, r, p).map_err(|e| format!("scrypt parameters: {e}"))?;
        let decode =
            |what: &str, value: &str| BASE64.decode(value).map_err(|e| format!("its {what}: {e}"));
        let salt = decode("salt", &sealed.kdf.salt)?;
        let nonce = decode("nonce", &sealed.cipher.nonce)?;
        let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
        if nonce.len() != 24 {
            return Err(format!("a {}-byte nonce, not 24", nonce.len()));
        }
        Ok(SealedKey {
            log_n,
            r,
            p,
            salt,
            nonce,
            ciphertext,
        })
    }
}

/// cosign's simple-signing payload for `digest` in `repository`.
pub fn simple_signing_payload(repository: &str, digest: &str) -> Vec<u8> {
    let payload = json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// DSSE's pre-authentication encoding: what an envelope's signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    encoded.extend_from_slice(payload);
    encoded
}

/// A DSSE envelope of `payload`, signed by `signer`.
pub fn dsse_envelope(signer: &Signer, payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let signature = signer.sign(&pae(payload_type, payload));
    let envelope = json!({
        "payloadType": payload_type,
        "payload": BASE64.encode(payload),
        "signatures": [{ "keyid": "", "sig": BASE64.encode(signature) }],
    });
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Where cosign looks for what is attached to `digest` by tag:
/// `sha256-<hex>.sig` or `.att`.
pub fn cosign_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// Signs the manifest `digest` of `repository` and pushes the signature
/// where cosign finds it.
pub async fn push_signature(
    registry: &Registry,
    signer: &Signer,
    repository: &str,
    digest: &str,
) -> Result<String, SignError> {
    let payload = simple_signing_payload(repository, digest);
    let signature = BASE64.encode(signer.sign(&payload));
    let layer = json!({
        "mediaType": SIMPLE_SIGNING,
        "annotations": { SIGNATURE_ANNOTATION: signature },
    });
    add_layer(
        registry,
        repository,
        &cosign_tag(digest, "sig"),
        payload,
        layer,
    )
    .await
}

/// Pushes `statement` (in-toto JSON with `predicate_type`) about `digest`
/// of `repository` as a signed attestation where cosign finds it.
pub async fn push_attestation(
    registry: &Registry,
    signer: &Signer,
    repository: &str,
    digest: &str,
    statement: &[u8],
    predicate_type: &str,
) -> Result<String, SignError> {
    let envelope = dsse_envelope(signer, "application/vnd.in-toto+json", statement);
    let layer = json!({
        "mediaType": DSSE_ENVELOPE,
        "annotations": { SIGNATURE_ANNOTATION: "", "predicateType": predicate_type },
    });
    add_layer(
        registry,
        repository,
        &cosign_tag(digest, "att"),
        envelope,
        layer,
    )
    .await
}

/// Adds a layer holding `content` (described by `layer`: media type and
/// annotations) to the image at `repository:tag`, creating it when absent,
/// and pushes it back; returns `repository@digest` of the new manifest.
async fn add_layer(
    registry: &Registry,
    repository: &str,
    tag: &str,
    content: Vec<u8>,
    mut layer: Value,
) -> Result<String, SignError> {
    let tagged = parse_reference(&format!("{repository}:{tag}"))?;
    let bad = |what: &'static str, reason: String| SignError::BadSignatureImage {
        what,
        repository: repository.to_string(),
        reason,
    };
    let content_digest = sha256_digest(&content);
    layer["digest"] = content_digest.clone().into();
    layer["size"] = content.len().into();

    let (mut layers, mut diff_ids) = match registry.fetch_manifest_raw(&tagged, Access::Push).await
    {
        Ok((bytes, _, _)) => {
            let manifest: Value =
                serde_json::from_slice(&bytes).map_err(|e| bad("manifest", e.to_string()))?;
            let layers = manifest["layers"]
                .as_array()
                .cloned()
                .ok_or_else(|| bad("manifest", "it has no layers".to_string()))?;
            let diff_ids = layers
                .iter()
                .map(|l| l["digest"].clone())
                .collect::<Vec<Value>>();
            (layers, diff_ids)
        }
        Err(error) if error.is_not_found() => (Vec::new(), Vec::new()),
        Err(error) => return Err(error.into()),
    };
    // The same signature again (an unchanged rebuild) is not added twice.
    if layers.iter().any(|l| l == &layer) {
        return Ok(format!("{repository}:{tag}"));
    }
    layers.push(layer);
    diff_ids.push(content_digest.clone().into());
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap_or_default();
    let target = parse_reference(repository)?;
    for bytes in [&content, &config] {
        registry.push_blob_bytes(&target, bytes).await?;
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .unwrap_or_default();
    let digest = registry
        .push_manifest_raw(&tagged, &manifest, OCI_MANIFEST)
        .await?;
    Ok(format!("{repository}@{digest}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn the_payload_names_repository_and_digest() {
        let payload: Value =
            serde_json::from_slice(&simple_signing_payload("r.example/app", "sha256:ab")).unwrap();
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            "r.example/app"
        );
        assert_eq!(
            payload["critical"]["image"]["docker-manifest-digest"],
            "sha256:ab"
        );
        assert_eq!(
            payload["critical"]["type"],
            "cosign container image signature"
        );
    }

    #[test]
    fn cosign_tags_follow_the_digest() {
        assert_eq!(cosign_tag("sha256:ab", "sig"), "sha256-ab.sig");
    }

    #[test]
    fn files_that_are_not_keys_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty", b"", "no PEM block"),
            (
                "label",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "not ENCRYPTED SIGSTORE PRIVATE KEY",
            ),
            (
                "json",
                b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                "its JSON",
            ),
            (
                "scrypt",
                b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo0Mjk0OTY3Mjk2LCJyIjo4LCJwIjoxfSwic2FsdCI6IkFBQUEifSwiY2lwaGVyIjp7Im5hbWUiOiJuYWNsL3NlY3JldGJveCIsIm5vbmNlIjoiQUFBQSJ9LCJjaXBoZXJ0ZXh0IjoiQUFBQSJ9\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                "out of bounds",
            ),
        ];
        for (name, content, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let error = Signer::load(&path, b"").unwrap_err().to_string();
            assert!(error.contains(want), "{name}: {error}");
        }
        let missing = Signer::load(&dir.path().join("absent"), b"").unwrap_err();
        assert!(
            missing.to_string().starts_with("reading the signing key"),
            "{missing}"
        );
    }
}
