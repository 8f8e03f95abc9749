//! Placeholder: being written on the `mutations` branch.

use super::Policy;
use crate::config::{DefaultResourcesConfig, MutationSummary};

/// The `default-resources` policy.
#[derive(Debug, Clone)]
pub struct DefaultResources {
    config: DefaultResourcesConfig,
    summary: MutationSummary,
}

impl DefaultResources {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: DefaultResourcesConfig, summary: MutationSummary) -> Self {
        DefaultResources { config, summary }
    }
}

impl Policy for DefaultResources {
    fn name(&self) -> &str {
        let _ = (&self.config, self.summary);
        "default-resources"
    }
}
