//! Which files of an image describe packages: a function of the path
//! alone (the cleaned tar entry name, without a leading `/`), so a layer is
//! read once and every other file is skipped without looking at it.

/// What a path is to the scanners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageFile {
    /// `/etc/os-release` or `/usr/lib/os-release`.
    OsRelease {
        preferred: bool,
    },
    DpkgStatus,
    /// One file of distroless' `/var/lib/dpkg/status.d/`.
    DpkgStatusD,
    ApkInstalled,
    RpmSqlite,
    /// rpm's Berkeley DB (RHEL <= 8) or ndb (SUSE) database: found, not read.
    RpmOther,
    /// `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` or a `*.egg-info` file.
    PythonMetadata,
    /// `node_modules/[@scope/]<name>/package.json`.
    NodePackage,
}

/// Classifies `path`; `None` for every file that is not a package file.
pub fn classify(path: &str) -> Option<PackageFile> {
    match path {
        "etc/os-release" => return Some(PackageFile::OsRelease { preferred: true }),
        "usr/lib/os-release" => return Some(PackageFile::OsRelease { preferred: false }),
        "var/lib/dpkg/status" => return Some(PackageFile::DpkgStatus),
        "lib/apk/db/installed" => return Some(PackageFile::ApkInstalled),
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => {
            return Some(PackageFile::RpmSqlite);
        }
        "var/lib/rpm/Packages" | "var/lib/rpm/Packages.db" | "usr/lib/sysimage/rpm/Packages.db" => {
            return Some(PackageFile::RpmOther);
        }
        _ => {}
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        // Distroless writes `<pkg>` and `<pkg>.md5sums` side by side.
        return (!name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums"))
            .then_some(PackageFile::DpkgStatusD);
    }
    if is_python_metadata(path) {
        return Some(PackageFile::PythonMetadata);
    }
    if is_node_package(path) {
        return Some(PackageFile::NodePackage);
    }
    None
}

/// `…/site-packages/<dist>.dist-info/METADATA`, `…/<dist>.egg-info/PKG-INFO`
/// or `…/<dist>.egg-info` (a file), directly in a site-packages or
/// dist-packages directory.
fn is_python_metadata(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    let (Some(last), Some(parent)) = (parts.next(), parts.next()) else {
        return false;
    };
    let in_site = |dir: Option<&str>| matches!(dir, Some("site-packages" | "dist-packages"));
    if (last == "METADATA" && parent.ends_with(".dist-info"))
        || (last == "PKG-INFO" && parent.ends_with(".egg-info"))
    {
        return in_site(parts.next());
    }
    last.ends_with(".egg-info") && in_site(Some(parent))
}

/// `…node_modules/<name>/package.json` or
/// `…node_modules/@<scope>/<name>/package.json`.
fn is_node_package(path: &str) -> bool {
    let Some(rest) = path.strip_suffix("/package.json") else {
        return false;
    };
    let mut parts = rest.rsplit('/');
    let (Some(name), Some(parent)) = (parts.next(), parts.next()) else {
        return false;
    };
    if name.starts_with('@') || name.starts_with('.') {
        return false;
    }
    if parent == "node_modules" {
        return true;
    }
    parent.starts_with('@') && parent.len() > 1 && parts.next() == Some("node_modules")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        use PackageFile::*;
        let cases: &[(&str, Option<PackageFile>)] = &[
            ("var/lib/dpkg/status", Some(DpkgStatus)),
            ("var/lib/dpkg/status-old", None),
            ("var/lib/dpkg/status.d/base-files", Some(DpkgStatusD)),
            ("var/lib/dpkg/status.d/base-files.md5sums", None),
            ("var/lib/dpkg/status.d/", None),
            ("lib/apk/db/installed", Some(ApkInstalled)),
            ("var/lib/rpm/rpmdb.sqlite", Some(RpmSqlite)),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", Some(RpmSqlite)),
            ("var/lib/rpm/rpmdb.sqlite-wal", None),
            ("var/lib/rpm/Packages", Some(RpmOther)),
            ("etc/os-release", Some(OsRelease { preferred: true })),
            ("usr/lib/os-release", Some(OsRelease { preferred: false })),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(PythonMetadata),
            ),
            (
                "usr/local/lib/python3.12/site-packages/pip-24.0.dist-info/METADATA",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/dist-packages/setuptools.egg-info/PKG-INFO",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/dist-packages/distro_info-1.5.egg-info",
                Some(PythonMetadata),
            ),
            // Vendored copies inside a package are not installed distributions.
            (
                "usr/lib/python3/dist-packages/pip/_vendor/x.dist-info/METADATA",
                None,
            ),
            ("srv/app/x.dist-info/METADATA", None),
            ("app/node_modules/lodash/package.json", Some(NodePackage)),
            (
                "app/node_modules/@babel/core/package.json",
                Some(NodePackage),
            ),
            (
                "app/node_modules/a/node_modules/b/package.json",
                Some(NodePackage),
            ),
            ("app/node_modules/lodash/fp/package.json", None),
            ("app/node_modules/@babel/package.json", None),
            ("app/node_modules/.bin/package.json", None),
            ("app/package.json", None),
            ("usr/bin/bash", None),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), *want, "{path}");
        }
    }
}
