//! The record of what defaulting set, in LimitRanger's sentence format.

use crate::pod::Pod;

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
///
/// Resource names are borrowed from the defaults that set them and container names are read
/// from the pod when the sentence is written: recording allocates one small list per container
/// that got something, where owned names and sets allocated for every name.
#[derive(Debug)]
pub(super) struct Record<'d> {
    entries: Vec<Entry<'d>>,
    /// How many of `entries` are `spec.containers` (the rest are init containers).
    containers: usize,
}

#[derive(Debug, Default)]
struct Entry<'d> {
    /// Sorted, without duplicates.
    requests: Vec<&'d str>,
    /// Sorted, without duplicates.
    limits: Vec<&'d str>,
}

impl<'d> Record<'d> {
    /// An empty record for the containers of `pod`.
    pub(super) fn new(pod: &Pod) -> Record<'d> {
        let (containers, init) = pod.spec.as_ref().map_or((0, 0), |spec| {
            let init = spec.init_containers.as_ref().map_or(0, Vec::len);
            (spec.containers.len(), init)
        });
        let mut entries = Vec::new();
        entries.resize_with(containers + init, Entry::default);
        Record {
            entries,
            containers,
        }
    }

    fn entry(&mut self, kind: ContainerKind, index: usize) -> Option<&mut Entry<'d>> {
        let position = match kind {
            ContainerKind::Container => index,
            ContainerKind::InitContainer => self.containers + index,
        };
        self.entries.get_mut(position)
    }

    /// Records that the request for `resource` was set.
    pub(super) fn set_request(&mut self, kind: ContainerKind, index: usize, resource: &'d str) {
        if let Some(entry) = self.entry(kind, index) {
            insert_sorted(&mut entry.requests, resource);
        }
    }

    /// Records that the limit for `resource` was set.
    pub(super) fn set_limit(&mut self, kind: ContainerKind, index: usize, resource: &'d str) {
        if let Some(entry) = self.entry(kind, index) {
            insert_sorted(&mut entry.limits, resource);
        }
    }

    /// `cpu, memory request for container web; cpu limit for init container migrate`: resource
    /// names sorted, requests before limits, containers before init containers; `None` when
    /// nothing was set. `pod` is the pod the record was made for (its containers' names).
    pub(super) fn sentence(&self, pod: &Pod) -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let names = (spec.containers.iter())
            .map(|c| (ContainerKind::Container, c.name.as_str()))
            .chain(
                (spec.init_containers.iter().flatten())
                    .map(|c| (ContainerKind::InitContainer, c.name.as_str())),
            );
        // Written straight into one string: this runs for every defaulted pod, and formatting
        // each part into its own string cost more than the rest of the policy.
        let mut text = String::new();
        for (entry, (kind, name)) in self.entries.iter().zip(names) {
            for (set, what) in [(&entry.requests, "request"), (&entry.limits, "limit")] {
                if set.is_empty() {
                    continue;
                }
                if !text.is_empty() {
                    text.push_str("; ");
                }
                for (i, resource) in set.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(resource);
                }
                for word in [" ", what, " for ", kind.as_str(), " ", name] {
                    text.push_str(word);
                }
            }
        }
        (!text.is_empty()).then_some(text)
    }
}

fn insert_sorted<'d>(list: &mut Vec<&'d str>, name: &'d str) {
    if let Err(at) = list.binary_search(&name) {
        list.insert(at, name);
    }
}
