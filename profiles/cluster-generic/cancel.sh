#!/usr/bin/env bash
# Cancel command of profiles/cluster-generic: stops the jobs with the given
# ids (Ctrl-C of the main Snakemake process). Each job runs in its own
# session (submit.sh uses setsid), so its whole process group is signalled.
set -uo pipefail
dir=".snakemake/cluster-generic"
for id in "$@"; do
  pid="$(cat "$dir/$id.pid" 2> /dev/null)" || continue
  kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
done
