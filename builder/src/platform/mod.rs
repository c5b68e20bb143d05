//! Platforms (`os/arch[/variant]`): parsing, containerd-style normalisation,
//! the host's own platform, and matching an image index entry.
//!
//! Normalisation follows containerd so that what users type and what
//! registries store compare equal: `x86_64` is `amd64`, `aarch64` is
//! `arm64`, `arm` gets its `v7`, and arm64's baseline `v8` is written
//! nowhere unless spelled out (`linux/arm64/v8`), as BuildKit writes it.

use std::fmt;
use std::str::FromStr;

/// One target platform, always held in normalised form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    /// The wording is the seed guides' and users grep for it.
    #[error("invalid platform format: {0} (expected os/arch)")]
    Format(String),
    #[error("duplicate platform {0} in the platform list")]
    Duplicate(String),
    #[error("the platform list is empty")]
    Empty,
}

impl Platform {
    /// Builds a platform from parts, normalising them.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = normalize_os(os);
        let (architecture, variant) = normalize_arch(architecture, variant.unwrap_or(""));
        Platform {
            os,
            architecture,
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// The platform this binary runs on.
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// `linux-arm64-v8`: the form used in digest file names and tags.
    pub fn slug(&self) -> String {
        self.to_string().replace('/', "-")
    }

    /// Whether an image built for `candidate` runs on this platform: the
    /// same os and architecture, and for variants an equal or older one
    /// (an `arm/v7` machine runs `arm/v6` code, not the other way round).
    pub fn accepts(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (self.effective_variant(), candidate.effective_variant()) {
            (None, None) => true,
            (Some(want), Some(have)) => variant_rank(have) <= variant_rank(want),
            // amd64 images rarely carry a variant; a missing one means the
            // baseline.
            (Some(_), None) => true,
            (None, Some(_)) => false,
        }
    }

    /// The variant, with arm64's baseline `v8` where none is written (as
    /// containerd writes none for it).
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, variant) => variant,
        }
    }

    /// Whether the two name the same platform: `linux/arm64` and
    /// `linux/arm64/v8` do.
    pub fn same_as(&self, other: &Platform) -> bool {
        self.canonical() == other.canonical()
    }

    /// One spelling per platform, for keys and comparisons: arm64 without
    /// its baseline variant.
    pub fn canonical(&self) -> Platform {
        let mut platform = self.clone();
        if platform.architecture == "arm64" && platform.variant.as_deref() == Some("v8") {
            platform.variant = None;
        }
        platform
    }

    /// How well `candidate` fits, higher is better, `None` when it does not
    /// run here. Used to pick the best entry of an image index.
    pub fn match_score(&self, candidate: &Platform) -> Option<u32> {
        if !self.accepts(candidate) {
            return None;
        }
        if self.effective_variant() == candidate.effective_variant() {
            return Some(u32::MAX);
        }
        Some(candidate.effective_variant().map(variant_rank).unwrap_or(0))
    }
}

fn variant_rank(variant: &str) -> u32 {
    variant
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0)
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "macos" => "darwin".to_string(),
        _ => os,
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (arch, variant) = match arch.as_str() {
        "i386" | "i686" | "x86" => ("386", variant),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            // v1 is the baseline every amd64 image assumes: no variant.
            if variant == "v1" || variant == "1" {
                String::new()
            } else {
                variant
            },
        ),
        // v8 is arm64's baseline: containerd (and so BuildKit) writes no
        // variant for it. `linux/arm64/v8` spelled out keeps it (FromStr).
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_str() {
                "" | "8" | "v8" | "v8.0" => String::new(),
                other if other.starts_with('v') => other.to_string(),
                other => format!("v{other}"),
            },
        ),
        "armhf" => ("arm", "v7".to_string()),
        "armel" => ("arm", "v6".to_string()),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" | "v7" => "v7".to_string(),
                "5" | "6" | "8" => format!("v{variant}"),
                other => other.to_string(),
            },
        ),
        other => (other, variant),
    };
    (arch.to_string(), variant)
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        let trimmed = text.trim();
        let parts: Vec<&str> = trimmed.split('/').collect();
        let bad = || PlatformError::Format(trimmed.to_string());
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => {
                let mut platform = Platform::new(os, arch, Some(variant));
                // As containerd's parser: a variant given for arm64 stays,
                // even the baseline's.
                if platform.architecture == "arm64" && platform.variant.is_none() {
                    platform.variant = Some("v8".to_string());
                }
                Ok(platform)
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Parses a comma-separated platform list (`--multi-platform`, or
/// `--platform` as kaniko users write it), rejecting duplicates after
/// normalisation (`linux/arm64` and `linux/arm64/v8` are the same).
pub fn parse_list(text: &str) -> Result<Vec<Platform>, PlatformError> {
    let mut platforms: Vec<Platform> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let platform: Platform = entry.parse()?;
        if platforms.iter().any(|p| p.same_as(&platform)) {
            return Err(PlatformError::Duplicate(platform.to_string()));
        }
        platforms.push(platform);
    }
    if platforms.is_empty() {
        return Err(PlatformError::Empty);
    }
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        let table = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm64/8", "linux/arm64/v8"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Linux/S390X", "linux/s390x"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("linux/riscv64", "linux/riscv64"),
            ("windows/amd64", "windows/amd64"),
        ];
        for (input, want) in table {
            let got: Platform = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), want, "input {input}");
        }
    }

    #[test]
    fn rejects_malformed_with_the_seed_message() {
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "",
            "linux//amd64",
            "linux/am d64",
        ] {
            let err = bad.parse::<Platform>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid platform format: {} (expected os/arch)", bad.trim())
            );
        }
    }

    #[test]
    fn lists_keep_order_and_reject_duplicates() {
        let list = parse_list("linux/amd64, linux/arm64,linux/arm/v7").unwrap();
        let names: Vec<String> = list.iter().map(Platform::to_string).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);

        assert_eq!(
            parse_list("linux/arm64,linux/aarch64/v8")
                .unwrap_err()
                .to_string(),
            "duplicate platform linux/arm64/v8 in the platform list"
        );
        assert_eq!(
            parse_list("linux/amd64,linux").unwrap_err().to_string(),
            "invalid platform format: linux (expected os/arch)"
        );
        assert_eq!(parse_list(" , ").unwrap_err(), PlatformError::Empty);
    }

    #[test]
    fn matching_prefers_exact_variant_and_accepts_older() {
        let armv7: Platform = "linux/arm/v7".parse().unwrap();
        let armv6: Platform = "linux/arm/v6".parse().unwrap();
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let amd64: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(armv7.match_score(&armv7), Some(u32::MAX));
        assert_eq!(armv7.match_score(&armv6), Some(6));
        assert_eq!(armv6.match_score(&armv7), None);
        assert_eq!(
            arm64.match_score(&Platform::new("linux", "arm64", None)),
            Some(u32::MAX)
        );
        assert_eq!(amd64.match_score(&arm64), None);
        assert_eq!(
            Platform::new("linux", "amd64", Some("v2")).match_score(&amd64),
            Some(0)
        );
    }

    #[test]
    fn slug_names_digest_files() {
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().slug(),
            "linux-arm-v7"
        );
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().slug(),
            "linux-amd64"
        );
    }
}
