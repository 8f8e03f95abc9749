//! Placeholder: being written on the `mutations` branch.

use super::Policy;
use crate::config::{ImagePullSecretsConfig, MutationSummary};

/// The `image-pull-secrets` policy.
#[derive(Debug, Clone)]
pub struct ImagePullSecrets {
    config: ImagePullSecretsConfig,
    summary: MutationSummary,
}

impl ImagePullSecrets {
    /// The policy for `config`, summarizing its changes per `summary`.
    pub fn new(config: ImagePullSecretsConfig, summary: MutationSummary) -> Self {
        ImagePullSecrets { config, summary }
    }
}

impl Policy for ImagePullSecrets {
    fn name(&self) -> &str {
        let _ = (&self.config, self.summary);
        "image-pull-secrets"
    }
}
