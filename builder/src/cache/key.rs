//! Cache keys: a pure function of the values that decide what an
//! instruction produces. Two builds that compute the same key may share
//! the layer; anything that could change the layer must be an input.

use sha2::{Digest, Sha256};

use super::InstructionForm;
use crate::platform::Platform;

/// Everything a layer depends on, as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInputs<'a> {
    /// The platform the instruction runs for. Always part of the key, so a
    /// layer built for one architecture is never handed to another.
    pub platform: &'a Platform,
    /// The key of the instruction before this one in the stage, or for the
    /// first instruction what the stage starts from (see [`base_key`]).
    pub parent: &'a str,
    /// The instruction, field by field under stable tags (see
    /// [`InstructionForm`]); the variables it expands are inputs through
    /// `args` and `env` (a RUN's shell expands them at run time).
    pub instruction: &'a InstructionForm,
    /// The build arguments the instruction sees, as `(name, value)`.
    pub args: &'a [(String, String)],
    /// The environment the instruction sees, as `(name, value)`.
    pub env: &'a [(String, String)],
    /// Content digests of the files a COPY/ADD reads, as
    /// `(path in its source, digest)` (for `--from`, the key of that stage
    /// or the digest of that image); empty for other instructions.
    pub files: &'a [(String, String)],
}

