//! The OCI distribution protocol over kiln's own HTTP client: one
//! [`Endpoint`] per registry and direction, holding the `reqwest::Client`
//! that carries the TLS settings of kaniko's flags (extra CAs, skipped
//! verification, the client certificate of `--registry-client-cert`), what
//! the registry asked for in its last challenge, and the tokens it gave.
//!
//! Every request kiln makes to a registry, its token server included,
//! leaves through here. A request goes out with the credentials the
//! registry asked for last time; a `401` that asks for something not yet
//! tried (Basic credentials, a Bearer token for the request's scopes) is
//! answered and the request sent once more. The Authorization header only
//! goes to the registry itself: never to an upload location or a redirect
//! on another host (reqwest drops it on a cross-host redirect).
//!
//! The answers are handed back as they are; what they mean for a build
//! (digests, sizes, bounds, progress, retries) is `client.rs`'s business.

pub mod challenge;
mod diagnose;

pub(crate) use challenge::one_line;
pub(crate) use diagnose::asks_for_client_certificate;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::RegistryAuth;
use challenge::{
    Challenge, ChallengeError, MAX_TOKEN_RESPONSE_BYTES, TokenError, parse_challenge, parse_token,
    token_url,
};

/// The most of an error answer's body kept for the message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A failed exchange with a registry, before it is worded for the user
/// (`RegistryError`, by `error::classify`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The registry answered with a status that is not success; `body`
    /// holds the first [`MAX_ERROR_BODY`] bytes of its answer.
    #[error("HTTP {status}")]
    Status { status: u16, body: String },
    /// The token server refused to give a token.
    #[error("the token server {realm} answered HTTP {status}")]
    TokenRefused {
        realm: String,
        status: u16,
        body: String,
    },
    /// No answer: refused, reset, timed out, TLS failure; or a body cut.
    #[error(transparent)]
    Request(#[from] reqwest::Error),
    #[error("the registry's authentication challenge cannot be answered: {0}")]
    Challenge(#[from] ChallengeError),
    #[error("the token server {realm}: {source}")]
    Token {
        realm: String,
        #[source]
        source: TokenError,
    },
    #[error(
        "the registry asks for a token from {realm}, plain HTTP; kiln does not send credentials for an HTTPS registry over plain HTTP"
    )]
    PlainHttpRealm { realm: String },
    #[error("the token server {realm} answered more than {limit} bytes")]
    TokenTooLarge { realm: String, limit: usize },
    #[error("the registry's upload location {location:?} is not a URL")]
    Location { location: String },
}

/// What the registry asked for, and the tokens it gave.
#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by the scopes they were asked for, with the instant
    /// they stop being used.
    tokens: HashMap<String, (String, Instant)>,
}

/// One registry, in one direction (its TLS settings differ by direction).
pub(crate) struct Endpoint {
    /// `https://host[:port]/` (or `http://`): the registry's origin.
    base: url::Url,
    http: reqwest::Client,
    state: Mutex<AuthState>,
}

/// The scope a request needs a token for (the token specification's
/// `repository:NAME:ACTIONS`).
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// See [`pull_scope`]: pushing also reads (blob checks, existing tags).
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

impl Endpoint {
    /// The endpoint of `registry` (`host[:port]`) over `http`, which was
    /// built with this registry's TLS settings.
    pub(crate) fn new(
        registry: &str,
        plain_http: bool,
        http: reqwest::Client,
    ) -> Result<Endpoint, url::ParseError> {
        let scheme = if plain_http { "http" } else { "https" };
        let base = url::Url::parse(&format!("{scheme}://{registry}/"))?;
        Ok(Endpoint {
            base,
            http,
            state: Mutex::new(AuthState::default()),
        })
    }

