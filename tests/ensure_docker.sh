#!/usr/bin/env bash
# Make sure a Docker engine answers, for the tests marked `docker`. Idempotent.
#
#  - installs docker.io, docker-compose and busybox-static with apt-get when missing;
#  - starts `dockerd --iptables=false --bridge=none` (log: /tmp/dockerd.log) when
#    `docker info` fails, and waits (bounded) until it answers;
#  - builds the local image factory-test-busybox:latest FROM scratch with a static
#    busybox when missing (no registry is reachable from a test machine).
#
# Exit 0 when an engine answers, non-zero otherwise.
set -u

IMAGE="${FACTORY_TEST_IMAGE:-factory-test-busybox:latest}"
LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
WAIT_S="${DOCKERD_WAIT_S:-60}"

say() { echo "ensure_docker: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

static_busybox() {
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1
}

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
static_busybox || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  say "installing $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q $pkgs >/dev/null 2>&1 \
    || { as_root apt-get update -q >/dev/null 2>&1 && as_root apt-get install -y -q $pkgs >/dev/null 2>&1; } \
    || say "apt-get install $pkgs failed"
fi
command -v docker >/dev/null 2>&1 || { say "no docker CLI"; exit 2; }

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || { say "no dockerd"; exit 3; }
  say "starting dockerd (log: $LOG)"
  # its own session, so it outlives this script and the test run that started it
  as_root setsid nohup dockerd --iptables=false --bridge=none >>"$LOG" 2>&1 </dev/null &
  deadline=$((SECONDS + WAIT_S))
  until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "dockerd did not answer within ${WAIT_S}s; last log lines:"
      tail -n 20 "$LOG" >&2
      exit 4
    fi
    sleep 0.5
  done
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  if static_busybox; then
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    cp /bin/busybox "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
EOF
    say "building $IMAGE"
    DOCKER_BUILDKIT=0 docker build --network none -q -t "$IMAGE" "$ctx" >/dev/null \
      || say "building $IMAGE failed"
  else
    say "no static /bin/busybox: cannot build $IMAGE"
  fi
fi

docker info >/dev/null 2>&1
