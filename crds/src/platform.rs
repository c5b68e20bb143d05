//! Platform strings (`os/arch[/variant]`) as the CRD schemas validate them.
//!
//! The same grammar is written three times: as the OpenAPI `pattern`, inside
//! the CEL rules (whose messages name the offending value), and as
//! [`platform_is_valid`] for Rust callers. The tests check all three against
//! one table.

/// OpenAPI `pattern` of one platform: lower-case `os/arch` with an optional
/// `/variant` (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`).
pub const PLATFORM_PATTERN: &str = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$";

/// Longest platform string the schema accepts. Bounds the cost the API
/// server estimates for the CEL rules below.
pub const PLATFORM_MAX_LENGTH: u32 = 64;

/// Most platforms one MultiArchBuild may list (bounds the CEL cost too).
pub const PLATFORMS_MAX_ITEMS: u32 = 32;

/// CEL rule on a single platform string (`BuildRequest.spec.platform`).
pub const PLATFORM_RULE: &str = "self.matches('^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$')";

/// CEL message of [`PLATFORM_RULE`]: names the rejected value.
pub const PLATFORM_MESSAGE_EXPRESSION: &str =
    "'invalid platform format: ' + self + ' (expected os/arch)'";

/// CEL rule on a platform list (`MultiArchBuild.spec.platforms`).
pub const PLATFORMS_RULE: &str = "self.all(p, p.matches('^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$'))";

/// CEL message of [`PLATFORMS_RULE`]: names the first rejected entry.
pub const PLATFORMS_MESSAGE_EXPRESSION: &str = "'invalid platform format: ' + self.filter(p, !p.matches('^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$'))[0] + ' (expected os/arch)'";

/// CEL rule rejecting a platform listed twice.
pub const PLATFORMS_UNIQUE_RULE: &str = "self.all(p, self.exists_one(q, q == p))";

/// CEL message of [`PLATFORMS_UNIQUE_RULE`]: names the first duplicate.
pub const PLATFORMS_UNIQUE_MESSAGE_EXPRESSION: &str = "'duplicate platform: ' + self.filter(p, !self.exists_one(q, q == p))[0] + ' (list each platform once)'";

/// CEL transition rule: a BuildRequest builds one platform for its lifetime.
pub const PLATFORM_IMMUTABLE_RULE: &str = "self == oldSelf";

/// Message of [`PLATFORM_IMMUTABLE_RULE`].
pub const PLATFORM_IMMUTABLE_MESSAGE: &str =
    "platform is immutable (create a new BuildRequest for another platform)";

/// Whether `platform` matches [`PLATFORM_PATTERN`]: `os/arch` or
/// `os/arch/variant`, where `os` is `[a-z0-9]+`, `arch` is `[a-z0-9_]+` and
/// `variant` is `[a-z0-9.]+`. Upper case is rejected, as by the schema.
pub fn platform_is_valid(platform: &str) -> bool {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or_default();
    let Some(arch) = parts.next() else {
        return false;
    };
    let variant = parts.next();
    if parts.next().is_some() {
        return false;
    }
    let segment = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    };
    segment(os, b"") && segment(arch, b"_") && variant.is_none_or(|v| segment(v, b"."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_embed_the_pattern() {
        for rule in [PLATFORM_RULE, PLATFORMS_RULE, PLATFORMS_MESSAGE_EXPRESSION] {
            assert!(
                rule.contains(&format!("'{PLATFORM_PATTERN}'")),
                "{rule} does not quote {PLATFORM_PATTERN}"
            );
        }
    }
}
