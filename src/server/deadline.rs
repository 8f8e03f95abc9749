//! The request's deadline, from the API server's `?timeout=` parameter.
//!
//! The API server stops waiting at `timeout` and applies the webhook's failurePolicy, so an
//! answer after it is as good as none. kadmit answers by the deadline minus a margin that
//! covers writing the response and the network.

use std::time::Duration;

/// The API server's default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server's maximum `timeoutSeconds`; longer values are clamped to it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `timeout` from a query string, such as `timeout=10s`.
///
/// Missing means the default; a value that is not a positive duration is an error the client
/// must hear about, since it would otherwise get an answer it stopped waiting for.
pub fn timeout_from_query(query: Option<&str>) -> Result<Duration, String> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
    else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let timeout = humantime::parse_duration(value).map_err(|e| {
        format!("query parameter timeout={value} is not a duration such as 10s: {e}")
    })?;
    if timeout.is_zero() {
        return Err(format!(
            "query parameter timeout={value} must be more than zero"
        ));
    }
    Ok(timeout.min(MAX_TIMEOUT))
}

/// How long kadmit gives itself to answer a request with `timeout`: a tenth is kept in
/// reserve, at least 50 ms and at most one second.
pub fn budget(timeout: Duration) -> Duration {
    let margin = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    timeout.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_api_servers_spelling() {
        assert_eq!(timeout_from_query(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(timeout_from_query(Some("a=b")), Ok(DEFAULT_TIMEOUT));
        assert_eq!(
            timeout_from_query(Some("timeout=5s")),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(
            timeout_from_query(Some("x=1&timeout=1500ms")),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(timeout_from_query(Some("timeout=10m")), Ok(MAX_TIMEOUT));
        assert!(
            timeout_from_query(Some("timeout=soon"))
                .unwrap_err()
                .contains("timeout=soon")
        );
        assert!(timeout_from_query(Some("timeout=0s")).is_err());
    }

    #[test]
    fn keeps_a_margin() {
        assert_eq!(budget(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(budget(Duration::from_secs(1)), Duration::from_millis(900));
        assert_eq!(budget(Duration::from_secs(30)), Duration::from_secs(29));
        assert_eq!(
            budget(Duration::from_millis(200)),
            Duration::from_millis(150)
        );
    }
}
