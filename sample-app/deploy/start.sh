# Start script of the sample deployment, run by the Wharf agent with bash in the
# deployment's working directory. The agent has already pulled $WHARF_IMAGE, so no
# `docker pull` (and no registry credential) is needed here.
#
# The container is named after the instance so that several agents on one machine
# (as in scripts/demo.sh) do not collide; on a real fleet every host runs its own.
set -euo pipefail
name="wharf-sample-${WHARF_INSTANCE}"
# The host port; scripts/demo.sh, which runs two agents on one machine, rewrites this
# line to `port=random`.
port=8080
if [ "$port" = "random" ]; then
  publish="127.0.0.1::8080"
else
  publish="${port}:8080"
fi
docker run -d --name "$name" --restart unless-stopped -p "$publish" \
  --label "wharf.release=${WHARF_RELEASE}" "$WHARF_IMAGE"
# Wait until the app answers inside its container, so the step fails here, with the
# container's log, rather than later.
for _ in $(seq 1 50); do
  if docker exec "$name" /bin/busybox wget -qO- http://127.0.0.1:8080/hello; then
    exit 0
  fi
  sleep 0.2
done
docker logs "$name" >&2 || true
echo "the sample app did not answer on /hello" >&2
exit 1
