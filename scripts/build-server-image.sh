#!/usr/bin/env bash
# Builds the server image `corral` from the repository's Dockerfile.
#
#   scripts/build-server-image.sh                     # offline (default), release binary
#   scripts/build-server-image.sh --profile debug     # faster host build, bigger binary
#   scripts/build-server-image.sh --from-public-base  # plain `docker build .` (pulls
#                                                     # rust:1-bookworm, debian:bookworm-slim)
#
# Offline path: no image registry is reachable and no Rust toolchain can be fetched
# inside a container, so the binary is built on the host (`cargo build --workspace`)
# and the build context is only `prebuilt/corral` + the Dockerfile; the base is
# `corral-base:bookworm` (debootstrap minbase + ca-certificates), made by
# scripts/build-images.sh's offline path (run here first when missing). Prints
# `corral:TAG` on stdout; progress on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=release
MODE=offline
TAG=latest
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=${2:?--profile needs release or debug}; shift 2 ;;
    --from-public-base) MODE=public; shift ;;
    --tag) TAG=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" >&2; exit 0 ;;
    *) echo "build-server-image: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "build-server-image: $*" >&2; }
die() { log "error: $*"; exit 1; }
docker info >/dev/null 2>&1 || die "the Docker engine does not answer"
export DOCKER_BUILDKIT=0

REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LABELS=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED")

if [ "$MODE" = public ]; then
  log "docker build $ROOT (public bases)"
  docker build "${LABELS[@]}" -t "corral:$TAG" "$ROOT" >&2
  echo "corral:$TAG"
  exit 0
fi

case "$PROFILE" in
  release) CARGO_ARGS=(--release); DIR=release ;;
  debug) CARGO_ARGS=(); DIR=debug ;;
  *) die "--profile must be release or debug" ;;
esac
if ! docker image inspect corral-base:bookworm >/dev/null 2>&1; then
  log "corral-base:bookworm missing: building the offline bases (scripts/build-images.sh)"
  "$ROOT/scripts/build-images.sh" --profile "$PROFILE" >/dev/null
fi
log "cargo build ${CARGO_ARGS[*]} --workspace --bins"
(cd "$ROOT" && cargo build --quiet "${CARGO_ARGS[@]}" --workspace --bins) >&2
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$DIR/corral
[ -x "$BIN" ] || die "no binary at $BIN"

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/prebuilt"
cp "$ROOT/Dockerfile" "$CTX/Dockerfile"
# Debug info is most of a binary's size and useless in the image.
strip --strip-debug -o "$CTX/prebuilt/corral" "$BIN" 2>/dev/null || cp "$BIN" "$CTX/prebuilt/corral"
log "docker build (BUILDER=BASE=corral-base:bookworm, prebuilt $DIR binary)"
if ! docker build "${LABELS[@]}" --build-arg BUILDER=corral-base:bookworm --build-arg NODE=corral-base:bookworm \
    --build-arg BASE=corral-base:bookworm -t "corral:$TAG" "$CTX" >"$CTX/build.log" 2>&1; then
  tail -n 40 "$CTX/build.log" >&2
  die "docker build failed"
fi
log "built corral:$TAG ($(docker image inspect --format '{{.Size}}' "corral:$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "corral:$TAG"
