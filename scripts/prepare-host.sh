#!/usr/bin/env bash
# Prepares a Debian or Ubuntu host for Wharf's docker-image deployments: installs
# the distribution's Docker Engine (the `docker.io` package), enables and starts
# it, and checks that it answers. Idempotent: a host that is ready is left as it
# is, so running it twice is safe. Meant to be run on a group's hosts through
# their agents (which run as root):
#
#   wharf group exec APP GROUP --script scripts/prepare-host.sh
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "prepare-host: run this as root (the Wharf agent runs scripts as root)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prepare-host: this host has no apt-get; only Debian and Ubuntu are supported" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q '^install ok installed$'; then
  echo "prepare-host: docker.io is already installed"
else
  echo "prepare-host: installing docker.io"
  # A lock held by an unattended upgrade is waited for rather than failed on.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  # Configuration the operator put in place first (/etc/default/docker, say) is kept
  # as it is: without these options dpkg would ask about it, and with no one to answer
  # the install would fail.
  apt-get -o DPkg::Lock::Timeout=300 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    install -y -qq docker.io
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  if ! systemctl enable --now docker.service; then
    echo "prepare-host: cannot start docker.service; see 'journalctl -u docker'" >&2
    exit 1
  fi
elif ! service docker status >/dev/null 2>&1; then
  # Hosts without systemd (containers, some minimal images) use the init script.
  if ! service docker start; then
    echo "prepare-host: cannot start the docker service; see /var/log/docker.log" >&2
    exit 1
  fi
fi

# The engine may take a moment to open its socket after starting.
for _ in $(seq 1 30); do
  if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    echo "prepare-host: Docker Engine $(docker version --format '{{.Server.Version}}') is running"
    exit 0
  fi
  sleep 1
done
echo "prepare-host: Docker Engine did not answer within 30 s; see 'journalctl -u docker'" >&2
exit 1
