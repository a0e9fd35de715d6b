//! Link settings for sgr's binary.
//!
//! `sgr` is started many times per build (`sgr semver`, `sgr stencil` in shell loops), so its
//! start-up counts. The binary is position-independent and has about 61 000 relative
//! relocations; in the classic `RELA` form they take 1.4 MiB that the loader reads and
//! applies at every start. `-z pack-relative-relocs` stores them as `RELR` (a few KiB), which
//! glibc 2.36 and later apply directly. Only on GNU/Linux, where the system linker supports it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") && target.starts_with("x86_64") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
