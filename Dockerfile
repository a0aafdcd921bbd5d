# syntax=docker/dockerfile:1.7
#
# connector-runtime container image.
#
#   docker build -t connector-runtime .
#   docker run --rm -p 8080:8080 connector-runtime
#
# The default command is the demo: the example registry against a mock upstream inside the
# container (on its loopback, port 9090), the console, and a demo member whose token it prints
# (it trusts the built-in demo key only; `docker run --rm connector-runtime demo token` prints
# another). The server listens on 0.0.0.0:8080 (CONNECTOR_RUNTIME_LISTEN below).
#
# `serve` has no default registry: mount yours and name it (plus whatever it needs: secrets,
# variables, and for a registry whose templates read user.* or tenant_id, caller identity):
#
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/connectors_registry.json:/etc/connector-runtime/connectors_registry.json:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" \
#     connector-runtime serve --registry /etc/connector-runtime/connectors_registry.json \
#       --secrets-dir /run/secrets \
#       --identity-issuer https://login.example.com/ \
#       --identity-jwks-url https://login.example.com/.well-known/jwks.json --tenant-id my-community
#
# (or -e CONNECTOR_RUNTIME_REGISTRY=/etc/connector-runtime/connectors_registry.json). The
# example registry is not in the image for `serve`: its member-items reads user.* and
# tenant_id, so served without identity flags it would be refused at start.
#
# Stage 1 compiles the release binary (rustls with bundled Mozilla roots: no OpenSSL, no CA
# package needed at run time). Stage 2 is Debian slim with git for --registry-git, running as
# the unprivileged "nonroot" user (uid 65532).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole context, filtered by .dockerignore: src/ embeds files from examples/, sdk/ and
# console/ (include_str!), so they must be there.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin connector-runtime \
 && install -D -m 0755 target/release/connector-runtime /out/connector-runtime

# The runtime stage needs `git` (and ssh for ssh:// remotes) for --registry-git, which runs
# the git command line: distroless has none, so the stage is Debian slim with only those
# packages, running as the same unprivileged uid 65532 distroless calls "nonroot".
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot
LABEL org.opencontainers.image.title="connector-runtime" \
      org.opencontainers.image.description="Runs templated HTTP connectors and composite connector chains for browser widgets." \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/connector-runtime /usr/local/bin/connector-runtime
ENV CONNECTOR_RUNTIME_LISTEN=0.0.0.0:8080 \
    CONNECTOR_RUNTIME_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/connector-runtime"]
CMD ["demo", "--upstream-listen", "127.0.0.1:9090"]