    /// `/v2/<repository>/<rest>` on the registry. Repository names, tags
    /// and digests are made of URL-safe characters (a reference that
    /// parsed has no others).
    pub(crate) fn url(&self, repository: &str, rest: &str) -> url::Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{repository}/{rest}"));
        url
    }

    /// Whether `url` is on the registry itself (same scheme, host, port).
    pub(crate) fn is_own(&self, url: &url::Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// A `Location` the registry answered (relative or absolute), as a URL.
    pub(crate) fn location(&self, response: &Response) -> Result<url::Url, TransportError> {
        let value = response
            .headers()
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        response
            .url()
            .join(&value)
            .ok()
            .filter(|_| !value.is_empty())
            .ok_or(TransportError::Location {
                location: one_line(&value, 200),
            })
    }

    /// Sends `method url` (with what `decorate` adds) carrying the
    /// credentials the registry asked for; after a `401` that asks for
    /// something not yet sent, sends it once more. The answer is returned
    /// whatever its status. `decorate` is called once per attempt, so a
    /// body must be cheap to rebuild (use [`Endpoint::send_once`] for a
    /// streamed body).
    pub(crate) async fn send(
        &self,
        auth: &RegistryAuth,
        scopes: &[String],
        method: Method,
        url: &url::Url,
        decorate: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, TransportError> {
        let sent = self.authorization(auth, scopes, url);
        let request = self.http.request(method.clone(), url.clone());
        let response = decorate(authorize(request, sent.as_ref())).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let values: Vec<&[u8]> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let Some(challenge) = parse_challenge(values) else {
            return Ok(response);
        };
        let challenge = challenge?;
        self.answer(&challenge, auth, scopes).await?;
        let now = self.authorization(auth, scopes, url);
        if now.is_none() || now == sent {
            return Ok(response);
        }
        let request = self.http.request(method, url.clone());
        Ok(decorate(authorize(request, now.as_ref())).send().await?)
    }

    /// Sends one request with the credentials the registry asked for
    /// before, never twice: for a streamed body, after a request of the
    /// same scopes has settled the authentication.
    pub(crate) async fn send_once(
        &self,
        auth: &RegistryAuth,
        scopes: &[String],
        method: Method,
        url: &url::Url,
        decorate: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, TransportError> {
        let sent = self.authorization(auth, scopes, url);
        let request = self.http.request(method, url.clone());
        Ok(decorate(authorize(request, sent.as_ref())).send().await?)
    }

    /// The Authorization header for a request to `url` needing `scopes`,
    /// from what the registry asked for last.
    fn authorization(
        &self,
        auth: &RegistryAuth,
        scopes: &[String],
        url: &url::Url,
    ) -> Option<HeaderValue> {
        if !self.is_own(url) {
            return None;
        }
        if let RegistryAuth::Bearer(token) = auth {
            // An identity token from a credential helper, offered as is.
            return bearer_header(token);
        }
        let state = self.state.lock().ok()?;
        match state.challenge.as_ref()? {
            Challenge::Basic => match auth {
                RegistryAuth::Basic(user, password) => basic_header(user, password),
                _ => None,
            },
            Challenge::Bearer { .. } => {
                let (token, until) = state.tokens.get(&scopes.join(" "))?;
                (Instant::now() < *until)
                    .then(|| bearer_header(token))
                    .flatten()
            }
        }
    }

    /// Remembers `challenge`; for a Bearer challenge, gets a token for
    /// `scopes` from its realm.
    async fn answer(
        &self,
        challenge: &Challenge,
        auth: &RegistryAuth,
        scopes: &[String],
    ) -> Result<(), TransportError> {
        if let Ok(mut state) = self.state.lock() {
            state.challenge = Some(challenge.clone());
        }
        let Challenge::Bearer { realm, service } = challenge else {
            return Ok(());
        };
        if matches!(auth, RegistryAuth::Bearer(_)) {
            return Ok(());
        }
        let url = token_url(realm, service.as_deref(), scopes);
        let mut request = self.http.get(url);
        if let RegistryAuth::Basic(user, password) = auth {
            if realm.scheme() == "http" && self.base.scheme() == "https" {
                return Err(TransportError::PlainHttpRealm {
                    realm: realm.to_string(),
                });
            }
            request = authorize(request, basic_header(user, password).as_ref());
        }
        let realm_text = || {
            let mut shown = realm.clone();
            shown.set_query(None);
            shown.to_string()
        };
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(TransportError::TokenRefused {
                realm: realm_text(),
                status: status.as_u16(),
                body: error_body(response).await,
            });
        }
        let body = read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
            .await?
            .ok_or_else(|| TransportError::TokenTooLarge {
                realm: realm_text(),
                limit: MAX_TOKEN_RESPONSE_BYTES,
            })?;
        let token = parse_token(&body).map_err(|source| TransportError::Token {
            realm: realm_text(),
            source,
        })?;
        let until = Instant::now() + token.lifetime;
        if let Ok(mut state) = self.state.lock() {
            state.tokens.insert(scopes.join(" "), (token.value, until));
        }
        Ok(())
    }
}

fn authorize(request: RequestBuilder, value: Option<&HeaderValue>) -> RequestBuilder {
    match value {
        Some(value) => request.header(header::AUTHORIZATION, value.clone()),
        None => request,
    }
}

fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn basic_header(user: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `response` as it is when its status is one of `ok`; else the status
/// and the start of the body, as an error.
pub(crate) async fn expect(
    response: Response,
    ok: &[StatusCode],
) -> Result<Response, TransportError> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    Err(status_error(response).await)
}

/// The failure an unwanted answer stands for: its status and the start of
/// its body.
pub(crate) async fn status_error(response: Response) -> TransportError {
    let status = response.status().as_u16();
    TransportError::Status {
        status,
        body: error_body(response).await,
    }
}

/// The first [`MAX_ERROR_BODY`] bytes of an error answer, as text; a body
/// that fails midway gives what came.
pub(crate) async fn error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The whole body when it is at most `limit` bytes, `None` as soon as it
/// is longer (the rest is never read).
pub(crate) async fn read_bounded(
    mut response: Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, TransportError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        crate::tls::install_crypto_provider();
        Endpoint::new("reg.example:5000", false, reqwest::Client::new()).unwrap()
    }

    fn header_text(value: Option<HeaderValue>) -> Option<String> {
        value.map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn urls_are_on_the_registry() {
        let ep = endpoint();
        assert_eq!(
            ep.url("team/app", "manifests/1.0").as_str(),
            "https://reg.example:5000/v2/team/app/manifests/1.0"
        );
        let plain = Endpoint::new("127.0.0.1:5000", true, reqwest::Client::new()).unwrap();
        assert_eq!(
            plain.url("app", "blobs/uploads/").as_str(),
            "http://127.0.0.1:5000/v2/app/blobs/uploads/"
        );
    }

    #[test]
    fn credentials_go_where_and_as_the_registry_asked() {
        let ep = endpoint();
        let basic = RegistryAuth::Basic("user".to_string(), "pass".to_string());
        let scopes = vec![push_scope("app")];
        let own = ep.url("app", "blobs/uploads/");
        let elsewhere = url::Url::parse("https://storage.example/upload/1").unwrap();
        // Nothing asked yet: nothing sent.
        assert_eq!(header_text(ep.authorization(&basic, &scopes, &own)), None);
        ep.state.lock().unwrap().challenge = Some(Challenge::Basic);
        // "dXNlcjpwYXNz" is base64("user:pass").
        assert_eq!(
            header_text(ep.authorization(&basic, &scopes, &own)).as_deref(),
            Some("Basic dXNlcjpwYXNz")
        );
        assert_eq!(
            header_text(ep.authorization(&basic, &scopes, &elsewhere)),
            None
        );
        assert_eq!(
            header_text(ep.authorization(&RegistryAuth::Anonymous, &scopes, &own)),
            None
        );
        // A Bearer challenge: the token of the same scopes, while fresh.
        {
            let mut state = ep.state.lock().unwrap();
            state.challenge = Some(Challenge::Bearer {
                realm: url::Url::parse("https://auth.example/token").unwrap(),
                service: None,
            });
            let later = Instant::now() + std::time::Duration::from_secs(60);
            state
                .tokens
                .insert(push_scope("app"), ("tok".to_string(), later));
            state
                .tokens
                .insert(pull_scope("old"), ("stale".to_string(), Instant::now()));
        }
        assert_eq!(
            header_text(ep.authorization(&basic, &scopes, &own)).as_deref(),
            Some("Bearer tok")
        );
        assert_eq!(
            header_text(ep.authorization(&basic, &[pull_scope("app")], &own)),
            None
        );
        assert_eq!(
            header_text(ep.authorization(&basic, &[pull_scope("old")], &own)),
            None
        );
        // An identity token goes as it is, to the registry only.
        let identity = RegistryAuth::Bearer("id-token".to_string());
        assert_eq!(
            header_text(ep.authorization(&identity, &scopes, &own)).as_deref(),
            Some("Bearer id-token")
        );
        assert_eq!(
            header_text(ep.authorization(&identity, &scopes, &elsewhere)),
            None
        );
    }
}
