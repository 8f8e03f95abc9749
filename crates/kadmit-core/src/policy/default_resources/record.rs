//! The record of what defaulting set, in LimitRanger's sentence format.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// Which list a container is in, for the record and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContainerKind {
    /// `spec.containers`.
    Container,
    /// `spec.initContainers`.
    InitContainer,
}

impl ContainerKind {
    /// LimitRanger's words for it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Container => "container",
            ContainerKind::InitContainer => "init container",
        }
    }
}

/// What was set on each container, in the pod's order: containers, then init containers.
#[derive(Debug)]
pub(super) struct Record {
    entries: Vec<Entry>,
    /// How many of `entries` are `spec.containers` (the rest are init containers).
    containers: usize,
}

#[derive(Debug)]
struct Entry {
    kind: ContainerKind,
    name: String,
    requests: BTreeSet<String>,
    limits: BTreeSet<String>,
}

impl Record {
    /// An empty record for the containers of `pod`.
    pub(super) fn new(pod: &Pod) -> Record {
        let entry = |kind, name: &str| Entry {
            kind,
            name: name.to_owned(),
            requests: BTreeSet::new(),
            limits: BTreeSet::new(),
        };
        let Some(spec) = pod.spec.as_ref() else {
            return Record {
                entries: Vec::new(),
                containers: 0,
            };
        };
        let mut entries: Vec<Entry> = spec
            .containers
            .iter()
            .map(|c| entry(ContainerKind::Container, &c.name))
            .collect();
        let containers = entries.len();
        entries.extend(
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| entry(ContainerKind::InitContainer, &c.name)),
        );
        Record {
            entries,
            containers,
        }
    }

    fn entry(&mut self, kind: ContainerKind, index: usize) -> Option<&mut Entry> {
        let position = match kind {
            ContainerKind::Container => index,
            ContainerKind::InitContainer => self.containers + index,
        };
        self.entries.get_mut(position)
    }

    /// Records that the request for `resource` was set.
    pub(super) fn set_request(&mut self, kind: ContainerKind, index: usize, resource: &str) {
        if let Some(entry) = self.entry(kind, index) {
            entry.requests.insert(resource.to_owned());
        }
    }

    /// Records that the limit for `resource` was set.
    pub(super) fn set_limit(&mut self, kind: ContainerKind, index: usize, resource: &str) {
        if let Some(entry) = self.entry(kind, index) {
            entry.limits.insert(resource.to_owned());
        }
    }

    /// `cpu, memory request for container web; cpu limit for init container migrate`: resource
    /// names sorted, requests before limits, containers before init containers; `None` when
    /// nothing was set.
    pub(super) fn sentence(&self) -> Option<String> {
        // Written straight into one string: this runs for every defaulted pod, and formatting
        // each part into its own string cost more than the rest of the policy.
        let mut text = String::new();
        for entry in &self.entries {
            for (set, what) in [(&entry.requests, "request"), (&entry.limits, "limit")] {
                if set.is_empty() {
                    continue;
                }
                if !text.is_empty() {
                    text.push_str("; ");
                }
                for (i, name) in set.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(name);
                }
                for word in [" ", what, " for ", entry.kind.as_str(), " ", &entry.name] {
                    text.push_str(word);
                }
            }
        }
        (!text.is_empty()).then_some(text)
    }
}
