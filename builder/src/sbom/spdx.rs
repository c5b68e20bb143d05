//! The SPDX 2.3 JSON document: the fields of the SPDX 2.3 JSON schema
//! (`spdx-schema.json`) that an image SBOM uses, in the schema's names.
//!
//! One package for the image itself (`primaryPackagePurpose: CONTAINER`,
//! which the document `DESCRIBES`), and one per package found, which the
//! image `CONTAINS`. A package's declared license is kept
//! as is when it is a valid SPDX license expression, else it becomes a
//! `LicenseRef-` whose text is in `hasExtractedLicensingInfos`, as the
//! specification asks; dpkg packages, which record none, say
//! `NOASSERTION`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::package::Package;
use super::{SbomError, SbomOptions, Subject};
use crate::image::config::format_rfc3339;

pub const SPDX_VERSION: &str = "SPDX-2.3";
const NOASSERTION: &str = "NOASSERTION";
/// Where the document namespaces of kiln's SBOMs live; each document's is
/// made unique by the image's manifest digest.
const NAMESPACE_BASE: &str = "https://kiln.dev/spdx";
const IMAGE_ID: &str = "SPDXRef-Image";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: &'static str,
    pub data_license: &'static str,
    #[serde(rename = "SPDXID")]
    pub spdx_id: &'static str,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<SpdxPackage>,
    pub relationships: Vec<Relationship>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
    /// The package files that could not be read, so a reader knows the
    /// list may be incomplete and where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpdxPackage {
    pub name: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    pub supplier: &'static str,
    pub download_location: &'static str,
    pub files_analyzed: bool,
    pub license_concluded: &'static str,
    pub license_declared: String,
    pub copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    pub primary_package_purpose: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: &'static str,
    pub reference_type: &'static str,
    pub reference_locator: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: &'static str,
    pub related_spdx_element: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    pub license_id: String,
    pub extracted_text: String,
}

/// The document for `packages` (in document order) of the image `subject`,
/// serialised.
pub fn document(
    packages: &[Package],
    skipped: &[super::Skipped],
    subject: &Subject,
    options: &SbomOptions,
) -> Result<Vec<u8>, SbomError> {
    let mut document = build(packages, subject, options);
    if !skipped.is_empty() {
        let files: Vec<String> = skipped
            .iter()
            .map(|s| {
                format!(
                    "{} (layer {}): {}",
                    super::display_path(&s.path),
                    s.layer,
                    s.reason
                )
            })
            .collect();
        document.creation_info.comment = Some(format!(
            "package files not read, their packages are missing from this document: {}",
            files.join("; ")
        ));
    }
    serde_json::to_vec_pretty(&document).map_err(|source| SbomError::Serialize {
        reference: subject.reference.clone(),
        source,
    })
}

/// The document as values (for tests and the serialiser).
pub fn build(packages: &[Package], subject: &Subject, options: &SbomOptions) -> Document {
    let mut licenses = LicenseRefs::default();
    let mut spdx_packages = vec![image_package(subject)];
    let mut relationships = vec![Relationship {
        spdx_element_id: DOCUMENT_ID.to_string(),
        relationship_type: "DESCRIBES",
        related_spdx_element: IMAGE_ID.to_string(),
    }];
    for (index, package) in packages.iter().enumerate() {
        let spdx_id = format!(
            "SPDXRef-Package-{}-{}-{index}",
            package.ecosystem.purl_type(),
            id_safe(&package.name)
        );
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.to_string(),
            relationship_type: "CONTAINS",
            related_spdx_element: spdx_id.clone(),
        });
        spdx_packages.push(SpdxPackage {
            name: package.name.clone(),
            spdx_id,
            version_info: package.version.clone(),
            supplier: NOASSERTION,
            download_location: NOASSERTION,
            files_analyzed: false,
            license_concluded: NOASSERTION,
            license_declared: match &package.license {
                Some(license) => licenses.declared(license),
                None => NOASSERTION.to_string(),
            },
            copyright_text: NOASSERTION,
            source_info: package
                .source
                .as_ref()
                .map(|source| format!("built from source package {source}")),
            external_refs: package
                .purl
                .iter()
                .map(|purl| ExternalRef {
                    reference_category: "PACKAGE-MANAGER",
                    reference_type: "purl",
                    reference_locator: purl.clone(),
                })
                .collect(),
            primary_package_purpose: if package.ecosystem.is_os() {
                "OPERATING-SYSTEM"
            } else {
                "LIBRARY"
            },
            comment: Some(format!(
                "found in {}",
                super::display_path(&package.location)
            )),
        });
    }
    Document {
        spdx_version: SPDX_VERSION,
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name: subject.reference.clone(),
        document_namespace: format!(
            "{NAMESPACE_BASE}/{}/{}",
            id_safe(&subject.reference),
            subject.manifest_digest
        ),
        creation_info: CreationInfo {
            created: format_rfc3339(options.created),
            creators: vec![format!("Tool: {}", options.creator)],
            comment: None,
        },
        packages: spdx_packages,
        relationships,
        has_extracted_licensing_infos: licenses.extracted(),
    }
}

