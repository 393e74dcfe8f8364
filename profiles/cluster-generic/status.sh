#!/usr/bin/env bash
# Status command of profiles/cluster-generic: prints running, success or
# failed for a job id printed by submit.sh (files in .snakemake/cluster-generic/).
set -uo pipefail
dir=".snakemake/cluster-generic"
id="$1"
verdict() {  # from the exit status the job wrote when it ended
  if [ "$(cat "$dir/$id.exit")" = 0 ]; then echo success; else echo failed; fi
}
if [ -f "$dir/$id.exit" ]; then
  verdict
elif [ -s "$dir/$id.pid" ] && kill -0 "$(cat "$dir/$id.pid")" 2> /dev/null; then
  echo running
elif [ -f "$dir/$id.exit" ]; then  # it ended between the two checks
  verdict
else  # gone without an exit status: killed
  echo failed
fi
