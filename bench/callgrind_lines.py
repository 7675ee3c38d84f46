#!/usr/bin/env python3
"""Where a callgrind dump's instructions go, per category and per source frame.

    callgrind_lines.py DUMP PAIRS [--lines N]

DUMP is one dump of `connpool_bench --callgrind` run under
`valgrind --tool=callgrind --dump-instr=yes` (bench/callgrind.sh does that). Prints
instructions per acquire+release pair (the dump's Ir / PAIRS).

Why not callgrind_annotate: with LTO nearly all of libconnpool is inlined into
connpool_acquire and connpool_release, and callgrind books each instruction to the innermost
inlined line only (often a core::ptr or core::slice helper). Here every instruction address
of a Rust library is mapped with `addr2line -i` to its whole inline chain, and booked to the
innermost frame that is the crate's own code or a dependency's (src/**.rs, hashbrown), not
Rust's standard library. Calls from the library into libc (strnlen,
memcmp, memcpy, clock_gettime) are booked, inclusive, to the instruction that calls them.
(callgrind_annotate 3.19 also books a dump taken after CALLGRIND_ZERO_STATS entirely to
__libc_start_main.)"""
import re
import subprocess
import sys
from collections import defaultdict

CLOCK_FNS = ("now_ns", "clock_ns", "coarse_now_ns", "precise_now_ns")
POOL_FILES = ("src/stats.rs", "src/config.rs", "src/closer.rs", "src/conn.rs")


def under(f, *dirs):
    """Whether source file f is in one of the crate's directories (e.g. "src/pool/")."""
    return any(("/" + d) in f for d in dirs)


# (category, test on (object, frame function, frame file, libc callee, files of the whole
# inline chain, frame line)); first match wins. addr2line names an inlined function by its
# short name only ("new", "drop"), so some tests go by the lines of an item in the source.
CATEGORIES = [
    ("harness: loop + indirect calls (bench)", lambda o, fn, f, c, ch, ln: "connpool_bench" in o),
    ("idle watcher: watch.rs (its timer lock included) + epoll_ctl/timerfd wrappers",
     lambda o, fn, f, c, ch, ln: any(x.endswith("src/watch.rs") for x in ch) or "epoll" in c
     or "timerfd" in c or "epoll_" in fn or "timerfd_" in fn),
    ("liveness check: recv(MSG_PEEK) wrapper (sys/io.rs peek; the syscall is not counted)",
     lambda o, fn, f, c, ch, ln: name_of(fn) == "peek" or "recv" in c or "syscall" in c),
    ("key length scan: strnlen (capi key_arg)", lambda o, fn, f, c, ch, ln: "strlen" in c or "strnlen" in c),
    ("clock read: clock_gettime(COARSE) + conversion",
     lambda o, fn, f, c, ch, ln: "clock_gettime" in c or fn in CLOCK_FNS or f.endswith("src/clock.rs")
     or f.endswith("src/sys/time.rs")),
    ("entry bookkeeping: new, emptied or swept entries (Entry::new, sweep_empty, retain, shrink)",
     lambda o, fn, f, c, ch, ln: name_of(fn) in ENTRY_FNS or "VacantEntry" in fn),
    ("shard lock + unlock: cell/lock.rs", lambda o, fn, f, c, ch, ln: f.endswith("src/cell/lock.rs")),
    ("table probe + key compare: shard/index.rs (or hashbrown before 0.2), key_eq",
     lambda o, fn, f, c, ch, ln: "hashbrown" in f or "shard/index.rs" in f or "memcmp" in c or "bcmp" in c or "key_eq" in fn),
    ("key hash: key.rs hash_key (keyed folded multiplies)",
     lambda o, fn, f, c, ch, ln: f.endswith("src/key.rs")),
    ("fd table + process generation (fd_table.rs, cell/, process.rs, sys/fork.rs)",
     lambda o, fn, f, c, ch, ln: f.endswith(("src/fd_table.rs", "src/process.rs", "src/sys/fork.rs"))
     or under(f, "src/cell/")),
    ("C ABI: argument checks, catch_unwind, fd conversion (capi/)",
     lambda o, fn, f, c, ch, ln: under(f, "src/capi/") or "panic" in f),
    ("pool logic: shard pick + probe setup (shard: h >> 32, h2 tag, spilled invariants)",
     lambda o, fn, f, c, ch, ln: under(f, "src/pool/") and name_of(fn) == "shard"),
    ("pool logic: entries and shard guard (shard/: push/pop/expire test, counters, gauge)",
     lambda o, fn, f, c, ch, ln: under(f, "src/shard/")),
    ("pool logic: close-after-unlock list (closer.rs)",
     lambda o, fn, f, c, ch, ln: f.endswith("src/closer.rs")),
    ("pool logic: acquire/release bodies (pool/: take, release_conn: deadlines, counters...)",
     lambda o, fn, f, c, ch, ln: under(f, "src/pool/") or f.endswith(POOL_FILES)),
    ("Rust std, not attributable to the crate", lambda o, fn, f, c, ch, ln: "/rustc/" in f),
    ("other", lambda o, fn, f, c, ch, ln: True),
]

