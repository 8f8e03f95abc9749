//! Container image references, normalized the way the container runtime resolves them, and the
//! patterns that configuration rules match against them.
//!
//! Matching must happen on the normalized reference: `nginx`, `library/nginx`,
//! `docker.io/library/nginx` and `index.docker.io/library/nginx:latest` are one image, and a
//! rule written for one must catch the others. Parsing is `oci-spec`'s port of the
//! distribution/reference grammar, the one Docker and containerd use.

use std::fmt;

use oci_spec::distribution::Reference;
use serde::{Deserialize, Deserializer};

/// An image reference in its normalized, fully qualified form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `registry/repository[:tag][@digest]`, such as `docker.io/library/nginx:latest`.
    normalized: String,
    /// Length of the `registry/repository` prefix of `normalized`.
    name_len: usize,
}

/// An image string that is not a valid reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{image}` is not a valid image reference: {reason}")]
pub struct ImageError {
    /// The image as written.
    pub image: String,
    /// Why it does not parse.
    pub reason: String,
}

impl ImageReference {
    /// Parses and normalizes `image`: a missing registry is `docker.io`, a single-component
    /// Docker Hub name gets `library/`, and a reference with neither tag nor digest gets
    /// `:latest`. `index.docker.io` is spelled `docker.io`.
    pub fn parse(image: &str) -> Result<ImageReference, ImageError> {
        let reference = Reference::try_from(image).map_err(|e| ImageError {
            image: image.to_owned(),
            reason: e.to_string(),
        })?;
        // The grammar allows upper case; Docker's normalizing parser (the kubelet's) does not.
        if reference
            .repository()
            .bytes()
            .any(|b| b.is_ascii_uppercase())
        {
            return Err(ImageError {
                image: image.to_owned(),
                reason: "repository name must be lowercase".to_owned(),
            });
        }
        let name_len = reference.registry().len() + 1 + reference.repository().len();
        Ok(ImageReference {
            normalized: reference.whole(),
            name_len,
        })
    }

    /// [`ImageReference::parse`], remembered per thread for the last few thousand distinct
    /// images.
    ///
    /// The grammar is a regular expression with captures, which costs tens of microseconds per
    /// image (more than the rest of a pod's mutation), while a cluster creates pods from a small,
    /// slowly changing set of image strings (every replica repeats its template's). Per thread
    /// so that no lock is taken on the hot path; bounded by emptying the table when it is full,
    /// so a stream of distinct images costs a parse each, never unbounded memory.
    pub fn parse_memoized(image: &str) -> Result<ImageReference, ImageError> {
        /// Entries per thread: ~200 bytes each, so well under a MiB per worker thread.
        const CAPACITY: usize = 2048;
        type Memo = std::collections::HashMap<Box<str>, Result<ImageReference, ImageError>>;
        thread_local! {
            static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::default();
        }
        MEMO.with(|memo| {
            if let Some(known) = memo.borrow().get(image) {
                return known.clone();
            }
            let parsed = ImageReference::parse(image);
            let mut memo = memo.borrow_mut();
            if memo.len() >= CAPACITY {
                memo.clear();
            }
            memo.insert(image.into(), parsed.clone());
            parsed
        })
    }

