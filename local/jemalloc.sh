# Sourced by local/run.sh and the bench scripts that train: every mlkd command runs with jemalloc
# when the system has it (Debian's libjemalloc2). A CPU training step under glibc's malloc slows
# down as a run goes on, under jemalloc it does not (about 1.5 times as fast over a demo teacher's
# run: bench/README.md). MLKD_MALLOC=glibc opts out.
if [ "${MLKD_MALLOC:-jemalloc}" = jemalloc ]; then
  # awk reads the whole listing: leaving early would end ldconfig with SIGPIPE, and pipefail the run
  jemalloc=$(ldconfig -p 2>/dev/null | awk '$1 == "libjemalloc.so.2" { path = $NF } END { print path }')
  if [ -n "$jemalloc" ]; then export LD_PRELOAD="$jemalloc${LD_PRELOAD:+:$LD_PRELOAD}"; fi
fi