RUST_STD = re.compile(r"^/rustc/")

# Functions that create, empty, sweep or resize key entries (not the probe of an existing one).
ENTRY_FNS = ("sweep_empty", "shrink_if_sparse", "shrink_to", "retain", "remove", "insert",
             "reserve_rehash", "resize")


_items = {}


def item_lines(path, pattern):
    """The line numbers of the top-level items (fn, struct, impl...) of source file path
    whose first line matches pattern: from that line to the next "}" in column 0."""
    key = (path, pattern)
    if key not in _items:
        lines, start = set(), None
        try:
            with open(path) as fh:
                for i, text in enumerate(fh, 1):
                    if start is None and re.match(r"^(pub(\([a-z]+\))? )?(fn|struct|impl|enum)\b", text) \
                            and re.search(pattern, text):
                        start = i
                    if start is not None:
                        lines.add(i)
                        if text.startswith("}"):
                            start = None
        except OSError:
            pass
        _items[key] = lines
    return _items[key]


def name_of(fn):
    """The last path segment of a demangled function, without generic arguments."""
    prev = None
    while prev != fn:
        prev, fn = fn, re.sub(r"<[^<>]*>", "", fn)
    return fn.split("::")[-1]


def parse(path):
    """{(ob, fn, addr, callee): Ir}: self cost per instruction, and the inclusive cost of
    calls from libconnpool into libc, booked to the calling instruction."""
    names = {"fl": {}, "fn": {}, "ob": {}}
    space = {"fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl", "fn": "fn",
             "cfn": "fn", "ob": "ob", "cob": "ob"}
    cost = defaultdict(int)
    ob = fn = cob = cfn = ""
    positions = ["line"]
    last = [0, 0]
    in_call = False
    call_count = 0
    spec = re.compile(r"^(fl|fi|fe|fn|ob|cob|cfi|cfl|cfn)=\((\d+)\)(?: (.*))?$")
    with open(path) as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith("positions:"):
                positions = line.split()[1:]
                last = [0] * len(positions)
                continue
            m = spec.match(line)
            if m:
                kind, ident, name = m.groups()
                table = names[space[kind]]
                if name is not None:
                    table[ident] = name
                name = table.get(ident, "?")
                if kind == "ob":
                    ob = cob = name
                elif kind == "fn":
                    fn = name
                elif kind == "cob":
                    cob = name
                elif kind == "cfn":
                    cfn = name
                continue
            if line.startswith("calls="):
                # calls=0: a frame that was live when the stats were zeroed (main, ...).
                in_call = True
                call_count = int(line[6:].split()[0])
                continue
            if not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            pos = []
            for i, p in enumerate(parts[: len(positions)]):
                if p == "*":
                    v = last[i]
                elif p[0] in "+-":
                    v = last[i] + int(p, 0)
                else:
                    v = int(p, 0)
                pos.append(v)
            last = pos
            ir = int(parts[len(positions)]) if len(parts) > len(positions) else 0
            addr = pos[0] if positions[0] == "instr" else None
            if in_call:
                in_call = False
                if call_count > 0 and "libc.so" in cob and "libconnpool" in ob:
                    cost[(ob, fn, addr, cfn)] += ir
                cob = ob
                continue
            if "libc.so" in ob:
                continue  # booked to the caller above
            cost[(ob, fn, addr, "")] += ir
    return cost


