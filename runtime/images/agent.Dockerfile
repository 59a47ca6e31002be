# corral-agent: the sandbox the agent's tools run in (SPEC §8–§9).
#
# Two build paths share this file (scripts/build-images.sh drives both):
#   public:  docker build --build-arg BASE=debian:bookworm-slim ...
#   offline: BASE=corral-base:bookworm-agent, a debootstrap rootfs that already holds
#            the packages below, so the build needs no network at all.
# The build context holds only this file and the `corral-agent` binary.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# Never keep docs, man pages or translations from any later apt-get (the public
# path), the same trimming the offline rootfs got before import.
RUN printf '%s\n' \
      'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
      > /etc/dpkg/dpkg.cfg.d/corral-nodoc

# Install only what the base lacks: on the offline base everything is already
# there and apt-get (which would need the network) never runs.
RUN set -eu; \
    missing=""; \
    for pair in bash:bash python3:python3 git:git curl:curl; do \
      command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"; \
    done; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"; \
    if [ -n "$missing" ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
      apt-get clean; \
    fi; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/*

# uid 10001 matches the `--tmpfs /workspace:uid=10001` of the runner. Written
# directly: minbase has no useradd.
RUN set -eu; \
    echo 'agent:x:10001:10001:Corral agent:/workspace:/bin/bash' >> /etc/passwd; \
    echo 'agent:x:10001:' >> /etc/group; \
    mkdir -p /workspace; chown 10001:10001 /workspace; chmod 0755 /workspace

COPY corral-agent /usr/local/bin/corral-agent

# No secret here: the task and every credential live in the sidecar.
ENV HOME=/workspace \
    LANG=C.UTF-8 \
    CORRAL_WORKSPACE=/workspace \
    CORRAL_SIDECAR_URL=http://sidecar:8080
USER 10001:10001
WORKDIR /workspace
LABEL org.opencontainers.image.title="corral-agent" \
      org.opencontainers.image.source="https://github.com/corral/corral"
ENTRYPOINT ["/usr/local/bin/corral-agent"]
