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
 && mkdir -p /etc/registry-token/keys /etc/registry-token/ca /etc/registry-token/trust /var/cache/registry-token \
 && chown registry-token /etc/registry-token/keys /etc/registry-token/ca /etc/registry-token/trust /var/cache/registry-token \
 && chmod 700 /etc/registry-token/ca
COPY --from=build /src/target/release/registry-token /usr/local/bin/registry-token
USER 10001
# Main listener (registry clients) and admin listener (/metrics).
EXPOSE 8085 9091
ENV REGISTRY_TOKEN_CONFIG=/etc/registry-token/conf/registry-token.yaml
ENTRYPOINT ["registry-token"]
CMD ["serve"]

# The Authority of docker-compose.yml (`target: oidc-authority`): panva's oidc-provider, OpenID
# Certified (scripts/oidc-authority, pinned by its package-lock.json), on Node 20 (what
# package.json asks and CI runs), serving the issuer http://127.0.0.1:8090 the compose sidecar
# trusts; get-token.mjs mints OpToks and registry-token is here for `registry-token test`.
# Not for production: its clients and their secrets come from clients.json.
# CI (tests/image.rs) copies exactly this stage's COPY files into a clean folder, runs its
# `npm ci` there and starts its CMD.
FROM node:20-bookworm-slim AS oidc-authority
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authority \
 && mkdir -p /var/lib/authority && chown 10001 /var/lib/authority
WORKDIR /opt/oidc-authority
COPY scripts/oidc-authority/package.json scripts/oidc-authority/package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY scripts/oidc-authority/index.mjs scripts/oidc-authority/get-token.mjs scripts/oidc-authority/clients.json ./
COPY --from=build /src/target/release/registry-token /usr/local/bin/registry-token
# Its signing key (jwks.json) lives in the `authority` volume; get-token.mjs writes DPoP keys
# and OpToks into the working folder.
WORKDIR /var/lib/authority
USER 10001
ENTRYPOINT []
CMD ["node", "/opt/oidc-authority/index.mjs", "--port", "8090", "--dir", "/var/lib/authority", "--clients", "/opt/oidc-authority/clients.json"]

# The default target: the sidecar's image.
FROM runtime