/// The package standing for the image, with an `oci` purl.
fn image_package(subject: &Subject) -> SpdxPackage {
    SpdxPackage {
        name: subject.reference.clone(),
        spdx_id: IMAGE_ID.to_string(),
        version_info: Some(subject.manifest_digest.clone()),
        supplier: NOASSERTION,
        download_location: NOASSERTION,
        files_analyzed: false,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.to_string(),
        copyright_text: NOASSERTION,
        source_info: None,
        external_refs: oci_purl(subject)
            .into_iter()
            .map(|purl| ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: purl,
            })
            .collect(),
        primary_package_purpose: "CONTAINER",
        comment: Some(format!("platform {}", subject.platform)),
    }
}

/// `pkg:oci/<name>@<digest>?arch=…&repository_url=<registry/repo>&tag=…`
/// (purl's `oci` type).
fn oci_purl(subject: &Subject) -> Option<String> {
    let reference = subject
        .reference
        .split_once('@')
        .map_or(subject.reference.as_str(), |(name, _)| name);
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match reference[last_slash..].rsplit_once(':') {
        Some((_, tag)) => (&reference[..reference.len() - tag.len() - 1], Some(tag)),
        None => (reference, None),
    };
    let name = repository.rsplit('/').next()?;
    let mut purl = packageurl::PackageUrl::new("oci", name.to_ascii_lowercase()).ok()?;
    purl.with_version(subject.manifest_digest.as_str()).ok()?;
    purl.add_qualifier("arch", subject.platform.architecture.as_str())
        .ok()?;
    purl.add_qualifier("repository_url", repository).ok()?;
    if let Some(tag) = tag {
        purl.add_qualifier("tag", tag).ok()?;
    }
    Some(purl.to_string())
}

/// The characters an SPDX identifier may hold (`[A-Za-z0-9.-]`); others
/// become `-`.
fn id_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// License texts that are not SPDX expressions, by their `LicenseRef-`.
#[derive(Default)]
struct LicenseRefs {
    by_text: BTreeMap<String, String>,
    ids: BTreeMap<String, String>,
}

