# syntax=docker/dockerfile:1.7
#
# connector-runtime container image.
#
#   docker build -t connector-runtime .
#   docker run --rm -p 8080:8080 connector-runtime demo --listen 0.0.0.0:8080
#
# Stage 1 compiles the release binary (rustls with bundled Mozilla roots: no OpenSSL, no CA
# package needed at run time). Stage 2 is distroless: glibc + libgcc, no shell, no package
# manager, running as the unprivileged "nonroot" user (uid 65532).

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

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="connector-runtime" \
      org.opencontainers.image.description="Runs templated HTTP connectors and composite connector chains for browser widgets." \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/connector-runtime /usr/local/bin/connector-runtime
COPY --from=build /src/examples/connectors_registry.json /etc/connector-runtime/connectors_registry.json
ENV CONNECTOR_RUNTIME_LISTEN=0.0.0.0:8080 \
    CONNECTOR_RUNTIME_REGISTRY=/etc/connector-runtime/connectors_registry.json \
    CONNECTOR_RUNTIME_LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/connector-runtime"]
CMD ["serve"]
