//! Media types of the two manifest families kiln writes (OCI and Docker v2
//! schema 2), the choice between them (`--oci-mode`), layer compression
//! (`--compression`), and the conversion of a base image's layer
//! descriptors from one family to the other.

use std::fmt;
use std::str::FromStr;

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Not in the Docker schema 2 text, but containerd and the registries know it.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// The wording names both ways out, as the seed guides' messages do.
    #[error("zstd compression needs OCI media types; use --oci-mode=oci or --compression=gzip")]
    ZstdNeedsOci,
    #[error(
        "layer {digest} is zstd-compressed ({media_type}) and cannot be described by a Docker manifest; use --oci-mode=oci"
    )]
    ZstdLayerToDocker { digest: String, media_type: String },
    #[error("layer {digest} has media type {media_type}, which is not an image layer kiln knows")]
    UnknownLayer { digest: String, media_type: String },
    #[error("invalid --oci-mode value {0:?} (expected oci, docker or auto)")]
    InvalidOciMode(String),
    #[error("invalid --compression value {0:?} (expected gzip, zstd or none)")]
    InvalidCompression(String),
}

/// `--oci-mode`: which family of media types to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum OciMode {
    Oci,
    Docker,
    /// OCI, falling back to Docker where a registry rejects OCI manifests.
    #[default]
    Auto,
}

/// The family a concrete manifest is written in; `OciMode::Auto` resolves
/// to one of these per push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestFormat {
    Oci,
    Docker,
}

/// `--compression`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    /// Uncompressed layers: not offered by `--compression`, used for the
    /// blobs of other tools' images.
    None,
}

impl OciMode {
    /// The format tried first: `auto` starts with OCI.
    pub fn initial_format(self) -> ManifestFormat {
        match self {
            OciMode::Docker => ManifestFormat::Docker,
            OciMode::Oci | OciMode::Auto => ManifestFormat::Oci,
        }
    }

    /// Refuses flag combinations that can never produce a valid image.
    /// `auto` with zstd passes: it only fails if a registry later refuses
    /// OCI, and then the fallback reports it.
    pub fn check_compression(self, compression: Compression) -> Result<(), MediaError> {
        match (self, compression) {
            (OciMode::Docker, Compression::Zstd) => Err(MediaError::ZstdNeedsOci),
            _ => Ok(()),
        }
    }
}

impl FromStr for OciMode {
    type Err = MediaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oci" => Ok(OciMode::Oci),
            "docker" => Ok(OciMode::Docker),
            "auto" => Ok(OciMode::Auto),
            other => Err(MediaError::InvalidOciMode(other.to_string())),
        }
    }
}

impl fmt::Display for OciMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OciMode::Oci => "oci",
            OciMode::Docker => "docker",
            OciMode::Auto => "auto",
        })
    }
}

impl FromStr for Compression {
    type Err = MediaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "uncompressed" => Ok(Compression::None),
            other => Err(MediaError::InvalidCompression(other.to_string())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

impl ManifestFormat {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => OCI_MANIFEST,
            ManifestFormat::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn index_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => OCI_INDEX,
            ManifestFormat::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => OCI_CONFIG,
            ManifestFormat::Docker => DOCKER_CONFIG,
        }
    }

    /// The media type of a layer kiln compressed itself.
    pub fn layer_media_type(self, compression: Compression) -> Result<&'static str, MediaError> {
        match (self, compression) {
            (ManifestFormat::Oci, Compression::Gzip) => Ok(OCI_LAYER_GZIP),
            (ManifestFormat::Oci, Compression::Zstd) => Ok(OCI_LAYER_ZSTD),
            (ManifestFormat::Oci, Compression::None) => Ok(OCI_LAYER_TAR),
            (ManifestFormat::Docker, Compression::Gzip) => Ok(DOCKER_LAYER_GZIP),
            (ManifestFormat::Docker, Compression::Zstd) => Err(MediaError::ZstdNeedsOci),
            (ManifestFormat::Docker, Compression::None) => Ok(DOCKER_LAYER_TAR),
        }
    }

    /// The family a manifest media type belongs to, if it is one of ours.
    pub fn of_manifest(media_type: &str) -> Option<ManifestFormat> {
        match media_type {
            OCI_MANIFEST => Some(ManifestFormat::Oci),
            DOCKER_MANIFEST => Some(ManifestFormat::Docker),
            _ => None,
        }
    }
}

