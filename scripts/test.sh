#!/usr/bin/env bash
# Runs Wharf's whole test suite: formatting and lints, then every test tier
# (unit, handler, store conformance, CLI against a real server, agent against the
# real Docker Engine and a real registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== shellcheck (packaging)"
shellcheck scripts/package.sh scripts/setup.sh scripts/test.sh packaging/deb/postinst \
  packaging/deb/prerm packaging/deb/postrm
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
log=target/test-output.txt
: >"$log"
status=0
cargo test --workspace --exclude wharf-testkit --no-fail-fast 2>&1 | tee -a "$log" || status=$?
# The fleet tier runs last and shows its output even when it passes: each scenario
# prints its phases and measured durations, so a slow tier is visible in the log.
echo "== cargo test -p wharf-testkit (registry, sample image, fleet)"
cargo test -p wharf-testkit --no-fail-fast -- --show-output 2>&1 | tee -a "$log" || status=$?
# One closing line for both runs.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
