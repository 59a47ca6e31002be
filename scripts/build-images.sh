#!/usr/bin/env bash
# Builds the sandbox images `corral-agent` and `corral-sidecar` (SPEC §8) from the
# workspace's own binaries, and rebuilds only what changed.
#
#   scripts/build-images.sh                      # release binaries, offline base
#   scripts/build-images.sh --profile debug      # what the container tests use
#   scripts/build-images.sh --from-public-base   # FROM debian:bookworm-slim
#
# Offline path (the default): the base images are created here, without any
# container registry: `debootstrap --variant=minbase bookworm` from the Debian apt
# mirror into a root filesystem, trimmed, cached as a tarball under the cache dir and
# `docker import`ed as
#   corral-base:bookworm        minbase + ca-certificates         (sidecar)
#   corral-base:bookworm-agent  + bash coreutils python3 git curl (agent)
# so `docker build` itself needs no network.
#
# Each image is tagged with a content hash of (Dockerfile, binary, base image id);
# when that tag exists the build is skipped, and `:latest` (or `--tag`) is moved to
# it. Progress goes to stderr; one `name:tag=image:hash-tag` line per image to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGES_DIR="$ROOT/runtime/images"
# Bump when the way images are assembled changes without any input changing.
RECIPE_VERSION=1

PROFILE=release
MODE=offline
PUBLIC_BASE=debian:bookworm-slim
TAG=latest
AGENT_BIN=""
SIDECAR_BIN=""
CACHE_DIR=${CORRAL_IMAGE_CACHE:-/var/cache/corral}
MIRROR=${CORRAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

usage() {
  cat >&2 <<EOF
usage: scripts/build-images.sh [options]
  --profile release|debug   cargo profile of the binaries (default: release)
  --agent-bin PATH          use this corral-agent binary (no cargo build)
  --sidecar-bin PATH        use this corral-sidecar binary (no cargo build)
  --offline                 base images from debootstrap, no registry (default)
  --from-public-base [IMG]  FROM a registry image (default: $PUBLIC_BASE)
  --tag TAG                 tag to move to the built images (default: latest)
  --cache-dir DIR           rootfs tarball cache (default: $CACHE_DIR, env CORRAL_IMAGE_CACHE)
  --mirror URL              Debian mirror for debootstrap (env CORRAL_DEBIAN_MIRROR)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
    --agent-bin) AGENT_BIN=${2:?}; shift 2 ;;
    --sidecar-bin) SIDECAR_BIN=${2:?}; shift 2 ;;
    --offline) MODE=offline; shift ;;
    --from-public-base)
      MODE=public
      if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then PUBLIC_BASE=$2; shift; fi
      shift ;;
    --tag) TAG=${2:?}; shift 2 ;;
    --cache-dir) CACHE_DIR=${2:?}; shift 2 ;;
    --mirror) MIRROR=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-images: unknown option $1" >&2; usage; exit 2 ;;
  esac
done

log() { echo "build-images: $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

START=$(now)
command -v docker >/dev/null 2>&1 || die "docker CLI missing (scripts/test-services.sh installs the engine)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (start dockerd)"
# The classic builder: it uses local images for FROM as is, never asks a registry,
# and needs no buildx plugin.
export DOCKER_BUILDKIT=0

# --- binaries -------------------------------------------------------------------
case "$PROFILE" in
  release) CARGO_PROFILE_ARGS=(--release); PROFILE_DIR=release ;;
  debug|dev) CARGO_PROFILE_ARGS=(); PROFILE_DIR=debug ;;
  *) die "--profile must be release or debug" ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "$AGENT_BIN" ] || [ -z "$SIDECAR_BIN" ]; then
  # Every binary of the workspace, not `-p corral-agent -p corral-sidecar`: a package
  # subset resolves dependency features differently, so it rebuilt half the tree and
  # overwrote the binaries the test command had just built (and the next build put
  # them back). With the workspace's feature set this is a no-op after
  # `cargo build --workspace --bins`, and it builds the server too.
  log "cargo build ${CARGO_PROFILE_ARGS[*]} --workspace --bins"
  t=$(now)
  (cd "$ROOT" && cargo build --quiet "${CARGO_PROFILE_ARGS[@]}" --workspace --bins) >&2
  log "cargo done in $(since "$t")"
  AGENT_BIN=${AGENT_BIN:-$TARGET_DIR/$PROFILE_DIR/corral-agent}
  SIDECAR_BIN=${SIDECAR_BIN:-$TARGET_DIR/$PROFILE_DIR/corral-sidecar}
fi
[ -x "$AGENT_BIN" ] || die "no executable corral-agent at $AGENT_BIN"
[ -x "$SIDECAR_BIN" ] || die "no executable corral-sidecar at $SIDECAR_BIN"