    /// The whole normalized reference, such as `docker.io/library/nginx:latest`.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// `registry/repository` without tag or digest, such as `docker.io/library/nginx`.
    pub fn name(&self) -> &str {
        &self.normalized[..self.name_len]
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

/// A pattern on normalized image references, from `imagePullSecrets.rules[].images`.
///
/// `*` matches any run of characters, `/` and `:` included; everything else matches itself. A
/// pattern matches an image when it matches the whole normalized reference
/// (`docker.io/library/nginx:1.27`) or its name without tag and digest
/// (`docker.io/library/nginx`), so `registry.example.com/team/app` covers every tag of that
/// repository and `registry.example.com/*` covers the registry.
///
/// Patterns must name a registry (the first component contains `.` or `:`, is `localhost`, or is
/// a wildcard) because they are compared with normalized references: `nginx` would never match,
/// and accepting it silently would leave pods without their secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern {
    text: String,
}

impl ImagePattern {
    /// Checks and compiles a pattern; the error says why it can never match as written.
    pub fn parse(text: &str) -> Result<ImagePattern, String> {
        if text.is_empty() {
            return Err("an image pattern cannot be empty".to_owned());
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@*".contains(*c)))
        {
            return Err(format!(
                "image pattern `{text}` contains `{bad}`; image references use letters, digits \
                 and . _ - / : @, and patterns add *"
            ));
        }
        let first = text.split('/').next().unwrap_or_default();
        let names_registry = first.contains(['.', ':', '*']) || first == "localhost";
        if !text.contains('/') && !first.contains('*') || !names_registry {
            let example = ImageReference::parse(text.trim_end_matches('*'))
                .map(|r| format!(" (such as `{}`)", r.name()))
                .unwrap_or_default();
            return Err(format!(
                "image pattern `{text}` does not start with a registry; patterns match normalized \
                 references, so write the registry and the full repository path{example}"
            ));
        }
        Ok(ImagePattern {
            text: text.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `image` matches (see the type's documentation).
    pub fn matches(&self, image: &ImageReference) -> bool {
        glob_match(&self.text, image.as_str()) || glob_match(&self.text, image.name())
    }
}

impl<'de> Deserialize<'de> for ImagePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImagePattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `*`-only glob matching over bytes, linear in practice: on a mismatch, retry from the last `*`
/// one byte further along (patterns are short and have few stars).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                retry = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match retry {
                Some((star, from)) => {
                    pi = star + 1;
                    ti = from + 1;
                    retry = Some((star, from + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(image: &str) -> String {
        ImageReference::parse(image).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_the_runtime() {
        assert_eq!(normalized("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized("user/app"), "docker.io/user/app:latest");
        assert_eq!(normalized("localhost:5000/a"), "localhost:5000/a:latest");
        assert_eq!(normalized("localhost/a:1"), "localhost/a:1");
        assert_eq!(
            normalized("index.docker.io/library/nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let image = ImageReference::parse(&format!("reg.io:443/a/b@{digest}")).unwrap();
        assert_eq!(image.as_str(), format!("reg.io:443/a/b@{digest}"));
        assert_eq!(image.name(), "reg.io:443/a/b");
        let both = ImageReference::parse(&format!("reg.io/a:v1@{digest}")).unwrap();
        assert_eq!(both.as_str(), format!("reg.io/a:v1@{digest}"));
        assert_eq!(both.name(), "reg.io/a");
    }

    #[test]
    fn memoized_parse_answers_as_parse() {
        let mut images: Vec<String> = ["nginx", "UPPER/case", "reg.io/a:1", "", "a b"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        // Past the capacity, so the table is emptied at least once along the way.
        images.extend((0..5000).map(|i| format!("reg.io/app{i}:v{}", i % 7)));
        for _ in 0..2 {
            for image in &images {
                assert_eq!(
                    ImageReference::parse_memoized(image),
                    ImageReference::parse(image)
                );
            }
        }
    }

    #[test]
    fn rejects_what_the_runtime_cannot_pull() {
        for bad in ["", "UPPER/case", "a b", "reg.io/a@sha256:abc", ":tag"] {
            let err = ImageReference::parse(bad).unwrap_err();
            assert_eq!(err.image, bad);
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn patterns_match_reference_or_name() {
        let pattern = |p: &str| ImagePattern::parse(p).unwrap();
        let image = ImageReference::parse("registry.example.com/team/app:v1").unwrap();
        assert!(pattern("registry.example.com/*").matches(&image));
        assert!(pattern("registry.example.com/team/app").matches(&image));
        assert!(pattern("registry.example.com/team/app:v1").matches(&image));
        assert!(pattern("*.example.com/*").matches(&image));
        assert!(pattern("*/team/*").matches(&image));
        assert!(!pattern("registry.example.com/team/app:v2").matches(&image));
        assert!(!pattern("registry.example.com/team/ap").matches(&image));
        assert!(!pattern("example.com/*").matches(&image));
        let hub = ImageReference::parse("nginx").unwrap();
        assert!(pattern("docker.io/library/nginx").matches(&hub));
        assert!(pattern("docker.io/*").matches(&hub));
        assert!(pattern("*").matches(&hub));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        for (bad, says) in [
            ("", "cannot be empty"),
            ("nginx", "does not start with a registry"),
            ("library/nginx", "(such as `docker.io/library/nginx`)"),
            ("team/*", "does not start with a registry"),
            ("reg.io/a b", "contains ` `"),
            ("reg.io/[ab]", "contains `[`"),
        ] {
            let err = ImagePattern::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn glob() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("**", ""));
        assert!(!glob_match("a", ""));
        assert!(glob_match("*a", "aaa"));
    }
}
