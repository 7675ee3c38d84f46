//! Sets the shared library's SONAME (see `soname`) and regenerates `include/connpool.h`
//! with cbindgen.
//! The header is committed: CI rebuilds it and fails if the committed copy differs.

use std::path::PathBuf;

fn main() {
    // Executables linked to libconnpool.so record NEEDED <soname> (the build makes the
    // link). nodelete: dlclose() must not unmap code that parked threads may still run.
    // rustc-link-arg, not rustc-cdylib-link-arg: Cargo.toml declares only the rlib (the
    // cdylib comes from `cargo rustc --crate-type`), and Cargo warns about a cdylib argument
    // then. The test executables get the two flags too, to no effect.
    println!("cargo:rustc-link-arg=-Wl,-soname,{}", soname());
    println!("cargo:rustc-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // A hand edit of the header must be overwritten (and so show up in CI's git diff).
    println!("cargo:rerun-if-changed=include/connpool.h");

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let v = |part: &str| std::env::var(format!("CARGO_PKG_VERSION_{part}")).unwrap();
    config.after_includes = Some(format!(
        "\n/* The version of this header; connpool_version() gives the library's. */\n\
         #define CONNPOOL_VERSION \"{}\"\n\
         #define CONNPOOL_VERSION_MAJOR {}\n\
         #define CONNPOOL_VERSION_MINOR {}\n\
         #define CONNPOOL_VERSION_PATCH {}",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        v("MAJOR"),
        v("MINOR"),
        v("PATCH"),
    ));
    // Only the C API module (cbindgen follows its `mod` declarations to every file of it):
    // the rest of the crate is Rust-side, whatever it makes `pub`.
    let bindings = cbindgen::Builder::new()
        .with_src(dir.join("src/capi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    // Writes only when the content changed, so an up-to-date header keeps its mtime.
    bindings.write_to_file(dir.join("include/connpool.h"));
}

/// libconnpool.so.<the first N components of the version>, N from Cargo.toml's
/// `[package.metadata.capi.library] version_suffix_components`: the one place the SONAME is
/// set (cargo-c and CMakeLists.txt read the same key).
fn soname() -> String {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap() + "/Cargo.toml";
    let text = std::fs::read_to_string(manifest).expect("Cargo.toml is readable");
    let n: usize = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("version_suffix_components"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .find_map(|v| v.trim().parse().ok())
        .filter(|n| (1..=3).contains(n))
        .expect("Cargo.toml sets version_suffix_components = 1, 2 or 3");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();
    let parts: Vec<&str> = version.split(['.', '-', '+']).take(n).collect();
    format!("libconnpool.so.{}", parts.join("."))
}
