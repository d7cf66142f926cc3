//! Sign-in through an identity provider (OIDC, [`oidc`](super::oidc)) or a trusted proxy that
//! request (Google IAP, [`iap`](super::iap)). Both verify a JWT against the issuer's published keys
//! ([`jwks`](super::jwks)), map its claims to grants (`updraft_auth::claims`), and record the user with
//! those grants, replacing the ones it had ([`SignInStore`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use updraft_auth::Grant;
use updraft_store::{NewUser, StoreError, UserRow, UserStore};

/// Where a user signs in, as recorded in the user's `source`.
pub const SOURCE_OIDC: &str = "oidc";
pub const SOURCE_PROXY: &str = "proxy";

/// Records users who signed in elsewhere.
#[async_trait]
pub trait SignInStore: Send + Sync {
    /// Create or update `user` with exactly `grants`, and note the sign-in. A user of the same
    /// name who signs in another way (a local user `admin`, say) is never taken over:
    /// [`SyncError::NameTaken`]; a deactivated user stays out: [`SyncError::Inactive`].
    async fn sign_in(&self, user: &NewUser, grants: &[Grant]) -> Result<UserRow, SyncError>;
}

#[async_trait]
impl<U: UserStore + ?Sized> SignInStore for Arc<U> {
    async fn sign_in(&self, user: &NewUser, grants: &[Grant]) -> Result<UserRow, SyncError> {
        if let Some(existing) = self.user(&user.username).await? {
            if existing.source != user.source {
                return Err(SyncError::NameTaken {
                    username: user.username.clone(),
                    signs_in: existing.source,
                });
            }
            if !existing.active {
                return Err(SyncError::Inactive(user.username.clone()));
            }
        }
        let row = self.sync_external_user(user, grants).await?;
        self.record_login(&user.username, Utc::now()).await?;
        Ok(row)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "the user name `{username}` belongs to a user who signs in another way ({signs_in}); \
         an administrator can rename or delete that user"
    )]
    NameTaken { username: String, signs_in: String },
    #[error("the user `{0}` has been deactivated in updraft")]
    Inactive(String),
    #[error("the user could not be recorded: {0}")]
    Store(#[from] StoreError),
}

/// 32 random bytes, URL-safe base64 without padding: for state, nonce and PKCE verifiers.
pub(crate) fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