# --- base images (offline path) --------------------------------------------------
mkdir -p "$CACHE_DIR"
# One builder at a time per cache: debootstrap and `docker tag` are not safe to race.
exec 9>"$CACHE_DIR/.lock"
flock 9

# Makes `image` exist: from the cached tarball, or debootstrap + trim + tar first.
ensure_base() {
  local image=$1 tarball=$2 include=$3
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image: present"
    return
  fi
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root to create $tarball"
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing (apt-get install debootstrap)"
    local rootfs t
    t=$(now)
    rootfs=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    mkdir -p "$CACHE_DIR/debs"
    log "$image: debootstrap --variant=minbase --include=$include $SUITE (mirror $MIRROR)"
    if ! debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE_DIR/debs" \
        "$SUITE" "$rootfs" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1; then
      tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
      rm -rf "$rootfs"
      die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
    fi
    # Small images: no docs, man pages, translations, apt lists or package cache,
    # and none installed later either.
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
      "$rootfs"/var/log/* "$rootfs"/tmp/*
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/corral-nodoc"
    # The host's resolver must not leak into the image.
    : >"$rootfs/etc/resolv.conf"
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    log "$image: rootfs cached at $tarball in $(since "$t")"
  fi
  docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    "$tarball" "$image" >/dev/null
  log "$image: imported from $tarball"
}

if [ "$MODE" = offline ]; then
  SIDECAR_BASE=corral-base:$SUITE
  AGENT_BASE=corral-base:$SUITE-agent
  ensure_base "$SIDECAR_BASE" "$CACHE_DIR/base-$SUITE.tar" ca-certificates
  ensure_base "$AGENT_BASE" "$CACHE_DIR/base-$SUITE-agent.tar" \
    ca-certificates,bash,coreutils,python3,git,curl
else
  SIDECAR_BASE=$PUBLIC_BASE
  AGENT_BASE=$PUBLIC_BASE
  if ! docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1; then
    log "pulling $PUBLIC_BASE"
    docker pull "$PUBLIC_BASE" >&2 || die "cannot pull $PUBLIC_BASE; use --offline"
  fi
fi

# --- images ----------------------------------------------------------------------
# build NAME DOCKERFILE BINARY BASE
build() {
  local name=$1 dockerfile=$2 binary=$3 base=$4
  local base_id hash ref t ctx
  base_id=$(docker image inspect --format '{{.Id}}' "$base")
  hash=$( {
    echo "recipe $RECIPE_VERSION"
    echo "base $base_id"
    sha256sum <"$dockerfile"
    sha256sum <"$binary"
  } | sha256sum | cut -c1-16)
  ref="$name:c-$hash"
  if docker image inspect "$ref" >/dev/null 2>&1; then
    log "$name: up to date ($ref)"
  else
    t=$(now)
    ctx=$(mktemp -d)
    cp "$dockerfile" "$ctx/Dockerfile"
    # Debug info is most of a debug binary's size and useless in a sandbox.
    if command -v strip >/dev/null 2>&1; then
      strip --strip-debug -o "$ctx/$name" "$binary"
    else
      cp "$binary" "$ctx/$name"
    fi
    # The output is shown only on failure (the classic builder's deprecation
    # banner is noise otherwise).
    if ! docker build --build-arg "BASE=$base" \
        --label "corral.image.hash=$hash" --label "corral.image.base=$base_id" \
        -t "$ref" "$ctx" >"$ctx.log" 2>&1; then
      tail -n 40 "$ctx.log" >&2
      rm -rf "$ctx" "$ctx.log"
      die "docker build of $name failed"
    fi
    rm -rf "$ctx" "$ctx.log"
    log "$name: built $ref from $base in $(since "$t")"
  fi
  docker tag "$ref" "$name:$TAG"
  # Older content tags are garbage once no other tag (`:latest`, another --tag)
  # points at their image; `rmi` itself refuses one a container still uses.
  local old
  for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$name" | grep ":c-" || true); do
    [ "$old" != "$ref" ] || continue
    [ "$(docker image inspect --format '{{len .RepoTags}}' "$old")" = 1 ] || continue
    if docker rmi "$old" >/dev/null 2>&1; then
      log "$name: removed stale $old"
    fi
  done
  echo "$name:$TAG=$ref"
}

build corral-sidecar "$IMAGES_DIR/sidecar.Dockerfile" "$SIDECAR_BIN" "$SIDECAR_BASE"
build corral-agent "$IMAGES_DIR/agent.Dockerfile" "$AGENT_BIN" "$AGENT_BASE"
log "done in $(since "$START")"
