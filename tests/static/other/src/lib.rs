//! Uses what a real Rust library pulls from std (allocation, formatting, a caught panic),
//! so the archive defines the same runtime symbols as libconnpool.a would without
//! localization (rust_eh_personality, __rust_alloc, std's functions).

use std::panic;

/// Returns the sum of 1..=n computed through a heap-allocated, formatted string, or -1.
#[no_mangle]
pub extern "C" fn other_rust_sum(n: u32) -> i64 {
    let text: Vec<String> = (1..=n).map(|i| format!("{i}")).collect();
    text.iter().map(|s| s.parse::<i64>().unwrap_or(0)).sum()
}

/// Panics inside and catches it: returns 1 when the unwind was caught.
#[no_mangle]
pub extern "C" fn other_rust_catch() -> i32 {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let caught = panic::catch_unwind(|| panic!("other_rust: deliberate")).is_err();
    panic::set_hook(hook);
    caught as i32
}
