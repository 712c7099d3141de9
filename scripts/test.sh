#!/usr/bin/env bash
# Runs Wharf's whole test suite: formatting and lints, then every test tier
# (unit, handler, store conformance, CLI against a real server, agent against the
# real Docker Engine and a real registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
