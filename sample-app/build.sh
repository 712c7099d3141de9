#!/bin/sh
# Builds Wharf's sample application image with the docker CLI.
#
#   sample-app/build.sh VERSION TAG      e.g.  sample-app/build.sh v1 wharf-sample:v1
#
# The image's GET /hello then answers "hello from VERSION". BUSYBOX may name another
# static busybox binary (default /bin/busybox, from Debian's busybox-static).
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 VERSION TAG" >&2
    exit 2
fi
version=$1
tag=$2
# The version lands in a sed replacement and a file, so only plain tag-like text is allowed.
case $version in
    '' | *[!A-Za-z0-9._-]*)
        echo "$0: VERSION must be made of A-Z a-z 0-9 . _ - (got '$version')" >&2
        exit 2
        ;;
esac

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ]; then
    echo "$0: $busybox is missing: install Debian's busybox-static" >&2
    exit 1
fi

# The build context is a temporary directory, so the busybox copy never lands in the repo.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
trap 'exit 130' INT TERM
cp "$here/Dockerfile" "$context/Dockerfile"
cp "$busybox" "$context/busybox"
sed "s/@VERSION@/$version/" "$here/hello.in" >"$context/hello"

docker build --build-arg "VERSION=$version" -t "$tag" "$context"
