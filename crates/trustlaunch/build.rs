//! Link the unwinder statically on Linux/glibc.
//!
//! Rust's standard library asks the linker for `-lgcc_s` (the unwinder as a shared library).
//! Found first, a linker script of that name pointing at libgcc_eh.a (the same unwinder,
//! the archive GCC ships for static links) takes its place: every `trustlaunch` start then
//! loads one shared library fewer, and skips libgcc_s's constructor, which probes the CPU
//! with CPUID instructions that trap to the hypervisor in a VM. Together that is about
//! 0.1 ms of a 2.4 ms whole-process `secureboot verify` here.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let dir = PathBuf::from(out).join("static-unwinder");
    let script = dir.join("libgcc_s.so");
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&script, "/* the unwinder, statically */\nINPUT(-lgcc_eh)\n"))
    {
        // Without the script the unwinder is simply linked dynamically, as by default.
        println!("cargo:warning=static unwinder not set up ({e}): linking libgcc_s.so.1");
        return;
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}
