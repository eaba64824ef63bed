# Process checks for the scripts that start and stop servers (sourced, not run).
# A killed process whose parent is gone stays a zombie until the system's init reaps it, and
# `kill -0` succeeds on a zombie: a script that took that for "running" would skip a restart.

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
