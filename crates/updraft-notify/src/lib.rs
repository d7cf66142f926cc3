//! Delivering notifications: the one job of this crate.
//!
//! A [`Delivery`] is a notification ready to send: a webhook's JSON POST, a Slack message or
//! an email, its templates already rendered and its connection already resolved by the
//! caller. [`Notifier::send`] spawns it as a tokio task of its own and retries it with
//! backoff ([`RetryPolicy`]); the caller never waits for it, and a failure is only logged,
//! masked with the process's mask (`updraft_secrets::mask::global`).
//!
//! - [`Event`]: what happened (a try failing, retrying, succeeding, starting; a run ending),
//!   the JSON body of a webhook.
//! - [`slack_webhook_url`] and [`SmtpSettings::from_connection`]: Airflow's `slack_webhook`
//!   and `smtp` connections read as Airflow's providers read them.

mod delivery;
mod event;
mod smtp;

pub use delivery::{Delivery, Notifier, NotifyError, RetryPolicy};
pub use event::{Event, EventKind, default_subject, default_text, plain_body};
pub use smtp::{SmtpSecurity, SmtpSettings, slack_webhook_url};
