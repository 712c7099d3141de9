# Stop script of the sample deployment: removes the sample container of this
# instance, whatever version runs in it, and succeeds when none runs.
set -euo pipefail
name="wharf-sample-${WHARF_INSTANCE}"
if docker container inspect "$name" >/dev/null 2>&1; then
  docker rm -f "$name" >/dev/null
  echo "removed $name"
else
  echo "nothing to stop: $name does not exist"
fi
