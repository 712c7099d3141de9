#!/usr/bin/env bash
# Wharf's benchmarks (issue #7): builds the release binaries and runs wharf-bench,
# which prints a table of figures measured on this machine, each against a baseline
# run in the same invocation. See BENCHMARKS.md for the method and the figures.
#
#   scripts/bench.sh                 # everything: overhead, swarm (1,000 and 10,000), agent
#   scripts/bench.sh swarm --agents 10000
#   scripts/bench.sh overhead --quick
#   scripts/bench.sh --smoke         # CI: a 200-agent swarm on debug binaries; exit 0 if it ran
#
# The docker-image overhead figure needs a running Docker Engine and Debian's
# docker-registry (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

# 10,000 simulated agents hold 10,000 connections, in this process and in the
# server's: raise the soft open-files limit to the hard one (children inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${1:-}" = "--smoke" ]; then
  shift
  # The smoke run only proves the benchmark still works, so it uses the debug
  # build the test suite has already made rather than a slow release build.
  cargo build --quiet -p wharf -p wharf-bench
  exec target/debug/wharf-bench smoke --wharf target/debug/wharf "$@"
fi

cargo build --quiet --release -p wharf -p wharf-bench
exec target/release/wharf-bench "${@:-all}"
