//! Image references (`registry/repository:tag@digest`), parsed in one pass.
//!
//! oci-spec parses a reference with one regular expression whose Unicode
//! word class takes about 30 ms to compile on first use: a third of the
//! CPU time of an unchanged warm rebuild, spent before the first request.
//! This parser accepts distribution's reference grammar, which that
//! expression writes down, and builds the same [`Reference`] (Docker Hub
//! names made canonical, `latest` when neither tag nor digest is given),
//! with the same [`ParseError`]s. The one difference is deliberate: a tag
//! is ASCII (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, as the distribution spec
//! and Docker's Go expression mean it), where oci-spec's `\w` also takes
//! Unicode letters that no registry accepts. A differential property test
//! and the `reference` fuzz target hold the two parsers to each other on
//! everything else.

use oci_spec::distribution::{ParseError, Reference};

/// The longest repository (after `library/` is added) a reference may name.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest tag.
const TAG_LENGTH_MAX: usize = 128;
/// The shortest hex part of a digest the grammar accepts (the algorithm
/// then decides the exact length).
const DIGEST_HEX_MIN: usize = 32;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const DOCKER_HUB_OFFICIAL: &str = "library";
const DEFAULT_TAG: &str = "latest";

/// Parses `text` (not trimmed) as an image reference.
pub fn parse(text: &str) -> Result<Reference, ParseError> {
    if text.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    // No part of the grammar but the digest's separator has an `@`, and no
    // part of a name after its last `/` has a `:`: so the digest is what
    // follows the first `@`, and the tag what follows a last `:` that no
    // `/` comes after (before a `/`, a `:` is a registry's port).
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if !rest[colon + 1..].contains('/') => {
            (&rest[..colon], Some(&rest[colon + 1..]))
        }
        _ => (rest, None),
    };
    if !is_name(name) || !tag.is_none_or(is_tag) || !digest.is_none_or(is_digest) {
        return Err(ParseError::ReferenceInvalidFormat);
    }
    let (registry, repository) = split_registry(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(digest) = digest {
        check_digest_length(digest)?;
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or(DEFAULT_TAG).to_string())
        }
    })
}

/// `name := [domain '/'] path-component ('/' path-component)*`
fn is_name(name: &str) -> bool {
    let mut components = name.split('/');
    let Some(first) = components.next() else {
        return false;
    };
    let rest: Vec<&str> = components.collect();
    if !rest.iter().all(|component| is_path_component(component)) {
        return false;
    }
    // The first component is a path component, or a domain when more
    // follow (a lone domain-like word such as `Alpine` is no name).
    is_path_component(first) || (!rest.is_empty() && is_domain(first))
}

/// `domain := label ('.' label)* [':' [0-9]+]`, a label being ASCII
/// letters and digits with inner hyphens.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    port_ok && host.split('.').all(is_domain_label)
}

fn is_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `path-component := [a-z0-9]+ (separator [a-z0-9]+)*` where a separator
/// is `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    bytes
        .split(alnum)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|b| *b == b'-')
        })
}

/// `tag := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    bytes.len() <= TAG_LENGTH_MAX
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// `digest := algorithm ':' hex{32,}`, the algorithm being components of
/// `[A-Za-z][A-Za-z0-9]*` joined by one of `-_+.`.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= DIGEST_HEX_MIN && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The algorithms a reference may name and their hex lengths.
fn check_digest_length(digest: &str) -> Result<(), ParseError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(ParseError::DigestInvalidFormat)?;
    let wanted = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ParseError::DigestUnsupported),
    };
    if hex.len() == wanted {
        Ok(())
    } else {
        Err(ParseError::DigestInvalidLength)
    }
}

