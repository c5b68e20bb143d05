//! Retrying registry operations with exponential backoff
//! (`--push-retry`, `--push-retry-initial-delay`, `--push-retry-max-delay`,
//! `--image-download-retry`).

use std::future::Future;
use std::time::Duration;

use super::error::RegistryError;

/// How often and how patiently to repeat a failed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one; `0` means try once.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub initial_delay: Duration,
    /// Upper bound for the wait between two attempts.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry):
    /// `initial_delay * 2^(retry-1)`, capped at `max_delay`.
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.initial_delay
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not
/// [retryable](RegistryError::is_retryable), or has failed `policy.retries + 1`
/// times. `flag` names the option that raises the retry count, for the
/// message a user sees when one attempt was all they allowed.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    flag: &str,
    mut operation: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let err = match operation().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !err.is_retryable() {
            return Err(err);
        }
        if attempt > policy.retries {
            return Err(if attempt == 1 {
                with_retry_hint(err, flag)
            } else {
                RegistryError::RetriesExhausted {
                    attempts: attempt,
                    last: Box::new(err),
                }
            });
        }
        let delay = policy.delay(attempt);
        tracing::warn!(
            "{err}; retrying in {delay:?} (retry {attempt} of {})",
            policy.retries
        );
        tokio::time::sleep(delay).await;
    }
}

/// A transient failure with retries disabled: say how to enable them.
fn with_retry_hint(err: RegistryError, flag: &str) -> RegistryError {
    match err {
        RegistryError::Status {
            operation,
            status,
            detail,
            hint,
        } if hint.is_empty() => RegistryError::Status {
            operation,
            status,
            detail,
            hint: format!("; the failure may be temporary, retry with {flag}=N"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(3),
        }
    }

    fn status(status: u16) -> RegistryError {
        RegistryError::Status {
            operation: "pushing manifest to r/app:1".to_string(),
            status,
            detail: String::new(),
            hint: String::new(),
        }
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = RetryPolicy {
            retries: 10,
            initial_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(30_000),
        };
        let delays: Vec<u128> = (1..=7).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(p.delay(200), Duration::from_millis(30_000));
    }

    /// Fails with `failures` in order, then succeeds; counts the attempts.
    async fn run(retries: u32, failures: Vec<u16>) -> (Result<&'static str, RegistryError>, u32) {
        let calls = AtomicU32::new(0);
        let result = with_retries(policy(retries), "--push-retry", || {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let outcome = failures.get(n).map(|code| status(*code));
            async move {
                match outcome {
                    Some(err) => Err(err),
                    None => Ok("done"),
                }
            }
        })
        .await;
        (result, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let (result, calls) = run(3, vec![503, 503]).await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_allowed_retries() {
        let (result, calls) = run(2, vec![503, 502, 500, 500]).await;
        assert_eq!(calls, 3);
        assert_eq!(
            result.unwrap_err().to_string(),
            "pushing manifest to r/app:1: HTTP 500 Internal Server Error (gave up after 3 attempts)"
        );
    }

    #[tokio::test]
    async fn without_retries_the_error_says_how_to_enable_them() {
        let (result, calls) = run(0, vec![503]).await;
        assert_eq!(calls, 1);
        assert_eq!(
            result.unwrap_err().to_string(),
            "pushing manifest to r/app:1: HTTP 503 Service Unavailable; the failure may be temporary, retry with --push-retry=N"
        );
    }

    #[tokio::test]
    async fn never_retries_client_errors() {
        for code in [401, 403, 404] {
            let (result, calls) = run(5, vec![code]).await;
            assert_eq!(calls, 1, "HTTP {code}");
            assert_eq!(result.unwrap_err().status(), Some(code));
        }
    }
}
