//! Placeholder: being written on the `mutations` branch.

use super::Policy;
use crate::config::{MutationSummary, SecurityDefaultsConfig};

/// The `security-defaults` policy.
#[derive(Debug, Clone)]
pub struct SecurityDefaults {
    config: SecurityDefaultsConfig,
    summary: MutationSummary,
}

impl SecurityDefaults {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: SecurityDefaultsConfig, summary: MutationSummary) -> Self {
        SecurityDefaults { config, summary }
    }
}

impl Policy for SecurityDefaults {
    fn name(&self) -> &str {
        let _ = (&self.config, self.summary);
        "security-defaults"
    }
}
