//! Users, their grants, and the audit log (Airflow's event log): the types and the
//! [`UserStore`] contract. Both backends implement it once, in `backend.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use updraft_auth::Grant;

use crate::Result;

/// A user as recorded. Local users have a password hash; users who sign in through OIDC or a
/// trusted proxy (IAP) have none and are recorded at their first sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// argon2 PHC string; `None` for users who sign in elsewhere.
    pub password_hash: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
    /// Where the user signs in: `local`, `oidc` or `proxy`.
    pub source: String,
    /// Sorted by tenant (every tenant first), then role.
    pub grants: Vec<Grant>,
}

/// A user to record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: Option<String>,
    /// `local`, `oidc` or `proxy`.
    pub source: String,
}

/// One audited write: who did what, when, to which object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewEvent {
    /// When it was done; `None`: now.
    pub when: Option<DateTime<Utc>>,
    pub username: String,
    /// What was done, as Airflow names it (`trigger`, `clear`, `patch_dag`, `create_user`, ...).
    pub event: String,
    /// The tenant of the object; `None` for objects of no tenant (users, shared pools).
    pub tenant: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    /// Free-form details as JSON text, with secrets already masked by the caller.
    pub extra: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub id: i64,
    pub when: DateTime<Utc>,
    pub username: String,
    pub event: String,
    pub tenant: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    pub extra: Option<String>,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    /// Only the entry with this id.
    pub id: Option<i64>,
    /// Only entries about these tenants' objects (plus, with `include_untenanted`, entries of
    /// no tenant); `None`: every entry.
    pub tenants: Option<Vec<String>>,
    pub include_untenanted: bool,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub event: Option<String>,
    pub username: Option<String>,
    /// Only entries at or after this time.
    pub after: Option<DateTime<Utc>>,
    /// Only entries strictly before this time.
    pub before: Option<DateTime<Utc>>,
    /// The page size (0: an empty page, with the total).
    pub limit: u32,
    pub offset: u32,
}

/// Users, grants and the audit log.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Record a new user with its grants. An existing username is [`crate::StoreError::Conflict`].
    async fn create_user(&self, user: &NewUser, grants: &[Grant]) -> Result<()>;
    /// Record a user who signed in through OIDC or a proxy: create it, or update its names
    /// and email, and replace its grants with `grants` (roles re-synced at every sign-in).
    /// Returns the user as now recorded.
    async fn sync_external_user(&self, user: &NewUser, grants: &[Grant]) -> Result<UserRow>;
    async fn user(&self, username: &str) -> Result<Option<UserRow>>;
    /// Every user, by username.
    async fn users(&self) -> Result<Vec<UserRow>>;
    /// Delete a user and its grants; false when there was none.
    async fn delete_user(&self, username: &str) -> Result<bool>;
    /// Give a user a grant; false when it held it already. Unknown user: NotFound.
    async fn add_grant(&self, username: &str, grant: &Grant) -> Result<bool>;
    /// Take a grant away; false when the user did not hold it. Unknown user: NotFound.
    async fn remove_grant(&self, username: &str, grant: &Grant) -> Result<bool>;
    /// Replace a local user's password hash. Unknown user: NotFound.
    async fn set_password_hash(&self, username: &str, password_hash: &str) -> Result<()>;
    async fn record_login(&self, username: &str, at: DateTime<Utc>) -> Result<()>;
    /// Append to the audit log.
    async fn record_event(&self, event: &NewEvent) -> Result<i64>;
    /// A page of the audit log, newest first, with the total matching.
    async fn events(&self, query: &EventQuery) -> Result<(Vec<EventRow>, u64)>;
}
