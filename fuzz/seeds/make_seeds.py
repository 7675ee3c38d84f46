#!/usr/bin/env python3
"""Writes the seed inputs of the `ops` fuzz target into fuzz/seeds/ops/ (the layout is
documented at the top of fuzz/fuzz_targets/ops.rs). libFuzzer starts from these and from
the corpus of earlier runs; they only need to reach each feature once."""
import os

# operation codes (code & 15)
ACQUIRE, ACQUIRE_INFO, RELEASE, RELEASE_HINT, PURGE, PURGE_ALL, PRUNE, ADVANCE_MS = range(8)
PEER_CLOSE, PEER_WRITE, CALLER_CLOSE, IDLE_COUNT_KEY, DOUBLE_RELEASE, IDLE_COUNT = range(8, 14)
RELEASE_NEW = 15


def op(code, key=0, arg=0, sel=0):
    return bytes([code | key << 4 | sel << 7, arg])


def config(per_key_minus_1, cap, idle_ms, lifetime_4ms, max_uses, check, skip_ms=0):
    return bytes([per_key_minus_1, cap, idle_ms, lifetime_4ms, max_uses, check | skip_ms << 1])


SEEDS = {
    # 2 per key, at most 3 idle, 100 ms idle timeout, check on: the cap evicts the least
    # recently released connection of any key; a double release changes nothing.
    "cap-evict": config(1, 3, 100, 0, 0, 1)
    + op(RELEASE_NEW, 0) + op(RELEASE_NEW, 1) + op(RELEASE_NEW, 0) + op(RELEASE_NEW, 2)
    + op(RELEASE_NEW, 3) + op(ACQUIRE, 1) + op(RELEASE, 1, 1) + op(DOUBLE_RELEASE, 2)
    + op(IDLE_COUNT) + op(RELEASE_NEW, 0) + op(RELEASE_NEW, 0) + op(PURGE_ALL),
    # 4 per key, check on: backends close and write stray bytes; acquire and prune find them.
    "liveness": config(3, 0, 0, 0, 0, 1)
    + op(RELEASE_NEW, 0) * 3 + op(PEER_CLOSE, 0, 0) + op(PEER_WRITE, 0, 1) + op(ACQUIRE, 0) * 3
    + op(RELEASE_NEW, 1) * 2 + op(PEER_CLOSE, 0, 0) + op(PEER_WRITE, 0, 1) + op(PRUNE)
    + op(IDLE_COUNT),
    # 3 per key, 50 ms idle timeout, 200 ms lifetime, 3 uses, check off: keep-alive hints
    # (a zero hint closes at once), expiry, the lifetime, retirement at max_uses.
    "expiry": config(2, 0, 50, 50, 3, 0)
    + op(RELEASE_NEW, 4) + op(RELEASE_HINT, 4, 20) + op(ADVANCE_MS, 0, 30) + op(IDLE_COUNT_KEY, 4)
    + op(ACQUIRE_INFO, 4) + op(RELEASE_HINT, 4, 0, 1) + op(RELEASE_NEW, 4) + op(ACQUIRE, 4)
    + op(RELEASE, 4, 1) + op(ACQUIRE_INFO, 4) + op(RELEASE, 4, 1) + op(ADVANCE_MS, 0, 250)
    + op(PRUNE),
    # 2 per key, 4 uses, check on: the caller closes an fd it acquired; a new socket that
    # gets the number continues its history; purge.
    "caller-close": config(1, 0, 0, 0, 4, 1)
    + op(RELEASE_NEW, 2) + op(ACQUIRE_INFO, 2) + op(CALLER_CLOSE, 0, 0) + op(RELEASE_NEW, 2)
    + op(ACQUIRE_INFO, 2) + op(RELEASE, 3, 1) + op(IDLE_COUNT_KEY, 3) + op(PURGE, 3)
    + op(PURGE, 2),
    # 3 per key, check on with a 20 ms skip window: a connection closed by its backend is
    # handed out dead within the window and found dead after it.
    "skip-window": config(2, 0, 0, 0, 0, 1, 20)
    + op(RELEASE_NEW, 5) * 2 + op(PEER_CLOSE, 0, 0) + op(PEER_CLOSE, 0, 0) + op(ACQUIRE, 5)
    + op(RELEASE, 5, 1) + op(ADVANCE_MS, 0, 25) + op(ACQUIRE, 5) + op(ACQUIRE, 5),
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")
