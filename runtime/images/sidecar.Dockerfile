# corral-sidecar: holds the run's secrets, proxies the LLM, serves MCP and guards
# egress (SPEC §9). Same two build paths as agent.Dockerfile:
#   public:  --build-arg BASE=debian:bookworm-slim
#   offline: BASE=corral-base:bookworm (debootstrap minbase + ca-certificates).
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN set -eu; \
    if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
      apt-get clean; \
    fi; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*; \
    echo 'sidecar:x:10002:10002:Corral sidecar:/nonexistent:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'sidecar:x:10002:' >> /etc/group

COPY corral-sidecar /usr/local/bin/corral-sidecar

# CORRAL_CONFIGURE_TOKEN is given per container at `docker run`, never baked in.
ENV CORRAL_SIDECAR_LISTEN=0.0.0.0:8080 \
    CORRAL_PROXY_LISTEN=0.0.0.0:8081
USER 10002:10002
EXPOSE 8080 8081
LABEL org.opencontainers.image.title="corral-sidecar" \
      org.opencontainers.image.source="https://github.com/corral/corral"
ENTRYPOINT ["/usr/local/bin/corral-sidecar"]
