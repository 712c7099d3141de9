#!/usr/bin/env bash
# Wharf's main job, end to end, on a small real fleet: two hosts (containers with
# their own Docker Engine, on a private network), a real registry with a password,
# the two-version sample image pushed to it, `wharf server` on its embedded store, a
# `wharf agent` on each host, and the sample app published in two batches — v1, then
# v2 over it — answering on http://HOST:8080/hello. It prints every command it runs
# and where to look.
#
#   scripts/demo.sh           run it and clean up
#   scripts/demo.sh --keep    keep the fleet, server and console up until Ctrl-C
#
# The first run builds the hosts' image with debootstrap (about a minute); later runs
# reuse it. scripts/demo-local.sh does the same on this machine's own Docker Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet -p wharf
exec cargo run --quiet -p wharf-testkit --bin fleet-demo -- "$@"
