#!/bin/sh
# The main process of a Wharf fleet host (a container made from the fleet host image;
# tini is PID 1 and reaps orphans). Baked into the image by
# crates/wharf-testkit/src/host_image.rs; changing this file changes the image's tag.
#
# Arguments: extra dockerd arguments (e.g. --insecure-registry 172.18.0.1:41234). They
# are kept in /run/wharf/dockerd.args so that `wharf-host-dockerd` can start the engine
# again after a test stopped it.
set -eu
mkdir -p /run/wharf
: > /run/wharf/dockerd.args
for arg in "$@"; do
  printf '%s\n' "$arg" >> /run/wharf/dockerd.args
done

# cgroup v2 with a private cgroup namespace: the engine must not create cgroups beside
# processes ("no internal processes"), so everything here moves to a leaf first, as the
# official docker:dind entrypoint does. cgroup v1 (and v2 in the host namespace) needs
# nothing: the engine's relative --cgroup-parent puts every nested container below this
# host's own cgroup, so `docker pause` of the host freezes its apps too.
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ "$(cat /proc/self/cgroup)" = "0::/" ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi

/usr/local/sbin/wharf-host-dockerd
exec sleep infinity
