//! Airflow's connections for notifications, read as its providers read them: the
//! `slack_webhook` connection's URL and the `smtp` connection's settings.

use std::time::Duration;

use serde_json::Value;

use crate::NotifyError;

/// The webhook URL a Slack webhook connection holds (Airflow's `SlackWebhookHook`): the
/// password is the token (`T000/B000/XXX`) or a whole URL; the host defaults to
/// `hooks.slack.com/services`, the scheme to `https`.
pub fn slack_webhook_url(
    schema: Option<&str>,
    host: Option<&str>,
    password: Option<&str>,
) -> Result<String, NotifyError> {
    let token = password
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            NotifyError::Config(
                "the Slack webhook connection has no password (the webhook token or URL)"
                    .to_owned(),
            )
        })?;
    if token.starts_with("https://") || token.starts_with("http://") {
        return Ok(token.to_owned());
    }
    let host = host
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or("hooks.slack.com/services");
    let base = if host.starts_with("https://") || host.starts_with("http://") {
        host.to_owned()
    } else {
        let scheme = schema.filter(|s| !s.is_empty()).unwrap_or("https");
        format!("{scheme}://{host}")
    };
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        token.trim_start_matches('/')
    ))
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (Airflow's default, `SMTP_SSL`; port 465).
    Tls,
    /// Plain, then `STARTTLS`, required (`disable_ssl: true`; port 587).
    StartTls,
    /// No encryption at all (`disable_ssl` and `disable_tls`; port 25): local relays only.
    Plain,
}

/// Where and how email is sent: an SMTP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub login: Option<String>,
    pub password: Option<String>,
    /// The sender address.
    pub from: String,
    pub timeout: Duration,
}

impl SmtpSettings {
    /// Reads an Airflow `smtp` connection: `host`, `port`, `login`, `password`, and in
    /// `extra`: `from_email`, `disable_ssl`, `disable_tls`, `timeout` (seconds). The sender is
    /// `from_email`, else the login when it is an address.
    pub fn from_connection(
        host: Option<&str>,
        port: Option<u16>,
        login: Option<&str>,
        password: Option<&str>,
        extra: &Value,
    ) -> Result<SmtpSettings, NotifyError> {
        let host = host
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| NotifyError::Config("the SMTP connection has no host".to_owned()))?;
        let flag = |key: &str| match extra.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1"),
            _ => false,
        };
        let security = match (flag("disable_ssl"), flag("disable_tls")) {
            (false, _) => SmtpSecurity::Tls,
            (true, false) => SmtpSecurity::StartTls,
            (true, true) => SmtpSecurity::Plain,
        };
        let port = port.unwrap_or(match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        });
        let login = login.filter(|l| !l.is_empty()).map(str::to_owned);
        let from = extra
            .get("from_email")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| login.clone().filter(|l| l.contains('@')))
            .ok_or_else(|| {
                NotifyError::Config(
                    "the SMTP connection names no sender: set `from_email` in its extra".to_owned(),
                )
            })?;
        let timeout = extra
            .get("timeout")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(Duration::from_secs(30), Duration::from_secs);
        Ok(SmtpSettings {
            host: host.to_owned(),
            port,
            security,
            login,
            password: password.map(str::to_owned),
            from,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slack_urls_as_airflow_builds_them() {
        assert_eq!(
            slack_webhook_url(None, None, Some("T0/B0/xyz")).unwrap(),
            "https://hooks.slack.com/services/T0/B0/xyz"
        );
        assert_eq!(
            slack_webhook_url(None, Some("https://example.test/hooks/"), Some("/abc")).unwrap(),
            "https://example.test/hooks/abc"
        );
        assert_eq!(
            slack_webhook_url(Some("http"), Some("127.0.0.1:9/x"), Some("t")).unwrap(),
            "http://127.0.0.1:9/x/t"
        );
        assert_eq!(
            slack_webhook_url(None, Some("ignored"), Some("https://h.test/full")).unwrap(),
            "https://h.test/full"
        );
        assert!(slack_webhook_url(None, Some("h"), None).is_err());
    }

    #[test]
    fn smtp_connections_as_airflow_reads_them() {
        let s = SmtpSettings::from_connection(
            Some("mail.test"),
            None,
            Some("bot@x.test"),
            Some("pw"),
            &json!({}),
        )
        .unwrap();
        assert_eq!((s.port, s.security), (465, SmtpSecurity::Tls));
        assert_eq!(s.from, "bot@x.test");
        let s = SmtpSettings::from_connection(
            Some("mail.test"),
            None,
            None,
            None,
            &json!({"disable_ssl": "true", "from_email": "a@b.c"}),
        )
        .unwrap();
        assert_eq!((s.port, s.security), (587, SmtpSecurity::StartTls));
        let s = SmtpSettings::from_connection(
            Some("localhost"),
            Some(2525),
            None,
            None,
            &json!({"disable_ssl": true, "disable_tls": true, "from_email": "a@b.c", "timeout": 5}),
        )
        .unwrap();
        assert_eq!((s.port, s.security), (2525, SmtpSecurity::Plain));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert!(SmtpSettings::from_connection(Some("h"), None, None, None, &json!({})).is_err());
        assert!(SmtpSettings::from_connection(None, None, None, None, &json!({})).is_err());
    }
}