def frames_of(obj, addrs):
    """{addr: [(function, file:line), ...] innermost first} from addr2line -i."""
    if not addrs:
        return {}
    out = subprocess.run(
        ["addr2line", "-i", "-f", "-C", "-a", "-e", obj],
        input="\n".join(hex(a) for a in addrs) + "\n",
        capture_output=True, text=True, check=True).stdout.splitlines()
    result, cur = {}, None
    i = 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16)
            result[cur] = []
            i += 1
            continue
        fn = out[i]
        loc = out[i + 1] if i + 1 < len(out) else "??:0"
        result[cur].append((fn, re.sub(r" \(discriminator \d+\)", "", loc)))
        i += 2
    return result


# The key's word loads, shared by hash_key and key_eq: booked to the frame that uses them.
HELPERS = re.compile(r"::word[48]$")


def own_frame(chain):
    """The innermost frame that is not Rust's standard library nor a word-load helper
    (else the outermost)."""
    for fn, loc in chain:
        if not RUST_STD.match(loc) and not loc.startswith("??") and not HELPERS.search(fn):
            return fn, loc
    return chain[-1] if chain else ("??", "??:0")


def side_of(ob, fn):
    """0: the instruction runs under connpool_acquire, 1: under connpool_release, None:
    neither (the harness) or unknown. With LTO the library is a handful of functions:
    connpool_acquire and Pool::take (acquire), connpool_release and capi::release or
    release_inner (release), each with the rest inlined into it, and two helpers left out
    of line: Watcher::watch (release adds the fd to the watch set) and the drop of the
    io::Error that the liveness check's EAGAIN makes (acquire)."""
    if "libconnpool" not in ob:
        return None
    last = name_of(fn)
    if "release" in last or fn.endswith("Watcher::watch"):
        return 1
    if "acquire" in last or last == "take" or "drop_in_place<std::io::error::Error>" in fn:
        return 0
    return None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, pairs = sys.argv[1], int(sys.argv[2])
    nlines = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--lines" else 25
    cost = parse(path)
    total = sum(cost.values())
    by_obj = defaultdict(set)
    for (ob, fn, addr, callee) in cost:
        if addr is not None and ob.endswith((".so", ".so.0")) and "libconnpool" in ob:
            by_obj[ob].add(addr)
    chains = {}
    for obj, addrs in by_obj.items():
        for a, ch in frames_of(obj, sorted(addrs)).items():
            chains[(obj, a)] = ch
    cats = defaultdict(int)
    split = defaultdict(lambda: [0, 0])  # category: [under connpool_acquire, _release]
    frames = defaultdict(int)
    for (ob, fn, addr, callee), ir in cost.items():
        chain = chains.get((ob, addr))
        ffn, floc = own_frame(chain) if chain else (fn, "")
        f = floc.rsplit(":", 1)[0]
        files = [loc.rsplit(":", 1)[0] for _, loc in chain] if chain else []
        ln = floc.rsplit(":", 1)[1] if ":" in floc else ""
        ln = int(ln) if ln.isdigit() else 0
        for name, test in CATEGORIES:
            if test(ob, ffn, f, callee, files, ln):
                cats[name] += ir
                side = side_of(ob, fn)
                if side is not None:
                    split[name][side] += ir
                break
        short = re.sub(r"^.*/(src|library)/", r"\1/", floc) if floc else ob.rsplit("/", 1)[-1]
        frames[(re.sub(r"<.*>::|connpool::", "", ffn)[:46], short, callee)] += ir
    print(f"{total / pairs:8.1f}  instructions per pair in all ({total} Ir / {pairs} pairs)")
    print(f"{'':8s}  {'acquire':>8s} {'release':>8s}  (of the category: in connpool_acquire,"
          " connpool_release)")
    for name, _ in CATEGORIES:
        if cats[name]:
            a, r = split[name]
            print(f"{cats[name] / pairs:8.1f}  {a / pairs:8.1f} {r / pairs:8.1f}  {name}")
    print(f"\ntop {nlines} frames (Ir per pair; function, file:line [-> libc callee, inclusive]):")
    for (ffn, loc, callee), ir in sorted(frames.items(), key=lambda kv: -kv[1])[:nlines]:
        extra = f"  -> {callee}" if callee else ""
        print(f"{ir / pairs:8.1f}  {ffn:46s} {loc}{extra}")


if __name__ == "__main__":
    main()
