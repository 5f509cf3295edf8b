//! Gives this crate's tests, examples and doctests an rpath to the folders
//! where attn-sys found libattn (DEP_ATTN_LIBDIR, set by attn-sys's build
//! script from `pkg-config --libs attn`), so they run without
//! LD_LIBRARY_PATH against a library installed in any prefix. A library in
//! a system folder needs none. Linking itself is attn-sys's business.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_ATTN_LIBDIR");
    let dirs = env::var("DEP_ATTN_LIBDIR").unwrap_or_default();
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
}
