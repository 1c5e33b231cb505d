//! Links the system Level Zero loader when the `loader` feature is on.
//! pkg-config's `level-zero` (Debian: libze-dev) says where it is.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LOADER").is_none() {
        return;
    }
    let libdir = std::process::Command::new("pkg-config")
        .args(["--variable=libdir", "level-zero"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    match libdir {
        Some(dir) if !dir.is_empty() => println!("cargo:rustc-link-search=native={dir}"),
        _ => println!(
            "cargo:warning=pkg-config does not know level-zero; install libze-dev (apt-get install libze1 libze-dev)"
        ),
    }
    println!("cargo:rustc-link-lib=dylib=ze_loader");
}
