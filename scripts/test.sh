#!/usr/bin/env bash
# Install what the tests need (Debian packages, the claude CLI, Python deps, a Docker engine) and run them.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v bwrap >/dev/null || need_apt+=(bubblewrap)  # every agent run is sandboxed
command -v socat >/dev/null || need_apt+=(socat)       # bridges the sandbox to the egress proxy
command -v chromium >/dev/null || need_apt+=(chromium)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v npm >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15)  # tests/pg.py: multi-host tests on PostgreSQL
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)                          # tests/test_nginx.py: the shipped site
command -v openssl >/dev/null || need_apt+=(openssl)                 # its self-signed test certificate
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v claude >/dev/null; then
  echo "installing the Claude Code CLI"
  npm install -g --silent @anthropic-ai/claude-code >/dev/null
fi

# the other agent backends, pinned (tests/test_backends.py drives these versions' wire protocols)
if ! command -v codex >/dev/null || ! command -v opencode >/dev/null; then
  echo "installing the Codex CLI and OpenCode"
  npm install -g --silent @openai/codex@0.171.0 opencode-ai@1.18.33 >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"

# A Docker engine for the environment tests (they skip with a reason only if none can start).
bash tests/ensure_docker.sh || echo "warning: no Docker engine could be started; docker tests will skip"

# Several workers (most tests wait on Temporal, git and the CLIs, not the CPU); tests/conftest.py keeps the
# Docker tests on one of them. FACTORY_TEST_WORKERS=0 runs the suite in this one process.
exec python3 -m pytest -q -p no:cacheprovider -n "${FACTORY_TEST_WORKERS:-4}" --dist loadgroup "$@"
