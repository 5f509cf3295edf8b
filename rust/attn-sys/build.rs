//! Links libattn with the flags `pkg-config --libs attn` prints, so the crate
//! builds against whichever libattn the system (or PKG_CONFIG_PATH) provides:
//! the Debian package libattn-dev, or a `meson install` into any prefix.
//! pkg-config runs as a process: the crate has no build dependencies.
//!
//! A library outside the loader's default path gets an rpath in this crate's
//! own tests, and its folders are passed on to the build scripts of crates
//! that depend on this one as `DEP_ATTN_LIBDIR` (folders joined by `:`;
//! empty for a library in a system folder), which the `attn` crate uses to
//! give its tests and examples the same rpath.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let output = match Command::new(&pkg_config).args(["--libs", "attn"]).output() {
        Ok(output) => output,
        Err(err) => panic!(
            "cannot run `{} --libs attn` ({}): install pkg-config (apt-get install pkg-config)",
            pkg_config, err
        ),
    };
    if !output.status.success() {
        panic!(
            "`{} --libs attn` failed: {}\nInstall libattn (Debian: apt-get install libattn-dev), \
             or set PKG_CONFIG_PATH to the lib/pkgconfig folder of the prefix it is installed in.",
            pkg_config,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let flags = String::from_utf8(output.stdout).expect("pkg-config printed non-UTF-8 flags");
    let mut dirs = Vec::new();
    for flag in flags.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={}", dir);
            // A library outside the loader's default path is found at run time
            // too (tests of this crate run without LD_LIBRARY_PATH).
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
            dirs.push(dir);
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={}", lib);
        } else {
            println!("cargo:rustc-link-arg={}", flag);
        }
    }
    // Metadata of the `links = "attn"` package: DEP_ATTN_LIBDIR in dependents.
    println!("cargo:libdir={}", dirs.join(":"));
}
