//! What a registry's `401` asks for, and what a token server answers: pure
//! functions of header and body bytes, bounded, so hostile values are
//! unit-tested without a network.
//!
//! A registry answers a request it will not serve anonymously with
//! `WWW-Authenticate: Basic realm="…"` (send the user and password) or
//! `WWW-Authenticate: Bearer realm="https://auth.example/token",
//! service="registry.example",scope="repository:app:pull"` (get a token
//! from the realm for that service and scope, then send it). The header
//! syntax is RFC 7235's, parsed by `http-auth`; this module only bounds it
//! and picks what kiln needs. Public for the fuzz targets
//! (`fuzz/fuzz_targets/challenge.rs`).

use std::time::Duration;

/// The most bytes of `WWW-Authenticate` values read: real ones are a few
/// hundred bytes (a realm URL, a service name, a scope or two).
pub const MAX_CHALLENGE_BYTES: usize = 8 * 1024;

/// The most bytes a token server's answer may have: real tokens (JWTs
/// with a few scopes) are a few KiB.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;

/// How long a token is used when the server does not say (the token
/// specification's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is refreshed this long before the server says it expires, so
/// that it does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// The authentication a registry asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication with the user's credentials.
    Basic,
    /// A token from `realm`, asked for with `service` (echoed as given)
    /// and the scopes the request needs.
    Bearer {
        realm: url::Url,
        service: Option<String>,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error(
        "its WWW-Authenticate header is {length} bytes long, more than the {MAX_CHALLENGE_BYTES} kiln reads"
    )]
    TooLong { length: usize },
    #[error("its WWW-Authenticate header is not text")]
    NotText,
    #[error("its WWW-Authenticate header cannot be parsed ({0})")]
    Syntax(String),
    #[error("its WWW-Authenticate header asks for {schemes}, and kiln speaks Basic and Bearer")]
    Unsupported { schemes: String },
    #[error("its Bearer challenge names no realm to get a token from")]
    NoRealm,
    #[error("its Bearer challenge's realm {realm:?} is not an http or https URL")]
    BadRealm { realm: String },
}

/// The challenge in a `401`'s `WWW-Authenticate` values (a response may
/// carry several headers, each with several challenges): Bearer when
/// offered, else Basic. `None` when there is no such header.
pub fn parse_challenge<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Result<Challenge, ChallengeError>> {
    let values: Vec<&[u8]> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    Some(parse_values(&values))
}

fn parse_values(values: &[&[u8]]) -> Result<Challenge, ChallengeError> {
    let length: usize = values.iter().map(|v| v.len() + 2).sum();
    if length > MAX_CHALLENGE_BYTES {
        return Err(ChallengeError::TooLong { length });
    }
    let mut basic = false;
    let mut schemes = Vec::new();
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| ChallengeError::NotText)?;
        let challenges = http_auth::parse_challenges(text)
            .map_err(|e| ChallengeError::Syntax(one_line(&e.to_string(), 200)))?;
        for challenge in challenges {
            if challenge.scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    challenge
                        .params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value.to_unescaped())
                };
                let realm = param("realm").ok_or(ChallengeError::NoRealm)?;
                let parsed = url::Url::parse(&realm)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .ok_or_else(|| ChallengeError::BadRealm {
                        realm: one_line(&realm, 200),
                    })?;
                return Ok(Challenge::Bearer {
                    realm: parsed,
                    service: param("service"),
                });
            }
            if challenge.scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            } else {
                schemes.push(one_line(challenge.scheme, 40));
            }
        }
    }
    if basic {
        return Ok(Challenge::Basic);
    }
    Err(ChallengeError::Unsupported {
        schemes: if schemes.is_empty() {
            "nothing".to_string()
        } else {
            schemes.join(", ")
        },
    })
}

/// The URL a token is asked for at: the realm with `service` and each
/// scope (`repository:NAME:ACTIONS`) added to its query.
pub fn token_url(realm: &url::Url, service: Option<&str>, scopes: &[String]) -> url::Url {
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    url
}

/// A token server's answer: the token and how long to use it.
#[derive(Debug, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    pub lifetime: Duration,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token server's answer is not JSON with a token")]
    Json,
    #[error("the token server's answer has an empty token")]
    Empty,
    #[error("the token server's token is not a valid HTTP header value")]
    NotHeaderSafe,
}

#[derive(serde::Deserialize)]
struct TokenBody {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Reads a token server's JSON answer: `token` (or OAuth2's
/// `access_token`), used for `expires_in` seconds less a margin.
pub fn parse_token(body: &[u8]) -> Result<Token, TokenError> {
    let parsed: TokenBody = serde_json::from_slice(body).map_err(|_| TokenError::Json)?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token)
        .ok_or(TokenError::Json)?;
    if value.is_empty() {
        return Err(TokenError::Empty);
    }
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
        return Err(TokenError::NotHeaderSafe);
    }
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(Duration::from_secs(24 * 3600))
        .saturating_sub(EXPIRY_MARGIN);
    Ok(Token { value, lifetime })
}

