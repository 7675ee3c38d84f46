#!/usr/bin/env bash
# Run one test binary under memcheck; fail on memory errors, definite or
# possible leaks, or leaked file descriptors.
#   usage: valgrind.sh VALGRIND LOGFILE PROGRAM [ARGS...]
set -uo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 VALGRIND LOGFILE PROGRAM [ARGS...]" >&2
  exit 2
fi
valgrind=$1 log=$2
shift 2
if ! command -v "$valgrind" >/dev/null 2>&1; then
  echo "memcheck: valgrind not installed (apt-get install valgrind): skipped"
  exit 77 # ctest SKIP_RETURN_CODE
fi
mkdir -p "$(dirname "$log")"
rm -f "$log"

"$valgrind" --tool=memcheck --error-exitcode=99 \
  --leak-check=full --show-leak-kinds=definite,possible \
  --errors-for-leak-kinds=definite,possible \
  --track-fds=yes --child-silent-after-fork=yes \
  --log-file="$log" "$@"
rc=$?

if [ ! -s "$log" ]; then
  echo "memcheck: no valgrind log at $log (exit status $rc)" >&2
  exit 1
fi

# --track-fds=yes does not change the exit status: an "Open ..." entry with a
# stack that is not <inherited from parent> is a descriptor the program leaked.
fds=$(awk '/Open (file descriptor|AF_|socket)/{p=1;next} p&&/inherited from parent/{p=0;next} p&&/== +(at|by) /{n++;p=0} END{print n+0}' "$log")
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9][0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
errors=${errors:-unknown}

status=0
if [ "$rc" -eq 77 ] && [ "$errors" = 0 ] && [ "$fds" -eq 0 ]; then
  status=77 # the program skipped itself (ctest SKIP_RETURN_CODE), cleanly
elif [ "$rc" -ne 0 ] || [ "$errors" != 0 ] || [ "$fds" -ne 0 ]; then
  status=1
  echo "----- valgrind log: $log -----"
  cat "$log"
  echo "----- end of valgrind log (program exit status $rc) -----"
fi
echo "memcheck: $errors errors, $fds leaked fds"
exit "$status"
