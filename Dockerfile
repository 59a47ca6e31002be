# The Corral server image: the `corral` binary (server + CLI), non-root, with a
# HEALTHCHECK on /health. Sandboxes are separate images (runtime/images/).
#
# Two build paths share this file:
#
#   public (any machine that can pull images and reach crates.io):
#     docker build -t corral .
#   Builds the release binary in the `build` stage (FROM ${BUILDER}, a Rust image)
#   and copies it into ${BASE} (debian:bookworm-slim).
#
#   offline (scripts/build-server-image.sh): no image registry and no Rust toolchain
#   download are possible, so the binary is built on the host (`cargo build
#   --release`) and put in the build context as `prebuilt/corral`; BUILDER and BASE
#   are the debootstrap base images of scripts/build-images.sh. The `build` stage then
#   only copies the prebuilt binary (it needs no compiler).
#
# Dashboard (web/): its production build is embedded into the binary at compile
# time. The public path builds it in the `web` stage (Node) and hands `web/dist` to
# the cargo build, which then skips npm (CORRAL_SKIP_WEB_BUILD); the offline path
# gets it through the host build, like the binary (crates/corral-api/build.rs).

ARG NODE=node:20-bookworm-slim
ARG BUILDER=rust:1-bookworm
ARG BASE=debian:bookworm-slim

# --- dashboard (public path only; an empty stage offline) ---------------------------
FROM ${NODE} AS web
WORKDIR /web
COPY . /ctx
RUN set -eu; mkdir -p /web/dist; \
    if [ -f /ctx/web/package.json ] && [ ! -x /ctx/prebuilt/corral ]; then \
      cp -r /ctx/web/. /web/; npm ci --no-audit --no-fund; npm run build; \
    fi

# --- build ------------------------------------------------------------------------
FROM ${BUILDER} AS build
WORKDIR /src
# The whole context: the workspace (public path) or just prebuilt/ (offline path);
# .dockerignore keeps target/ and data out.
COPY . .
COPY --from=web /web/dist /src/web/dist
RUN set -eu; \
    if [ -x prebuilt/corral ]; then \
      echo "using the prebuilt binary from the build context"; \
      cp prebuilt/corral /corral; \
    else \
      CORRAL_SKIP_WEB_BUILD=1 cargo build --release --locked --bin corral; \
      cp target/release/corral /corral; \
    fi; \
    /corral --version

# --- runtime ----------------------------------------------------------------------
FROM ${BASE}

# CA certificates for outbound TLS (model providers, webhooks, S3); installed only
# when the base lacks them (the offline base already has them, apt never runs).
RUN set -eu; \
    if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
      apt-get clean; rm -rf /var/lib/apt/lists/*; \
    fi

# A fixed uid/gid so volumes can be prepared on the host. Written directly: the
# minbase root filesystem has no useradd.
RUN set -eu; \
    echo 'corral:x:10002:10002:Corral server:/var/lib/corral:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'corral:x:10002:' >> /etc/group; \
    mkdir -p /var/lib/corral; chown 10002:10002 /var/lib/corral; chmod 0750 /var/lib/corral

COPY --from=build /corral /usr/local/bin/corral

ENV CORRAL_LISTEN=0.0.0.0:3000 \
    CORRAL_DATA_DIR=/var/lib/corral \
    LANG=C.UTF-8
# To reach /var/run/docker.sock the container needs the socket's group
# (`group_add` in docker-compose.yml); see examples/self-hosting/README.md.
USER 10002:10002
WORKDIR /var/lib/corral
VOLUME ["/var/lib/corral"]
EXPOSE 3000

# bash's /dev/tcp: no curl in the image. Healthy when /health answers 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "port=${CORRAL_LISTEN##*:}; exec 3<>/dev/tcp/127.0.0.1/${port:-3000} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="corral" \
      org.opencontainers.image.description="Corral: run AI agents in throw-away sandboxes (Appstrate-compatible API)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/corral/corral"

ENTRYPOINT ["/usr/local/bin/corral"]
CMD ["serve"]
