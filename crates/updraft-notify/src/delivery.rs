//! Sending a [`Delivery`] with retries, as a tokio task of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use updraft_secrets::mask::mask_global;

use crate::smtp::{SmtpSecurity, SmtpSettings};

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The notifier or its connection cannot work as configured: not retried.
    #[error("{0}")]
    Config(String),
    /// The receiver answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl NotifyError {
    /// Whether another try may succeed: not for a configuration error, nor for a 4xx other
    /// than 408 and 429 (the receiver refuses the request itself).
    fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Config(_) => false,
            NotifyError::Status { status, .. } => {
                !(400..500).contains(status) || matches!(status, 408 | 429)
            }
            NotifyError::Smtp(e) => !e.is_permanent(),
            NotifyError::Http(_) => true,
        }
    }
}

/// A notification ready to send: templates rendered, connection resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A JSON POST of `body` (the event) to `url`.
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
        body: serde_json::Value,
    },
    /// A Slack incoming-webhook message: `{"text": text}` posted to `url`.
    Slack { url: String, text: String },
    /// A plain-text email.
    Email {
        smtp: SmtpSettings,
        to: Vec<String>,
        subject: String,
        body: String,
    },
}

impl Delivery {
    /// What the delivery is, for log lines: its kind and where it goes (no credentials, no
    /// URL path, which may hold a token).
    pub fn describe(&self) -> String {
        let host = |url: &str| {
            reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned())
        };
        match self {
            Delivery::Webhook { url, .. } => format!("webhook to {}", host(url)),
            Delivery::Slack { url, .. } => format!("slack message to {}", host(url)),
            Delivery::Email { smtp, to, .. } => {
                format!("email to {} via {}", to.join(", "), smtp.host)
            }
        }
    }
}

/// How often and how soon a delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least one).
    pub tries: u32,
    /// The wait after the first failure; doubled after each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The limit of one try (connect, send, answer).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 tries, 1 s then 2 s apart, 30 s each.
    fn default() -> Self {
        RetryPolicy {
            tries: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `n` (1-based).
    pub fn delay_after(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Sends deliveries. Cheap to clone (one HTTP client shared).
#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl Notifier {
    pub fn new(policy: RetryPolicy) -> Result<Notifier, NotifyError> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Notifier { http, policy })
    }

    /// Sends `delivery` on a tokio task of its own, retried per the policy; the handle is
    /// only for callers that want the outcome (the scheduler drops it). A failure is logged,
    /// masked; `context` (the event, say) prefixes the log line.
    pub fn send(&self, delivery: Delivery, context: String) -> JoinHandle<Result<u32, String>> {
        let notifier = self.clone();
        tokio::spawn(async move {
            let outcome = notifier.deliver(&delivery).await;
            let to = mask_global(&delivery.describe());
            match outcome {
                Ok(tries) => {
                    debug!(%context, %to, tries, "notification sent");
                    Ok(tries)
                }
                Err(e) => {
                    let error = mask_global(&e.to_string());
                    warn!(%context, %to, %error, "notification not delivered");
                    Err(error)
                }
            }
        })
    }

    /// Delivers with retries, waiting; the number of tries it took.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<u32, NotifyError> {
        let tries = self.policy.tries.max(1);
        let mut n = 1;
        loop {
            match self.deliver_once(delivery).await {
                Ok(()) => return Ok(n),
                Err(e) if n < tries && e.is_retryable() => {
                    debug!(error = %mask_global(&e.to_string()), try_number = n, "notification failed; retrying");
                    tokio::time::sleep(self.policy.delay_after(n)).await;
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn deliver_once(&self, delivery: &Delivery) -> Result<(), NotifyError> {
        match delivery {
            Delivery::Webhook { url, headers, body } => {
                let mut request = self.http.post(url).json(body);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                check(request.send().await?).await
            }
            Delivery::Slack { url, text } => {
                let body = serde_json::json!({ "text": text });
                check(self.http.post(url).json(&body).send().await?).await
            }
            Delivery::Email {
                smtp,
                to,
                subject,
                body,
            } => send_email(smtp, to, subject, body, self.policy.timeout).await,
        }
    }
}

async fn check(response: reqwest::Response) -> Result<(), NotifyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > 200 {
        let mut end = 200;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    Err(NotifyError::Status {
        status: status.as_u16(),
        body,
    })
}

async fn send_email(
    smtp: &SmtpSettings,
    to: &[String],
    subject: &str,
    body: &str,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| NotifyError::Config(format!("{what}: {e}"));
    let mut message = Message::builder()
        .from(smtp.from.parse().map_err(|e| bad("sender", &e))?)
        .subject(subject);
    for address in to {
        message = message.to(address
            .parse()
            .map_err(|e| bad(&format!("recipient {address:?}"), &e))?);
    }
    let message = message
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| bad("message", &e))?;
    let builder = match smtp.security {
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(smtp.timeout.min(timeout)));
    if let Some(login) = &smtp.login {
        builder = builder.credentials(Credentials::new(
            login.clone(),
            smtp.password.clone().unwrap_or_default(),
        ));
    }
    builder.build().send(message).await?;
    Ok(())
}
