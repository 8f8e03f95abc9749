# syntax=docker/dockerfile:1
#
# kadmit's container image: built in a pinned Rust image, run from distroless (glibc, CA
# certificates, no shell, no package manager), as a non-root user.
#
#   docker build -t ghcr.io/kadmit/kadmit:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Needs BuildKit (the default builder since Docker 23; also podman/buildah) for the cache mount.
#
# Both base images are pinned by tag. To pin them by digest as well (reproducible builds, immune
# to a re-pushed tag), look the digest up and append it to the tag:
#   docker buildx imagetools inspect rust:1.95-bookworm                  # "Digest: sha256:..."
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#   FROM rust:1.95-bookworm@sha256:<digest> AS builder
# (or `crane digest IMAGE`). Keep the tag in front of the digest so the version stays readable.
#
# The builder is Debian 12 (bookworm) because the runtime is distroless/cc-debian12: the binary
# links the glibc it was built against (libc, libm, libgcc_s and nothing else), so the two must
# be the same Debian release.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads (.dockerignore keeps the rest, target/ included, out of the context).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
RUN --mount=type=cache,id=kadmit-cargo-registry,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin kadmit \
    && install -D -m 0755 target/release/kadmit /out/kadmit

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kadmit" \
      org.opencontainers.image.description="A Kubernetes admission webhook server: Pod Security, GMSA and pod defaulting, served over TLS and replayable offline." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kadmit/kadmit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/kadmit /usr/local/bin/kadmit
# distroless's "nonroot" user; numeric, so runAsNonRoot can verify it without a user database.
USER 65532:65532
# HTTPS webhook (--bind) and plain-HTTP /healthz, /readyz, /metrics (--metrics-bind).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/kadmit"]
# `serve` needs --tls-cert-file and --tls-private-key-file (or KADMIT_TLS_CERT_FILE and
# KADMIT_TLS_PRIVATE_KEY_FILE); the Helm chart passes them. Other subcommands work too:
#   docker run --rm ghcr.io/kadmit/kadmit:0.1.0 check --help
CMD ["serve"]
