#!/usr/bin/env bash
# Runs one benchmark command on as quiet a machine as this shared host allows:
#   - under $QUIET_SH when set (a wrapper that stops the machine's background jobs meanwhile);
#   - in a session of its own whose scheduler autogroup gets nice -20 (with autogroup
#     scheduling, nice values only rank processes inside one session; other sessions'
#     niced jobs would otherwise still get an equal share of the cores);
#   - the command itself at nice -10.
# Raising priority needs root; without it the command runs at normal priority.
#
#   benchmarks/run_quiet.sh python benchmarks/synthesis_speed.py --models=default ...
set -u
inner='echo -20 > /proc/self/autogroup 2>/dev/null; nice -n -10 true 2>/dev/null && exec nice -n -10 "$@"; exec "$@"'
quiet=${QUIET_SH:-}
if [ -n "$quiet" ] && [ -x "$quiet" ]; then
  exec "$quiet" setsid -w bash -c "$inner" bash "$@"
fi
exec setsid -w bash -c "$inner" bash "$@"
