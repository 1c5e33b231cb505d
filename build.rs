//! Gives the shared library a SONAME, so that programs linked against it record
//! `libxpu_caching_host_allocator.so` rather than the path it was linked from.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libxpu_caching_host_allocator.so");
}