impl LicenseRefs {
    /// What goes into `licenseDeclared` for `license`.
    fn declared(&mut self, license: &str) -> String {
        if spdx::Expression::parse(license).is_ok() {
            return license.to_string();
        }
        if let Some(id) = self.by_text.get(license) {
            return id.clone();
        }
        let base = format!("LicenseRef-{}", id_safe(license));
        let mut id = base.clone();
        let mut n = 2;
        while self.ids.contains_key(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.by_text.insert(license.to_string(), id.clone());
        self.ids.insert(id.clone(), license.to_string());
        id
    }

    fn extracted(self) -> Vec<ExtractedLicense> {
        self.ids
            .into_iter()
            .map(|(license_id, extracted_text)| ExtractedLicense {
                license_id,
                extracted_text,
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::platform::Platform;
    use crate::sbom::package::Ecosystem;

    pub(crate) fn subject() -> Subject {
        Subject {
            reference: "registry.example:5000/team/app:1.0".into(),
            platform: Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
            manifest_digest: "sha256:0123".into(),
        }
    }

    #[test]
    fn image_purl() {
        let mut s = subject();
        assert_eq!(
            oci_purl(&s).unwrap(),
            "pkg:oci/app@sha256:0123?arch=amd64&repository_url=registry.example:5000%2Fteam%2Fapp&tag=1.0"
        );
        s.reference = "localhost:5000/app@sha256:abcd".into();
        assert_eq!(
            oci_purl(&s).unwrap(),
            "pkg:oci/app@sha256:0123?arch=amd64&repository_url=localhost:5000%2Fapp"
        );
    }

    #[test]
    fn licenses_become_refs_unless_spdx() {
        let mut refs = LicenseRefs::default();
        assert_eq!(refs.declared("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(refs.declared("GPL-2.0-or-later"), "GPL-2.0-or-later");
        assert_eq!(refs.declared("BSD License"), "LicenseRef-BSD-License");
        assert_eq!(refs.declared("BSD_License"), "LicenseRef-BSD-License-2");
        assert_eq!(refs.declared("BSD License"), "LicenseRef-BSD-License");
        assert_eq!(
            refs.extracted(),
            [
                ExtractedLicense {
                    license_id: "LicenseRef-BSD-License".into(),
                    extracted_text: "BSD License".into()
                },
                ExtractedLicense {
                    license_id: "LicenseRef-BSD-License-2".into(),
                    extracted_text: "BSD_License".into()
                },
            ]
        );
    }

    #[test]
    fn document_json() {
        let mut bash = Package::new(Ecosystem::Deb, "bash", "var/lib/dpkg/status");
        bash.version = Some("5.2.15-2+b2".into());
        bash.source = Some("bash 5.2.15-2".into());
        bash.purl = Some("pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64".into());
        let mut six = Package::new(
            Ecosystem::Python,
            "six",
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
        );
        six.version = Some("1.16.0".into());
        six.license = Some("MIT".into());
        six.purl = Some("pkg:pypi/six@1.16.0".into());
        let options = SbomOptions {
            work_dir: "/unused".into(),
            created: 1_700_000_000,
            creator: "kiln-test".into(),
        };
        let bytes = document(&[bash, six], &[], &subject(), &options).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let want = serde_json::json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": "registry.example:5000/team/app:1.0",
            "documentNamespace": "https://kiln.dev/spdx/registry.example-5000-team-app-1.0/sha256:0123",
            "creationInfo": {"created": "2023-11-14T22:13:20Z", "creators": ["Tool: kiln-test"]},
            "packages": [
                {
                    "name": "registry.example:5000/team/app:1.0",
                    "SPDXID": "SPDXRef-Image",
                    "versionInfo": "sha256:0123",
                    "supplier": "NOASSERTION",
                    "downloadLocation": "NOASSERTION",
                    "filesAnalyzed": false,
                    "licenseConcluded": "NOASSERTION",
                    "licenseDeclared": "NOASSERTION",
                    "copyrightText": "NOASSERTION",
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:oci/app@sha256:0123?arch=amd64&repository_url=registry.example:5000%2Fteam%2Fapp&tag=1.0"
                    }],
                    "primaryPackagePurpose": "CONTAINER",
                    "comment": "platform linux/amd64"
                },
                {
                    "name": "bash",
                    "SPDXID": "SPDXRef-Package-deb-bash-0",
                    "versionInfo": "5.2.15-2+b2",
                    "supplier": "NOASSERTION",
                    "downloadLocation": "NOASSERTION",
                    "filesAnalyzed": false,
                    "licenseConcluded": "NOASSERTION",
                    "licenseDeclared": "NOASSERTION",
                    "copyrightText": "NOASSERTION",
                    "sourceInfo": "built from source package bash 5.2.15-2",
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64"
                    }],
                    "primaryPackagePurpose": "OPERATING-SYSTEM",
                    "comment": "found in /var/lib/dpkg/status"
                },
                {
                    "name": "six",
                    "SPDXID": "SPDXRef-Package-pypi-six-1",
                    "versionInfo": "1.16.0",
                    "supplier": "NOASSERTION",
                    "downloadLocation": "NOASSERTION",
                    "filesAnalyzed": false,
                    "licenseConcluded": "NOASSERTION",
                    "licenseDeclared": "MIT",
                    "copyrightText": "NOASSERTION",
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:pypi/six@1.16.0"
                    }],
                    "primaryPackagePurpose": "LIBRARY",
                    "comment": "found in /usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"
                }
            ],
            "relationships": [
                {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"},
                {"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-Package-deb-bash-0"},
                {"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-Package-pypi-six-1"}
            ]
        });
        assert_eq!(json, want);
    }
}
