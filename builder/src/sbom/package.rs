//! The package record every scanner produces, and its package URL.

use packageurl::PackageUrl;

use super::os_release::OsRelease;

/// Where a package comes from: its package manager or language ecosystem,
/// which is also its purl type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    Deb,
    Apk,
    Rpm,
    Python,
    Npm,
    Golang,
    Cargo,
}

impl Ecosystem {
    /// The purl type (package-url's list of types).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Python => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Golang => "golang",
            Ecosystem::Cargo => "cargo",
        }
    }

    /// Packages of the distribution itself, whose purl names the distro.
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm)
    }

    /// The distro a purl names when the image has no os-release.
    fn default_namespace(self) -> Option<&'static str> {
        match self {
            Ecosystem::Deb => Some("debian"),
            Ecosystem::Apk => Some("alpine"),
            _ => None,
        }
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// As the package manager spells it (`@scope/name` for npm, the module
    /// path for Go).
    pub name: String,
    /// The full version as the ecosystem writes it: dpkg's with its epoch
    /// (`1:2.3-4`), rpm's `VERSION-RELEASE` (the epoch is [`Self::epoch`]).
    pub version: Option<String>,
    pub arch: Option<String>,
    /// rpm's EPOCH.
    pub epoch: Option<u32>,
    /// The declared license, as written in the package metadata.
    pub license: Option<String>,
    /// The source package (dpkg `Source`, apk origin, rpm source rpm).
    pub source: Option<String>,
    /// Image path of the file the package was read from, without `/`.
    pub location: String,
    /// Filled in by [`finish`], once the distro is known.
    pub purl: Option<String>,
}

impl Package {
    /// A package of `ecosystem` found at `location`; the rest is set by the
    /// scanner.
    pub(crate) fn new(ecosystem: Ecosystem, name: &str, location: &str) -> Package {
        Package {
            ecosystem,
            name: name.to_string(),
            version: None,
            arch: None,
            epoch: None,
            license: None,
            source: None,
            location: location.to_string(),
            purl: None,
        }
    }

    /// The package URL, or `None` when the name cannot make one (empty).
    pub(crate) fn package_url(&self, distro: Option<&OsRelease>) -> Option<String> {
        let (namespace, name) = match self.ecosystem {
            Ecosystem::Npm => match self.name.strip_prefix('@').and_then(|n| n.split_once('/')) {
                Some((scope, name)) => (Some(format!("@{scope}")), name.to_string()),
                None => (None, self.name.clone()),
            },
            Ecosystem::Golang => match self.name.rsplit_once('/') {
                Some((namespace, name)) => (Some(namespace.to_string()), name.to_string()),
                None => (None, self.name.clone()),
            },
            ecosystem if ecosystem.is_os() => (
                distro
                    .and_then(|d| d.id.clone())
                    .or_else(|| ecosystem.default_namespace().map(str::to_string)),
                self.name.clone(),
            ),
            _ => (None, self.name.clone()),
        };
        let mut purl = PackageUrl::new(self.ecosystem.purl_type(), name).ok()?;
        if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
            purl.with_namespace(namespace).ok()?;
        }
        if let Some(version) = self.version.as_deref().filter(|v| !v.is_empty()) {
            purl.with_version(version).ok()?;
        }
        if let Some(arch) = &self.arch {
            purl.add_qualifier("arch", arch.as_str()).ok()?;
        }
        if let Some(epoch) = self.epoch {
            purl.add_qualifier("epoch", epoch.to_string()).ok()?;
        }
        if self.ecosystem.is_os()
            && let Some(distro) = distro.and_then(OsRelease::purl_distro)
        {
            purl.add_qualifier("distro", distro).ok()?;
        }
        Some(purl.to_string())
    }
}

/// Puts the packages of the whole image in document order (ecosystem, name,
/// version, location), drops exact repeats (the same package read twice,
/// through a hard link) and gives each its purl.
pub(crate) fn finish(mut packages: Vec<Package>, distro: Option<&OsRelease>) -> Vec<Package> {
    for package in &mut packages {
        package.purl = package.package_url(distro);
    }
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.arch, &a.location).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.arch,
            &b.location,
        ))
    });
    packages.dedup();
    packages
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn package(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
        let mut p = Package::new(ecosystem, name, "x");
        p.version = Some(version.to_string());
        p
    }

    #[test]
    fn purls() {
        let debian = OsRelease {
            id: Some("debian".into()),
            version_id: Some("12".into()),
            pretty_name: None,
        };
        let mut bash = package(Ecosystem::Deb, "bash", "5.2.15-2+b2");
        bash.arch = Some("amd64".into());
        let mut libc = package(Ecosystem::Deb, "libc6", "2.36-9+deb12u4");
        libc.arch = Some("arm64".into());
        let mut rpm = package(Ecosystem::Rpm, "bash", "5.2.26-3.fc40");
        rpm.arch = Some("x86_64".into());
        rpm.epoch = Some(1);
        let fedora = OsRelease {
            id: Some("fedora".into()),
            version_id: Some("40".into()),
            pretty_name: None,
        };
        let cases: [(Package, Option<&OsRelease>, &str); 9] = [
            (
                bash,
                Some(&debian),
                "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12",
            ),
            (
                libc,
                None,
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=arm64",
            ),
            (
                rpm,
                Some(&fedora),
                "pkg:rpm/fedora/bash@5.2.26-3.fc40?arch=x86_64&distro=fedora-40&epoch=1",
            ),
            (
                package(Ecosystem::Apk, "musl", "1.2.4-r2"),
                None,
                "pkg:apk/alpine/musl@1.2.4-r2",
            ),
            (
                package(Ecosystem::Python, "Typing_Extensions", "4.9.0"),
                Some(&debian),
                "pkg:pypi/typing-extensions@4.9.0",
            ),
            (
                package(Ecosystem::Npm, "@babel/core", "7.23.9"),
                None,
                "pkg:npm/%40babel/core@7.23.9",
            ),
            (
                package(Ecosystem::Npm, "lodash", "4.17.21"),
                None,
                "pkg:npm/lodash@4.17.21",
            ),
            (
                package(Ecosystem::Golang, "github.com/spf13/cobra", "v1.8.0"),
                None,
                "pkg:golang/github.com/spf13/cobra@v1.8.0",
            ),
            (
                package(Ecosystem::Cargo, "serde", "1.0.197"),
                None,
                "pkg:cargo/serde@1.0.197",
            ),
        ];
        for (package, distro, want) in cases {
            assert_eq!(
                package.package_url(distro).as_deref(),
                Some(want),
                "{package:?}"
            );
        }
    }

    #[test]
    fn finish_sorts_and_drops_repeats() {
        let b = package(Ecosystem::Deb, "b", "1");
        let a = package(Ecosystem::Deb, "a", "1");
        let npm = package(Ecosystem::Npm, "a", "1");
        let got = finish(vec![npm, b.clone(), a, b], None);
        let names: Vec<_> = got.iter().map(|p| (p.ecosystem, p.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (Ecosystem::Deb, "a"),
                (Ecosystem::Deb, "b"),
                (Ecosystem::Npm, "a")
            ]
        );
    }
}