/// The key as `sha256:<hex>`.
///
/// Every field is written with its length in front, so no two different
/// inputs serialise to the same bytes (`"ab" + "c"` vs `"a" + "bc"`); the
/// instruction's tagged fields and each list are preceded by their count.
/// The order of `args`, `env` and `files` counts: it is the order the
/// instruction sees them in.
pub fn cache_key(inputs: &KeyInputs<'_>) -> String {
    // Hashed as it is serialised: a COPY of 100,000 files held every name
    // and digest a second time in one buffer (17 MB, the build's peak).
    let mut hasher = Sha256::new();
    let mut field = |value: &[u8]| {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    };
    // v2: the instruction as tagged fields instead of the model's Debug
    // text; v1 keys are never looked up again.
    field(b"kiln-cache-key-v2");
    field(inputs.platform.canonical().to_string().as_bytes());
    field(inputs.parent.as_bytes());
    let instruction = inputs.instruction.fields();
    field(b"instruction");
    field(instruction.len().to_string().as_bytes());
    for (tag, value) in instruction {
        field(tag.as_bytes());
        field(value.as_bytes());
    }
    for (tag, pairs) in [
        ("args", inputs.args),
        ("env", inputs.env),
        ("files", inputs.files),
    ] {
        field(tag.as_bytes());
        field(pairs.len().to_string().as_bytes());
        for (name, value) in pairs {
            field(name.as_bytes());
            field(value.as_bytes());
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// What a stage starts from, as the parent of its first key: the digest of
/// the base image's manifest for this platform, `scratch`, or the last key
/// of the stage it is built `FROM`.
pub fn base_key(base: BaseOf<'_>) -> String {
    match base {
        BaseOf::Scratch => "scratch".to_string(),
        BaseOf::Image { manifest_digest } => format!("image:{manifest_digest}"),
        BaseOf::Stage { last_key } => format!("stage:{last_key}"),
    }
}

/// See [`base_key`].
#[derive(Clone, Copy, Debug)]
pub enum BaseOf<'a> {
    Scratch,
    Image { manifest_digest: &'a str },
    Stage { last_key: &'a str },
}

/// The tag a key's cache image gets: its hex digits (tags cannot hold `:`).
pub fn key_tag(key: &str) -> &str {
    key.strip_prefix("sha256:").unwrap_or(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    struct Case {
        name: &'static str,
        platform: &'static str,
        parent: &'static str,
        instruction: &'static str,
        args: &'static [(&'static str, &'static str)],
        env: &'static [(&'static str, &'static str)],
        files: &'static [(&'static str, &'static str)],
    }

    const REFERENCE: Case = Case {
        name: "reference",
        platform: "linux/amd64",
        parent: "image:sha256:1111111111111111111111111111111111111111111111111111111111111111",
        instruction: "RUN make",
        args: &[("VERSION", "1.0")],
        env: &[("PATH", "/bin")],
        files: &[("src/main.c", "sha256:aaaa")],
    };

    fn key_of(case: &Case) -> String {
        let platform: Platform = case.platform.parse().unwrap();
        let (args, env, files) = (pairs(case.args), pairs(case.env), pairs(case.files));
        let dockerfile =
            crate::dockerfile::parse(&format!("FROM scratch\n{}\n", case.instruction)).unwrap();
        let instruction = InstructionForm::of(
            &dockerfile.stages[0].instructions[0],
            crate::image::Compression::Gzip,
        );
        cache_key(&KeyInputs {
            platform: &platform,
            parent: case.parent,
            instruction: &instruction,
            args: &args,
            env: &env,
            files: &files,
        })
    }

    #[test]
    fn the_reference_key_is_stable() {
        // A fixed value, computed independently (Python's hashlib over the
        // length-prefixed fields described on `cache_key`): changing the
        // serialisation orphans every cache in every registry, so it must
        // be a deliberate act.
        assert_eq!(
            key_of(&REFERENCE),
            "sha256:25bcf872551e4c35a7a683a56cc8001cfc02c3a068bd6944f4f01738d034d30f"
        );
        assert_eq!(key_of(&REFERENCE), key_of(&REFERENCE));
    }

    #[test]
    fn every_input_changes_the_key() {
        let table = [
            Case {
                name: "another build arg value",
                args: &[("VERSION", "1.1")],
                ..REFERENCE
            },
            Case {
                name: "one more build arg",
                args: &[("VERSION", "1.0"), ("DEBUG", "1")],
                ..REFERENCE
            },
            Case {
                name: "env instead of arg",
                args: &[],
                env: &[("PATH", "/bin"), ("VERSION", "1.0")],
                ..REFERENCE
            },
            Case {
                name: "another env value",
                env: &[("PATH", "/usr/bin")],
                ..REFERENCE
            },
            Case {
                name: "copied file content",
                files: &[("src/main.c", "sha256:bbbb")],
                ..REFERENCE
            },
            Case {
                name: "copied file renamed",
                files: &[("src/other.c", "sha256:aaaa")],
                ..REFERENCE
            },
            Case {
                name: "base image digest",
                parent: "image:sha256:2222222222222222222222222222222222222222222222222222222222222222",
                ..REFERENCE
            },
            Case {
                name: "platform arm64",
                platform: "linux/arm64",
                ..REFERENCE
            },
            Case {
                name: "platform arm/v7",
                platform: "linux/arm/v7",
                ..REFERENCE
            },
            Case {
                name: "instruction text",
                instruction: "RUN make install",
                ..REFERENCE
            },
            Case {
                name: "field boundaries shift",
                args: &[("VERSION1", ".0")],
                ..REFERENCE
            },
            Case {
                name: "a pair moves to another list",
                args: &[],
                files: &[("VERSION", "1.0"), ("src/main.c", "sha256:aaaa")],
                ..REFERENCE
            },
        ];
        let reference = key_of(&REFERENCE);
        let mut seen = std::collections::BTreeMap::new();
        for case in &table {
            let key = key_of(case);
            assert_ne!(key, reference, "{}", case.name);
            if let Some(other) = seen.insert(key, case.name) {
                panic!("{} and {other} give the same key", case.name);
            }
        }
    }

    #[test]
    fn equal_platforms_give_equal_keys() {
        // linux/arm64 and linux/arm64/v8 are one platform: one key.
        let a = Case {
            platform: "linux/arm64",
            ..REFERENCE
        };
        let b = Case {
            platform: "linux/arm64/v8",
            ..REFERENCE
        };
        assert_eq!(key_of(&a), key_of(&b));
    }

    #[test]
    fn base_keys_and_tags() {
        assert_eq!(base_key(BaseOf::Scratch), "scratch");
        assert_eq!(
            base_key(BaseOf::Image {
                manifest_digest: "sha256:ab"
            }),
            "image:sha256:ab"
        );
        assert_eq!(
            base_key(BaseOf::Stage {
                last_key: "sha256:cd"
            }),
            "stage:sha256:cd"
        );
        assert_eq!(key_tag("sha256:0123abcd"), "0123abcd");
    }
}
