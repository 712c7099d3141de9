#!/usr/bin/env bash
# Removes what a fleet run left behind: its hosts (containers), their /var/lib/docker
# volumes and its network, all named after and labelled with the run id.
#
#   scripts/fleet/cleanup.sh wharf-fleet-0123456789ab   # one run (e.g. kept with WHARF_FLEET_KEEP=1)
#   scripts/fleet/cleanup.sh --list                     # what fleet runs exist
#
# A fleet removes all of this itself when its test ends; this is for runs kept on purpose
# or killed before they could clean up (the next fleet start also removes leftovers of
# runs whose test process is gone). It never touches anything without the fleet label.
set -euo pipefail

label=wharf.fleet.run
if [ "${1:-}" = "--list" ] || [ $# -eq 0 ]; then
  echo "containers:"; docker ps -a --filter "label=$label" --format '  {{.Names}}\t{{.Status}}\t{{.Label "wharf.fleet.run"}}'
  echo "volumes:";    docker volume ls --filter "label=$label" --format '  {{.Name}}'
  echo "networks:";   docker network ls --filter "label=$label" --format '  {{.Name}}'
  [ $# -eq 0 ] && echo "usage: $0 RUN_ID | --list" >&2
  exit 0
fi

run="$1"
case "$run" in
  wharf-fleet-*) ;;
  *) echo "not a fleet run id: $run (expected wharf-fleet-...)" >&2; exit 2 ;;
esac
filter="label=$label=$run"
containers=$(docker ps -aq --filter "$filter")
[ -z "$containers" ] || docker rm -f -v $containers >/dev/null
volumes=$(docker volume ls -q --filter "$filter")
[ -z "$volumes" ] || docker volume rm -f $volumes >/dev/null
networks=$(docker network ls -q --filter "$filter")
[ -z "$networks" ] || docker network rm $networks >/dev/null
for dir in "${TMPDIR:-/tmp}/$run"-*; do
  if [ -d "$dir" ]; then rm -rf "$dir"; fi
done
echo "removed fleet $run"
