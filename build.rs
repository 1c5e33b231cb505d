//! Gives the shared library its versioned SONAME, so that programs linked
//! against it record `libxpu_caching_host_allocator.so.0` (the ABI's major
//! version, README: "Conventions and ABI stability") rather than the path it
//! was linked from. CMake installs the file under that name too.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libxpu_caching_host_allocator.so.{major}");
}
