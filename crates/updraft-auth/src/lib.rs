//! Who is calling and what they may do.
//!
//! - [`Role`] and [`Grant`]: Airflow's roles (Public, Viewer, User, Op, Admin), held per tenant
//!   (`User@team_a`) or for every tenant (`Viewer`, `Viewer@*`).
//! - [`Identity`]: an authenticated caller and its grants.
//! - [`decide`]: the one authorization decision. Every API and UI handler reaches it (through
//!   the server's `authorize`); it is pure, so its rules are tested here without a server.
//! - [`password`]: argon2 hashing of local users' passwords.
//! - [`claims`]: grants from an identity provider's token claims, through a mapping table.
//!
//! Nothing here does I/O: authentication methods (sessions, tokens, OIDC, IAP) turn requests
//! into an [`Identity`] elsewhere.

pub mod claims;
mod grant;
mod identity;
pub mod password;
mod policy;

pub use grant::{Grant, GrantParseError, Role};
pub use identity::Identity;
pub use policy::{Action, Decision, Resource, decide};
