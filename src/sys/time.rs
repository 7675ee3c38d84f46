//! Clocks.

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: read from the vDSO, several times cheaper
/// than the precise clock, at the price of a tick of resolution.
pub fn coarse_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn precise_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux since
    // 2.6.32.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The tick of `CLOCK_MONOTONIC_COARSE` (typically 1 to 4 ms, set by the kernel's HZ).
pub fn coarse_resolution_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 10_000_000; // unknown: assume a slow 100 Hz tick, erring early
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The CPU's time-stamp counter (about a third of the precise clock's cost here); meaningful
/// only when [`cycles_trusted`].
#[inline]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc reads a register; every x86_64 CPU has it.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// Whether the kernel keeps time by the time-stamp counter (clocksource "tsc": it found the
/// counter invariant and synchronised across CPUs), so that [`cycles`] measures time. Read
/// once per process, with thread cancellation disabled (open and read are cancellation
/// points).
pub fn cycles_trusted() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static TRUSTED: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 yes, 2 no
    match TRUSTED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = cfg!(target_arch = "x86_64")
                && super::without_cancellation(|| {
                    std::fs::read_to_string(
                        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                    )
                })
                .is_ok_and(|s| s.trim() == "tsc");
            TRUSTED.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}
