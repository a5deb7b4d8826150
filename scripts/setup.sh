#!/usr/bin/env bash
# Everything tslcc needs on a Debian/Ubuntu host, idempotent and quick when already done:
# the toolchain (clang, llvm, libbpf, libelf, zlib, bpftool), tracefs and bpffs mounted,
# npm dependencies installed and the workspace built.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config bpftool make gcc g++ binutils python3 bubblewrap util-linux systemtap-sdt-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; install them as root: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(id -u)" -eq 0 ]; then
  [ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing || echo "setup: could not mount tracefs" >&2
  grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs" >&2
fi

# Native addons build against Node's own headers; point node-gyp at them when npm is not
# already configured to (no download of headers happens either way).
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then export npm_config_nodedir=/usr; fi

stamp=node_modules/.tslcc-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund >/dev/null
  touch "$stamp"
fi
npm run --silent build >/dev/null
