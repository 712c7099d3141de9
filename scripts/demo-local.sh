#!/usr/bin/env bash
# Wharf's main job on this one machine, without a fleet (lighter than scripts/demo.sh,
# which gives every host its own Docker Engine):
#   a real Distribution registry with a password, the two-version sample image pushed
#   to it, `wharf server` on its embedded store, two `wharf agent`s, and the sample
#   app published to them in two batches — v1, then v2 over it — answering on /hello.
# Everything it starts is stopped on exit; set DEMO_KEEP=1 to keep it running.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

bash scripts/setup.sh
say "building wharf"
cargo build --quiet -p wharf
wharf="$repo/target/debug/wharf"

work=$(mktemp -d /tmp/wharf-demo.XXXXXX)
pids=()
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "DEMO_KEEP=1: leaving everything running; logs in $work"
    return
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  docker ps -aq --filter "label=wharf.demo=$demo_id" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker rm -f $(docker ps -aq --filter "name=wharf-sample-i-") >/dev/null 2>&1 || true
  docker rmi -f "wharf-demo-$demo_id:v1" "wharf-demo-$demo_id:v2" >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep "^127.0.0.1:$reg_port/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
demo_id=$(basename "$work" | tr 'A-Z.' 'a-z-')
reg_port=0
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "1. a real registry with a password"
reg_port=$(free_port)
reg_user=demo
reg_pass="demo-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')?>"
mkdir -p "$work/registry"
printf '%s\n' "$reg_pass" | htpasswd -iBc "$work/registry/htpasswd" "$reg_user" 2>/dev/null
cat >"$work/registry/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$reg_port
auth:
  htpasswd:
    realm: wharf-demo
    path: $work/registry/htpasswd
YAML
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$reg_port/v2/" || true)
  [ "$code" = 401 ] && break
  sleep 0.1
done
echo "registry at 127.0.0.1:$reg_port (user $reg_user, bcrypt htpasswd)"

say "2. the sample image, v1 and v2, pushed to it"
for v in v1 v2; do
  sample-app/build.sh "$v" "wharf-demo-$demo_id:$v" >/dev/null
  docker tag "wharf-demo-$demo_id:$v" "127.0.0.1:$reg_port/demo/hello:$v"
done
# A private docker config, so the demo's push login never lands in ~/.docker.
export DOCKER_CONFIG="$work/docker-config"
printf '%s' "$reg_pass" | docker login "127.0.0.1:$reg_port" -u "$reg_user" --password-stdin >/dev/null
for v in v1 v2; do
  docker push -q "127.0.0.1:$reg_port/demo/hello:$v" >/dev/null
  docker rmi "127.0.0.1:$reg_port/demo/hello:$v" >/dev/null
done
docker logout "127.0.0.1:$reg_port" >/dev/null
unset DOCKER_CONFIG
echo "pushed 127.0.0.1:$reg_port/demo/hello:v1 and :v2 (and removed them locally, so the agents really pull)"

say "3. the server, on its embedded store"
"$wharf" server --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
server_url=$(sed -n 's/.*listening on //p' "$work/server.out")
export WHARF_SERVER="$server_url"
WHARF_TOKEN=$(cat "$work/data/admin.token")
export WHARF_TOKEN
echo "server at $server_url; admin token in $work/data/admin.token"

say "4. two agents"
token=$("$wharf" instance token create --ttl 10m --uses 2)
for host in demo-host-1 demo-host-2; do
  WHARF_REGISTRATION_TOKEN="$token" "$wharf" agent --server "$server_url" \
    --state-dir "$work/$host" --name "$host" 2>"$work/$host.log" &
  pids+=($!)
done
for _ in $(seq 1 100); do
  online=$("$wharf" instance list --output json | python3 -c 'import json,sys; print(sum(i["status"]=="online" for i in json.load(sys.stdin)))')
  [ "$online" = 2 ] && break
  sleep 0.2
done
run "$wharf" instance list

say "5. application, group, registry, deployments"
# Both agents share this machine's Docker Engine, so each container gets a port of
# its own; on a real fleet the start script publishes 8080 on every host.
sed 's/^port=.*/port=random/' sample-app/deploy/start.sh >"$work/start.sh"
cp sample-app/deploy/stop.sh "$work/stop.sh"
run "$wharf" app create demo --description "Wharf's sample app"
run "$wharf" group create demo prod
run "$wharf" group add-instances demo prod demo-host-1 demo-host-2
printf '$ %s\n' "wharf registry create local --endpoint 127.0.0.1:$reg_port --username $reg_user --password-stdin"
printf '%s' "$reg_pass" | "$wharf" registry create local --endpoint "127.0.0.1:$reg_port" --username "$reg_user" --password-stdin
for v in v1 v2; do
  run "$wharf" deployment create demo "$v" --type docker-image --registry local --namespace demo \
    --repository hello --tag "$v" --workdir "$work/app" --start-script "$work/start.sh" --stop-script "$work/stop.sh"
done

answers() {
  for c in $(docker ps --filter "name=wharf-sample-i-" --format '{{.Names}}' | sort); do
    port=$(docker port "$c" 8080/tcp | head -1 | sed 's/.*://')
    printf '  %s on 127.0.0.1:%s answers: %s\n' "$c" "$port" "$(curl -s "http://127.0.0.1:$port/hello")"
  done
}

say "6. publish v1 in two batches"
run "$wharf" release create demo prod --deployment v1 --batches 2
answers

say "7. publish v2 over it"
run "$wharf" release create demo prod --deployment v2 --batches 2
answers
run "$wharf" group show demo prod

say "done"
echo "Logs: $work/{server,demo-host-1,demo-host-2,registry}.log (removed on exit unless DEMO_KEEP=1)"
