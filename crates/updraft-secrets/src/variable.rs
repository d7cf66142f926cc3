//! Airflow's variable: a key, a value (text; `var.json` reads it as JSON) and a description.

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
}

impl Variable {
    /// Whether the value is masked wherever it is shown: its key looks sensitive
    /// ([`crate::is_sensitive_name`]).
    pub fn is_sensitive(&self) -> bool {
        crate::is_sensitive_name(&self.key)
    }
}

/// Prints the value only when the key does not look sensitive.
impl std::fmt::Debug for Variable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value: &str = if self.is_sensitive() {
            crate::MASK
        } else {
            &self.value
        };
        f.debug_struct("Variable")
            .field("key", &self.key)
            .field("value", &value)
            .finish()
    }
}
