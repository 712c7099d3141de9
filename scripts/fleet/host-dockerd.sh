#!/bin/sh
# Starts the fleet host's own Docker Engine in the background with the arguments the
# host was started with (see wharf-host-init). Its log goes to /var/log/dockerd.log and
# its pid to /run/docker.pid (written by dockerd). Baked into the fleet host image.
set -eu
set --
while IFS= read -r arg; do
  set -- "$@" "$arg"
done < /run/wharf/dockerd.args
# A relative cgroup parent is created below the engine's own cgroup, i.e. inside this
# host's container: the host's apps are frozen, killed and accounted with the host.
nohup dockerd --cgroup-parent wharf-nested "$@" >> /var/log/dockerd.log 2>&1 < /dev/null &