/// The registry and the repository of a name: the first component is a
/// registry when it looks like a host (a `.` or `:`, or `localhost`),
/// else the name is Docker Hub's, where a single component is an
/// official image under `library/`.
fn split_registry(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("{DOCKER_HUB_OFFICIAL}/{repository}")
    } else {
        repository.to_string()
    };
    (registry.to_string(), repository)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oci_spec(text: &str) -> Result<Reference, ParseError> {
        text.parse::<Reference>()
    }

    const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn table() {
        let long = format!("registry.example/{}", "a".repeat(256));
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let tagged_and_pinned = format!("r.example/app:1@{sha512}");
        let rows: Vec<(String, Result<&str, ParseError>)> = vec![
            ("busybox".into(), Ok("docker.io/library/busybox:latest")),
            (
                "index.docker.io/busybox:1".into(),
                Ok("docker.io/library/busybox:1"),
            ),
            ("org/app".into(), Ok("docker.io/org/app:latest")),
            ("localhost/app".into(), Ok("localhost/app:latest")),
            ("127.0.0.1:5000/app:1".into(), Ok("127.0.0.1:5000/app:1")),
            (
                "test.com:5000".into(),
                Ok("docker.io/library/test.com:5000"),
            ),
            (
                "Registry.Example/a/b--c__d.e".into(),
                Ok("Registry.Example/a/b--c__d.e:latest"),
            ),
            (
                format!("app@{SHA256}"),
                Ok(
                    "docker.io/library/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
            ),
            (
                format!("r.example/app:1@{sha512}"),
                Ok(tagged_and_pinned.as_str()),
            ),
            ("".into(), Err(ParseError::NameEmpty)),
            ("app:1:2".into(), Err(ParseError::ReferenceInvalidFormat)),
            ("App".into(), Err(ParseError::ReferenceInvalidFormat)),
            ("app:".into(), Err(ParseError::ReferenceInvalidFormat)),
            ("a..b".into(), Err(ParseError::ReferenceInvalidFormat)),
            ("a___b".into(), Err(ParseError::ReferenceInvalidFormat)),
            (
                "host:port/app".into(),
                Err(ParseError::ReferenceInvalidFormat),
            ),
            (
                "-host.example/app".into(),
                Err(ParseError::ReferenceInvalidFormat),
            ),
            (
                "app@sha256:abc".into(),
                Err(ParseError::ReferenceInvalidFormat),
            ),
            (
                format!("app@md5:{}", "0".repeat(32)),
                Err(ParseError::DigestUnsupported),
            ),
            (
                format!("app@sha256:{}", "0".repeat(63)),
                Err(ParseError::DigestInvalidLength),
            ),
            (long, Err(ParseError::NameTooLong)),
            (
                format!("app:{}", "t".repeat(129)),
                Err(ParseError::ReferenceInvalidFormat),
            ),
        ];
        for (input, want) in rows {
            let got = parse(&input);
            match want {
                Ok(whole) => assert_eq!(got.map(|r| r.whole()).as_deref(), Ok(whole), "{input}"),
                Err(error) => assert_eq!(got, Err(error), "{input}"),
            }
            assert_eq!(
                parse(&input),
                oci_spec(&input),
                "{input}: oci-spec disagrees"
            );
        }
    }

    /// The deliberate difference: oci-spec's `\w` takes Unicode letters in
    /// a tag; the distribution spec, Docker and kiln do not.
    #[test]
    fn a_tag_is_ascii() {
        assert!(oci_spec("app:été").is_ok());
        assert_eq!(parse("app:été"), Err(ParseError::ReferenceInvalidFormat));
    }

    /// Pieces references are made of, the grammar's corner cases among
    /// them, joined at random.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec![
                "a",
                "b",
                "z",
                "0",
                "9",
                "A",
                "Q",
                ".",
                "_",
                "__",
                "___",
                "-",
                "--",
                ":",
                "/",
                "//",
                "@",
                "localhost",
                "docker.io",
                "index.docker.io",
                "example.com",
                "reg-1.example",
                ":5000",
                "5000",
                "latest",
                "v1.2.3-rc_1",
                "library",
                "sha256:",
                "sha512:",
                "sha384:",
                "md5:",
                "sha256+b64.x:",
                " ",
            ])
            .prop_map(str::to_string),
            "[0-9a-f]{30,34}",
            "[0-9a-f]{64}",
            "[0-9a-f]{96}",
            "[0-9a-f]{128}",
            "[a-z0-9]{1,8}",
            "[ -~]{1,6}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_oci_spec_on_generated_references(
            pieces in proptest::collection::vec(piece(), 1..12),
        ) {
            let text = pieces.concat();
            prop_assert_eq!(parse(&text), oci_spec(&text), "{:?}", text);
        }

        #[test]
        fn agrees_with_oci_spec_on_well_formed_shapes(
            registry in proptest::option::of("(localhost|[a-z0-9]{1,5}(\\.[a-z0-9-]{1,5}){0,2}(:[0-9]{1,5})?)"),
            path in proptest::collection::vec("[a-z0-9]{1,4}([._-]{1,2}[a-z0-9]{1,4}){0,2}", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,130}"),
            digest in proptest::option::of("sha(256|384|512):[0-9a-f]{62,130}"),
        ) {
            let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
            text.push_str(&path.join("/"));
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(digest) = digest {
                text.push('@');
                text.push_str(&digest);
            }
            prop_assert_eq!(parse(&text), oci_spec(&text), "{:?}", text);
        }
    }
}
