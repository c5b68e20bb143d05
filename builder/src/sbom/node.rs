//! npm packages: `package.json` of a directory in `node_modules`. Its
//! `name`, `version` and license (`license` as a string or, in old
//! packages, `{"type": …}`, or a `licenses` array).

use serde::Deserialize;
use serde_json::Value;

use super::package::{Ecosystem, Package};

#[derive(Deserialize)]
struct Manifest {
    name: Option<String>,
    version: Option<String>,
    license: Option<Value>,
    licenses: Option<Vec<Value>>,
}

/// The package `package.json` at `location` describes; `None` when it has
/// no name or version (a private workspace manifest, not a package).
pub fn parse(text: &[u8], location: &str) -> Result<Option<Package>, serde_json::Error> {
    let manifest: Manifest = serde_json::from_slice(text)?;
    let (Some(name), Some(version)) = (manifest.name, manifest.version) else {
        return Ok(None);
    };
    if name.is_empty() || version.is_empty() {
        return Ok(None);
    }
    let mut package = Package::new(Ecosystem::Npm, &name, location);
    package.version = Some(version);
    package.license = match (manifest.license, manifest.licenses) {
        (Some(license), _) => license_name(&license),
        (None, Some(licenses)) => {
            let names: Vec<String> = licenses.iter().filter_map(license_name).collect();
            (!names.is_empty()).then(|| names.join(" OR "))
        }
        (None, None) => None,
    };
    Ok(Some(package))
}

fn license_name(value: &Value) -> Option<String> {
    match value {
        Value::String(name) => Some(name.clone()),
        Value::Object(object) => object.get("type")?.as_str().map(str::to_string),
        _ => None,
    }
    .filter(|name| !name.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn package_json_forms() {
        // (name, version, license) of the package found.
        type Found<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;
        let cases: [(&str, Found<'_>); 5] = [
            (
                r#"{"name":"@babel/core","version":"7.23.9","license":"MIT","dependencies":{"a":"1"}}"#,
                Some(("@babel/core", "7.23.9", Some("MIT"))),
            ),
            (
                r#"{"name":"old","version":"0.1.0","license":{"type":"BSD-3-Clause","url":"x"}}"#,
                Some(("old", "0.1.0", Some("BSD-3-Clause"))),
            ),
            (
                r#"{"name":"older","version":"1.0.0","licenses":[{"type":"MIT"},{"type":"GPL-2.0"}]}"#,
                Some(("older", "1.0.0", Some("MIT OR GPL-2.0"))),
            ),
            (r#"{"name":"workspace","private":true}"#, None),
            (r#"{"version":"1.0.0"}"#, None),
        ];
        for (text, want) in cases {
            let got = parse(text.as_bytes(), "node_modules/x/package.json").unwrap();
            let got = got.as_ref().map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_deref().unwrap_or(""),
                    p.license.as_deref(),
                )
            });
            assert_eq!(got, want, "{text}");
        }
        assert!(parse(b"{\"name\": ", "p").is_err());
        assert!(parse(b"[1,2]", "p").is_err());
    }
}
