#!/usr/bin/env bash
# The target "2 threads on different keys: no shared cache line written on the hot path".
# Runs connpool_bench --sharing under valgrind's lackey (every store logged) and prints,
# per pool, the 64-byte lines written by thread 0's pairs on key 0 and by thread 1's on
# key 1, and the lines both wrote, with the mapping each lies in. The threads take turns
# (sharing.c), so the log says which thread wrote what; the control rows check the method:
# the C string floor (one lock, one table) must share lines, the C handle floor none.
#
#   bench/sharing.sh [BUILD_DIR]      (default: build; PAIRS per thread, default 200)
#   SHARING_SAME_KEY=1 bench/sharing.sh   both threads on one key: the lines a contended
#                                         key moves between cores
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
bench=$build/bench/connpool_bench
out=$build/sharing
command -v valgrind >/dev/null || { echo "sharing.sh: valgrind is not installed" >&2; exit 77; }
command -v python3 >/dev/null || { echo "sharing.sh: python3 is needed" >&2; exit 77; }
[ -x "$bench" ] || { echo "sharing.sh: build first ($bench is missing)" >&2; exit 1; }
mkdir -p "$out"
valgrind --tool=lackey --trace-mem=yes --log-file="$out/lackey.log" \
  "$bench" --sharing --pairs "${PAIRS:-200}" >"$out/bench.out"
python3 - "$out/bench.out" "$out/lackey.log" <<'PY'
import sys
bench, log = sys.argv[1], sys.argv[2]
names, maps = [], []
for line in open(bench):
    if line.startswith("sharing: begin="):
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        begin, end = int(f["begin"], 16), int(f["end"], 16)
        print("keys %s; %s pairs per thread" % (f["keys"], f["pairs"]))
    elif line.startswith("sharing: contender="):
        names.append(line.split("=", 1)[1].strip())
    elif line.startswith("map: "):
        p = line[5:].split()
        lo, hi = (int(x, 16) for x in p[0].split("-"))
        maps.append((lo, hi, p[1], int(p[2], 16), p[5] if len(p) > 5 else "[anon]"))
phases, cur = [], None
for line in open(log):
    if line[:2] not in (" S", " M"):
        continue
    addr_s, size_s = line[3:].split(",")
    addr = int(addr_s, 16)
    if addr == begin:
        cur = set()
        continue
    if addr == end and cur is not None:
        phases.append(cur)
        cur = None
        continue
    if cur is not None:
        for a in range(addr >> 6, (addr + int(size_s) - 1 >> 6) + 1):
            cur.add(a)
def where(line):
    a = line << 6
    for lo, hi, perm, off, path in maps:
        if lo <= a < hi:
            return "%s %s +0x%x" % (path.rsplit("/", 1)[-1], perm, a - lo + off)
    return "?"
if len(phases) != 2 * len(names):
    sys.exit("sharing.sh: %d phases for %d pools (see the logs)" % (len(phases), len(names)))
print("%-58s %9s %9s %7s" % ("pool, idle fds", "thread 0", "thread 1", "shared"))
for i, name in enumerate(names):
    a, b = phases[2 * i], phases[2 * i + 1]
    both = sorted(a & b)
    print("%-58s %9d %9d %7d" % (name, len(a), len(b), len(both)))
    for line in both:
        print("    shared line 0x%x: %s" % (line << 6, where(line)))
print("(lines of 64 bytes written by each thread's pairs on its own key; 'shared': written by both)")
PY
