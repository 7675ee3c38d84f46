#!/usr/bin/env python3
"""Self instruction counts of one callgrind dump, per source line and per category.

    callgrind_lines.py DUMP PAIRS [--lines N]

Reads the callgrind format directly (callgrind_annotate 3.19 mis-reads dumps taken with
CALLGRIND_DUMP_STATS_AT after CALLGRIND_ZERO_STATS: it books the whole run as self cost of
__libc_start_main). With LTO nearly all of libconnpool is inlined into connpool_acquire and
connpool_release, so costs are attributed by the source file and function of each inlined
line (callgrind's fi=/fe= records), then grouped into the categories below. Prints
instructions per acquire+release pair (total Ir / PAIRS)."""
import re
import sys
from collections import defaultdict

# (category, test on (object, function, file)); the first match wins.
CATEGORIES = [
    ("harness loop + indirect calls (bench)", lambda o, fn, f: "connpool_bench" in o),
    ("entry removed on empty / re-inserted on release (recycle, new_stack, shrink check, key copy)",
     lambda o, fn, f: any(s in fn for s in ("recycle", "new_stack", "shrink_if_sparse"))
     or "memmove" in f or "memcpy" in fn),
    ("key length scan (strnlen)", lambda o, fn, f: "strnlen" in fn or "strlen" in f),
    ("key hash (src/key.rs)", lambda o, fn, f: f.endswith("src/key.rs")),
    ("clock read (clock_gettime COARSE + clock.rs/sys.rs)",
     lambda o, fn, f: "clock_gettime" in fn or f.endswith("src/clock.rs") or f.endswith("src/ffi/sys.rs")),
    ("shard lock + unlock (parking_lot, atomics, lock.rs)",
     lambda o, fn, f: "parking_lot" in f or "lock_api" in f or f.endswith("sync/atomic.rs") or f.endswith("src/lock.rs")),
    ("table probe + key compare (hashbrown, memcmp)",
     lambda o, fn, f: "hashbrown" in f or "memcmp" in fn or "bcmp" in fn or f.endswith("slice/cmp.rs")),
    ("C ABI wrapper: argument checks, catch_unwind, fd conversion (capi.rs)",
     lambda o, fn, f: f.endswith("src/ffi/capi.rs") or "panic" in f or "panicking" in f),
    ("pool logic (src/pool.rs: expiry check, stack push/pop, counters)",
     lambda o, fn, f: f.endswith("src/pool.rs")),
    ("inlined core/alloc helpers (Vec, ptr, slice, int ops)",
     lambda o, fn, f: "/library/core/" in f or "/library/alloc/" in f or "/library/std/" in f),
    ("other", lambda o, fn, f: True),
]


def parse(path):
    names = {"fl": {}, "fn": {}, "ob": {}}
    space = {"fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl", "fn": "fn",
             "cfn": "fn", "ob": "ob", "cob": "ob"}
    cost = defaultdict(int)  # (ob, fn, file, line) -> self Ir
    ob = fl = fi = fn = ""
    last = 0
    skip_next = False
    spec = re.compile(r"^(fl|fi|fe|fn|ob|cob|cfi|cfl|cfn)=\((\d+)\)(?: (.*))?$")
    with open(path) as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            m = spec.match(line)
            if m:
                kind, ident, name = m.groups()
                table = names[space[kind]]
                if name is not None:
                    table[ident] = name
                name = table.get(ident, "?")
                if kind == "ob":
                    ob = name
                elif kind == "fl":
                    fl = fi = name
                elif kind in ("fi", "fe"):
                    fi = name
                elif kind == "fn":
                    fn = name
                    fi = fl
                continue
            if line.startswith("calls="):
                skip_next = True  # the next cost line is the call's inclusive cost
                continue
            if not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            pos = parts[0]
            if pos == "*":
                cur = last
            elif pos[0] in "+-":
                cur = last + int(pos)
            else:
                cur = int(pos)
            last = cur
            if skip_next:
                skip_next = False
                continue
            if len(parts) > 1:
                cost[(ob, fn, fi, cur)] += int(parts[1])
    return cost


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, pairs = sys.argv[1], int(sys.argv[2])
    nlines = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--lines" else 25
    cost = parse(path)
    total = sum(cost.values())
    cats = defaultdict(int)
    for (ob, fn, f, line), ir in cost.items():
        for name, test in CATEGORIES:
            if test(ob, fn, f):
                cats[name] += ir
                break
    print(f"{total / pairs:8.1f}  Ir per pair in all ({total} Ir / {pairs} pairs)")
    for name, _ in CATEGORIES:
        if cats[name]:
            print(f"{cats[name] / pairs:8.1f}  {name}")
    print(f"\ntop {nlines} source lines (self Ir per pair, function, file:line):")
    for (ob, fn, f, line), ir in sorted(cost.items(), key=lambda kv: -kv[1])[:nlines]:
        short = re.sub(r"^.*/(src|library|sysdeps)/", r"\1/", f)
        print(f"{ir / pairs:8.1f}  {fn[:40]:40s} {short}:{line}")


if __name__ == "__main__":
    main()
