# registry-token: build with the Rust toolchain, run on a slim Debian as a non-root user.
# docker build -t registry-token .   (docker-compose.yml builds it for the stack)
#
# The first build compiles pingora and its dependencies: about 20 minutes on 2 cores.
# CI (tests/image.rs) copies exactly the paths of the build stage's COPY lines into a clean
# folder and builds there, so a file the build needs and this list misses fails the tests.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares [[bench]] targets: cargo reads their files even for `--bin`.
COPY benches ./benches
RUN cargo build --locked --release --bin registry-token \
 && strip target/release/registry-token

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin registry-token \
 && mkdir -p /etc/registry-token/keys /etc/registry-token/ca /etc/registry-token/trust \
 && chown registry-token /etc/registry-token/keys /etc/registry-token/ca /etc/registry-token/trust \
 && chmod 700 /etc/registry-token/ca
COPY --from=build /src/target/release/registry-token /usr/local/bin/registry-token
USER 10001
# Main listener (registry clients) and admin listener (/metrics).
EXPOSE 8085 9091
ENV REGISTRY_TOKEN_CONFIG=/etc/registry-token/conf/registry-token.yaml
ENTRYPOINT ["registry-token"]
CMD ["serve"]

# The development Authority of docker-compose.yml (`target: dev-authority`): the image above
# plus python3 and openssl for scripts/dev-authority, and registry-token for `test`. Not for
# production: it mints OpToks for anyone who can run a command in it.
FROM runtime AS dev-authority
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 openssl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/authority && chown 10001 /var/lib/authority
COPY scripts/dev-authority /usr/local/bin/dev-authority
USER 10001
ENTRYPOINT []
CMD ["dev-authority", "serve", "--dir", "/var/lib/authority", "--port", "8090"]

# The default target: the sidecar's image.
FROM runtime
