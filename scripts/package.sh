#!/usr/bin/env bash
# Builds Wharf's release artifacts in dist/:
#   wharf-VERSION-x86_64-linux.tar.gz   the static binary, the systemd units, the
#                                        configuration examples and a README excerpt
#   wharf_VERSION-1_amd64.deb            the same, installed (cargo-deb): /usr/bin/wharf,
#                                        the units, /etc/wharf/, the `wharf` user
#   wharf-server-VERSION.image.tar       the server's container image (`docker save`),
#                                        also tagged wharf-server:VERSION locally
#   SHA256SUMS
# The binary is linked statically (gnu target with crt-static), so the same file runs
# on any x86_64 Linux host and in the `FROM scratch` image (packaging/Dockerfile).
#
# Usage: scripts/package.sh [--no-image]
set -euo pipefail
cd "$(dirname "$0")/.."

build_image=1
for arg in "$@"; do
  case "$arg" in
    --no-image) build_image=0 ;;
    -h | --help)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "package: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: cargo-deb is missing: run scripts/setup.sh (or cargo install cargo-deb --locked)" >&2
  exit 1
fi

target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ -z "$version" ]; then
  echo "package: no version in Cargo.toml" >&2
  exit 1
fi

echo "package: building the static release binary ($target)" >&2
# With --target, RUSTFLAGS reach only the target's code, not build scripts and
# proc macros, which must stay dynamically linked.
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked -p wharf --target "$target"
binary="$target_dir/$target/release/wharf"
# A static(-pie) binary has no libraries for ldd to list.
if ldd "$binary" 2>&1 | grep -q '=>'; then
  echo "package: $binary is dynamically linked; expected a static binary" >&2
  exit 1
fi

rm -rf dist
mkdir -p dist
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

echo "package: tarball" >&2
name="wharf-$version-x86_64-linux"
mkdir -p "$stage/$name/systemd" "$stage/$name/etc"
install -m 0755 "$binary" "$stage/$name/wharf"
install -m 0644 packaging/systemd/*.service "$stage/$name/systemd/"
install -m 0644 packaging/etc/server.toml "$stage/$name/etc/"
install -m 0600 packaging/etc/server.env packaging/etc/agent.env "$stage/$name/etc/"
# The README's introduction and its Production section.
awk '
  /^## / { intro = 0; keep = ($0 == "## Production") }
  NR == 1 { intro = 1 }
  intro || keep { print }
' README.md >"$stage/$name/README.md"
tar -C "$stage" --owner=0 --group=0 -czf "dist/$name.tar.gz" "$name"

echo "package: Debian package" >&2
cargo deb -p wharf --no-build --target "$target" --fast -o dist/ >/dev/null

if [ "$build_image" = 1 ]; then
  echo "package: container image wharf-server:$version" >&2
  context="$stage/image"
  mkdir -p "$context/data"
  install -m 0755 "$binary" "$context/wharf"
  docker build -q -f packaging/Dockerfile -t "wharf-server:$version" "$context" >/dev/null
  docker save -o "dist/wharf-server-$version.image.tar" "wharf-server:$version"
  chmod 0644 "dist/wharf-server-$version.image.tar"
fi

(cd dist && sha256sum -- * >SHA256SUMS)
ls -l dist >&2