/// Whether a layer media type is one that registries must not serve
/// (Windows base layers and the like); such layers keep their type in
/// either family because they point at external URLs.
pub fn is_foreign_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        DOCKER_LAYER_FOREIGN_GZIP
            | OCI_LAYER_NONDIST_GZIP
            | OCI_LAYER_NONDIST_ZSTD
            | OCI_LAYER_NONDIST_TAR
    )
}

/// How a layer blob is compressed, from its media type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD => Some(Compression::Zstd),
        OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => Some(Compression::None),
        _ => None,
    }
}

/// The media type a base image's layer gets when the new image is written
/// in `to`. The blob is unchanged, so only types that describe the same
/// bytes in both families can move.
pub fn convert_layer_media_type(
    media_type: &str,
    digest: &str,
    to: ManifestFormat,
) -> Result<&'static str, MediaError> {
    let unknown = || MediaError::UnknownLayer {
        digest: digest.to_string(),
        media_type: media_type.to_string(),
    };
    let known: &'static str = match media_type {
        OCI_LAYER_GZIP => OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD => OCI_LAYER_ZSTD,
        OCI_LAYER_TAR => OCI_LAYER_TAR,
        OCI_LAYER_NONDIST_GZIP => OCI_LAYER_NONDIST_GZIP,
        OCI_LAYER_NONDIST_ZSTD => OCI_LAYER_NONDIST_ZSTD,
        OCI_LAYER_NONDIST_TAR => OCI_LAYER_NONDIST_TAR,
        DOCKER_LAYER_GZIP => DOCKER_LAYER_GZIP,
        DOCKER_LAYER_TAR => DOCKER_LAYER_TAR,
        DOCKER_LAYER_FOREIGN_GZIP => DOCKER_LAYER_FOREIGN_GZIP,
        _ => return Err(unknown()),
    };
    if is_foreign_layer(known) {
        return Ok(known);
    }
    match (to, layer_compression(known)) {
        (_, None) => Err(unknown()),
        (ManifestFormat::Docker, Some(Compression::Zstd)) => Err(MediaError::ZstdLayerToDocker {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
        }),
        (to, Some(compression)) => to.layer_media_type(compression),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types_per_format_and_compression() {
        let cases = [
            (ManifestFormat::Oci, Compression::Gzip, Ok(OCI_LAYER_GZIP)),
            (ManifestFormat::Oci, Compression::Zstd, Ok(OCI_LAYER_ZSTD)),
            (ManifestFormat::Oci, Compression::None, Ok(OCI_LAYER_TAR)),
            (
                ManifestFormat::Docker,
                Compression::Gzip,
                Ok(DOCKER_LAYER_GZIP),
            ),
            (
                ManifestFormat::Docker,
                Compression::Zstd,
                Err(MediaError::ZstdNeedsOci),
            ),
            (
                ManifestFormat::Docker,
                Compression::None,
                Ok(DOCKER_LAYER_TAR),
            ),
        ];
        for (format, compression, want) in cases {
            assert_eq!(
                format.layer_media_type(compression),
                want,
                "{format:?} {compression:?}"
            );
        }
    }

    #[test]
    fn literal_media_type_strings() {
        assert_eq!(
            OCI_LAYER_GZIP,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            OCI_LAYER_ZSTD,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(OCI_LAYER_TAR, "application/vnd.oci.image.layer.v1.tar");
        let oci = ManifestFormat::Oci;
        assert_eq!(
            oci.config_media_type(),
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            oci.manifest_media_type(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            oci.index_media_type(),
            "application/vnd.oci.image.index.v1+json"
        );
        let docker = ManifestFormat::Docker;
        assert_eq!(
            DOCKER_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(
            docker.config_media_type(),
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            docker.manifest_media_type(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            docker.index_media_type(),
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
    }

    #[test]
    fn zstd_with_docker_mode_is_refused_with_advice() {
        let cases = [
            (OciMode::Oci, Compression::Zstd, true),
            (OciMode::Auto, Compression::Zstd, true),
            (OciMode::Docker, Compression::Zstd, false),
            (OciMode::Docker, Compression::Gzip, true),
            (OciMode::Docker, Compression::None, true),
        ];
        for (mode, compression, ok) in cases {
            assert_eq!(
                mode.check_compression(compression).is_ok(),
                ok,
                "{mode} {compression}"
            );
        }
        assert_eq!(
            OciMode::Docker
                .check_compression(Compression::Zstd)
                .unwrap_err()
                .to_string(),
            "zstd compression needs OCI media types; use --oci-mode=oci or --compression=gzip"
        );
    }

    #[test]
    fn flag_values_parse_and_print() {
        assert_eq!("oci".parse(), Ok(OciMode::Oci));
        assert_eq!("docker".parse(), Ok(OciMode::Docker));
        assert_eq!("auto".parse(), Ok(OciMode::Auto));
        assert_eq!(
            "OCI".parse::<OciMode>().unwrap_err().to_string(),
            "invalid --oci-mode value \"OCI\" (expected oci, docker or auto)"
        );
        assert_eq!("gzip".parse(), Ok(Compression::Gzip));
        assert_eq!("zstd".parse(), Ok(Compression::Zstd));
        assert_eq!("none".parse(), Ok(Compression::None));
        assert_eq!(
            "xz".parse::<Compression>().unwrap_err().to_string(),
            "invalid --compression value \"xz\" (expected gzip, zstd or none)"
        );
        assert_eq!(OciMode::Auto.to_string(), "auto");
        assert_eq!(Compression::Zstd.to_string(), "zstd");
        assert_eq!(OciMode::Auto.initial_format(), ManifestFormat::Oci);
        assert_eq!(OciMode::Docker.initial_format(), ManifestFormat::Docker);
    }

    #[test]
    fn converting_base_layer_types_between_families() {
        use ManifestFormat::{Docker, Oci};
        let ok = |s: &'static str| -> Result<&'static str, MediaError> { Ok(s) };
        let cases: Vec<(&str, ManifestFormat, Result<&'static str, MediaError>)> = vec![
            (OCI_LAYER_GZIP, Docker, ok(DOCKER_LAYER_GZIP)),
            (OCI_LAYER_GZIP, Oci, ok(OCI_LAYER_GZIP)),
            (DOCKER_LAYER_GZIP, Oci, ok(OCI_LAYER_GZIP)),
            (DOCKER_LAYER_GZIP, Docker, ok(DOCKER_LAYER_GZIP)),
            (OCI_LAYER_TAR, Docker, ok(DOCKER_LAYER_TAR)),
            (DOCKER_LAYER_TAR, Oci, ok(OCI_LAYER_TAR)),
            (OCI_LAYER_ZSTD, Oci, ok(OCI_LAYER_ZSTD)),
            (
                DOCKER_LAYER_FOREIGN_GZIP,
                Oci,
                ok(DOCKER_LAYER_FOREIGN_GZIP),
            ),
            (OCI_LAYER_NONDIST_GZIP, Docker, ok(OCI_LAYER_NONDIST_GZIP)),
            (
                OCI_LAYER_ZSTD,
                Docker,
                Err(MediaError::ZstdLayerToDocker {
                    digest: "sha256:ab".into(),
                    media_type: OCI_LAYER_ZSTD.into(),
                }),
            ),
            (
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                Oci,
                Err(MediaError::UnknownLayer {
                    digest: "sha256:ab".into(),
                    media_type: "application/vnd.cncf.helm.chart.content.v1.tar+gzip".into(),
                }),
            ),
        ];
        for (from, to, want) in cases {
            assert_eq!(
                convert_layer_media_type(from, "sha256:ab", to),
                want,
                "{from} → {to:?}"
            );
        }
        assert_eq!(
            convert_layer_media_type(OCI_LAYER_ZSTD, "sha256:ab", Docker)
                .unwrap_err()
                .to_string(),
            "layer sha256:ab is zstd-compressed (application/vnd.oci.image.layer.v1.tar+zstd) and cannot be described by a Docker manifest; use --oci-mode=oci"
        );
    }
}
