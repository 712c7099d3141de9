#!/usr/bin/env bash
# Installs what Wharf's demo and tests need on a fresh Debian/Ubuntu machine:
# Debian's Distribution registry and htpasswd (bcrypt), a static busybox (the sample
# image is built from it, since no image can be pulled), Chromium and chromedriver
# (the console's browser tests), debootstrap (the fleet tests' host image),
# the shellcheck linter (for the packaging scripts), cargo-deb (scripts/package.sh),
# PostgreSQL (the store's tests start a private server of it), and checks that a
# Docker Engine answers.
set -euo pipefail

packages=(docker-registry busybox-static apache2-utils curl ca-certificates chromium chromium-driver debootstrap shellcheck postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# scripts/package.sh makes the .deb with cargo-deb (from crates.io).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "setup: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi

# The Debian package starts a registry on port 5000 with its own config; Wharf's
# tests start their own registries on free ports and do not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: the Docker Engine does not answer at /var/run/docker.sock; start it (e.g. 'systemctl start docker' or 'dockerd &')" >&2
  exit 1
fi
