#!/usr/bin/env bash
# Submit command of profiles/cluster-generic: "a cluster of one machine".
#
# snakemake-executor-plugin-cluster-generic calls `submit.sh JOBSCRIPT` from
# the project folder, once per job (or group job), and reads the job id from
# the first line of our stdout. The job script runs `snakemake` on that one
# job; here it is started as a detached local process in its own session
# (setsid), as a batch system would start it on a node: it shares nothing
# with the main Snakemake process but the files of the project.
#
# Per job, in .snakemake/cluster-generic/: ID.pid (its process id), ID.log
# (its stdout and stderr), ID.times (CPU time of the job's processes, from
# bash's `times`) and ID.exit (its exit status, written last); status.sh
# and cancel.sh read them.
set -euo pipefail
jobscript="$1"
dir=".snakemake/cluster-generic"
mkdir -p "$dir"
stem="$(mktemp "$dir/job.XXXXXXXX")"
id="$(basename "$stem")"
rm -f "$stem"
# The job's process: writes its pid, runs the job script, then its exit
# status (atomically: status.sh never reads a half-written file).
runner='echo $$ > "$1.pid"; bash "$2" > "$1.log" 2>&1; s=$?; times > "$1.times"
        echo $s > "$1.exit.tmp"; mv "$1.exit.tmp" "$1.exit"'
if command -v setsid > /dev/null 2>&1; then
  setsid nohup bash -c "$runner" job "$dir/$id" "$jobscript" < /dev/null > /dev/null 2>&1 &
else
  nohup bash -c "$runner" job "$dir/$id" "$jobscript" < /dev/null > /dev/null 2>&1 &
fi
# Report the id once the job's process exists (so that status.sh can see it).
for _ in $(seq 100); do
  [ -s "$dir/$id.pid" ] && { echo "$id"; exit 0; }
  sleep 0.05
done
echo "submit.sh: the job process for $jobscript did not start" >&2
exit 1