/// Registry text in a message: one line, at most `limit` characters.
pub fn one_line(text: &str, limit: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= limit {
        flat
    } else {
        let cut: String = flat.chars().take(limit).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: url::Url::parse(realm).unwrap(),
            service: service.map(str::to_string),
        }
    }

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        let table: Vec<(Vec<&str>, Result<Challenge, ChallengeError>)> = vec![
            (
                vec![r#"Basic realm="Registry Realm""#],
                Ok(Challenge::Basic),
            ),
            (
                vec![
                    r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                ],
                Ok(bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                )),
            ),
            // Scheme and parameter names are case-insensitive; a quoted
            // realm may carry escapes.
            (
                vec![r#"bearer REALM="https://r.example/t\"oken", Service=svc"#],
                Ok(bearer("https://r.example/t%22oken", Some("svc"))),
            ),
            // Bearer wins over Basic, in one header or across several.
            (
                vec![r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/token""#],
                Ok(bearer("http://127.0.0.1:1/token", None)),
            ),
            (
                vec![r#"Basic realm="x""#, r#"Bearer realm="https://a.example/""#],
                Ok(bearer("https://a.example/", None)),
            ),
            (
                vec![r#"Negotiate, Basic realm="x""#],
                Ok(Challenge::Basic),
            ),
            (
                vec![r#"Negotiate, NTLM"#],
                Err(ChallengeError::Unsupported {
                    schemes: "Negotiate, NTLM".to_string(),
                }),
            ),
            (
                vec![r#"Bearer service="s""#],
                Err(ChallengeError::NoRealm),
            ),
            (
                vec![r#"Bearer realm="file:///etc/passwd""#],
                Err(ChallengeError::BadRealm {
                    realm: "file:///etc/passwd".to_string(),
                }),
            ),
            (
                vec![r#"Bearer realm="/token""#],
                Err(ChallengeError::BadRealm {
                    realm: "/token".to_string(),
                }),
            ),
            (
                vec![r#"Bearer realm="unterminated"#],
                Err(ChallengeError::Syntax(
                    r#"unexpected EOF in quoted param value at byte 26: Bearer realm="unterminated(HERE-->)"#
                        .to_string(),
                )),
            ),
        ];
        for (values, want) in table {
            let got = parse_challenge(values.iter().map(|v| v.as_bytes())).unwrap();
            assert_eq!(got, want, "{values:?}");
        }
        assert_eq!(parse_challenge(std::iter::empty()), None);
    }

    #[test]
    fn hostile_challenges_are_refused_within_bounds() {
        // One enormous header, and many small ones adding up.
        let huge = format!(
            r#"Bearer realm="https://a.example/{}""#,
            "a".repeat(1 << 20)
        );
        assert_eq!(
            parse_challenge([huge.as_bytes()]).unwrap(),
            Err(ChallengeError::TooLong {
                length: huge.len() + 2
            })
        );
        let small = "Basic realm=\"x\"".to_string();
        let many: Vec<&[u8]> = std::iter::repeat_n(small.as_bytes(), 1000).collect();
        assert_eq!(
            parse_challenge(many).unwrap(),
            Err(ChallengeError::TooLong {
                length: 1000 * (small.len() + 2)
            })
        );
        // Not text, and control bytes.
        assert_eq!(
            parse_challenge([&b"Bearer realm=\"\xff\""[..]]).unwrap(),
            Err(ChallengeError::NotText)
        );
        assert!(matches!(
            parse_challenge([&b"Bearer realm=\"a\x00b\""[..]]).unwrap(),
            Err(ChallengeError::Syntax(_))
        ));
        // Just under the bound, a long realm parses (nothing is cut).
        let long_realm = format!("https://a.example/{}", "b".repeat(7000));
        let value = format!(r#"Bearer realm="{long_realm}""#);
        assert_eq!(
            parse_challenge([value.as_bytes()]).unwrap(),
            Ok(bearer(&long_realm, None))
        );
        // The realm of an error message is cut to one short line.
        let bad = format!("Bearer realm=\"ftp://x/{}\"", "c".repeat(500));
        match parse_challenge([bad.as_bytes()]).unwrap() {
            Err(ChallengeError::BadRealm { realm }) => {
                assert_eq!(realm.chars().count(), 201, "{realm}");
                assert!(realm.ends_with('…'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_urls_carry_service_and_every_scope() {
        let realm = url::Url::parse("https://auth.example/token?account=me").unwrap();
        let url = token_url(
            &realm,
            Some("registry.example"),
            &[
                "repository:team/app:pull,push".to_string(),
                "repository:base:pull".to_string(),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://auth.example/token?account=me&service=registry.example&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository%3Abase%3Apull"
        );
        assert_eq!(
            token_url(&realm, None, &[]).as_str(),
            "https://auth.example/token?account=me"
        );
    }

    #[test]
    fn token_answers() {
        let table: Vec<(&str, Result<Token, TokenError>)> = vec![
            (
                r#"{"token":"abc","expires_in":300}"#,
                Ok(Token {
                    value: "abc".to_string(),
                    lifetime: Duration::from_secs(290),
                }),
            ),
            (
                r#"{"access_token":"xyz"}"#,
                Ok(Token {
                    value: "xyz".to_string(),
                    lifetime: Duration::from_secs(50),
                }),
            ),
            (
                r#"{"token":"","access_token":"xyz","expires_in":1}"#,
                Ok(Token {
                    value: "xyz".to_string(),
                    lifetime: Duration::ZERO,
                }),
            ),
            (
                r#"{"token":"t","expires_in":99999999999}"#,
                Ok(Token {
                    value: "t".to_string(),
                    lifetime: Duration::from_secs(24 * 3600 - 10),
                }),
            ),
            (
                r#"{"token":"a\r\nX-Injected: 1"}"#,
                Err(TokenError::NotHeaderSafe),
            ),
            (r#"{"access_token":""}"#, Err(TokenError::Empty)),
            (r#"{"expires_in":3}"#, Err(TokenError::Json)),
            ("<html>login</html>", Err(TokenError::Json)),
        ];
        for (body, want) in table {
            assert_eq!(parse_token(body.as_bytes()), want, "{body}");
        }
    }
}
