//! The library file itself, and C programs against it.

use std::path::PathBuf;
use std::process::Command;

use crate::common::require_alt_driver;

/// The 46 non-experimental getters the loader requires.
const GETTERS: [&str; 46] = [
    "zeGetGlobalProcAddrTable",
    "zeGetDriverProcAddrTable",
    "zeGetDeviceProcAddrTable",
    "zeGetContextProcAddrTable",
    "zeGetCommandQueueProcAddrTable",
    "zeGetCommandListProcAddrTable",
    "zeGetEventProcAddrTable",
    "zeGetEventPoolProcAddrTable",
    "zeGetFenceProcAddrTable",
    "zeGetImageProcAddrTable",
    "zeGetKernelProcAddrTable",
    "zeGetMemProcAddrTable",
    "zeGetModuleProcAddrTable",
    "zeGetModuleBuildLogProcAddrTable",
    "zeGetPhysicalMemProcAddrTable",
    "zeGetSamplerProcAddrTable",
    "zeGetVirtualMemProcAddrTable",
    "zetGetDeviceProcAddrTable",
    "zetGetContextProcAddrTable",
    "zetGetCommandListProcAddrTable",
    "zetGetKernelProcAddrTable",
    "zetGetModuleProcAddrTable",
    "zetGetDebugProcAddrTable",
    "zetGetMetricProcAddrTable",
    "zetGetMetricGroupProcAddrTable",
    "zetGetMetricQueryProcAddrTable",
    "zetGetMetricQueryPoolProcAddrTable",
    "zetGetMetricStreamerProcAddrTable",
    "zetGetTracerExpProcAddrTable",
    "zesGetDeviceProcAddrTable",
    "zesGetDriverProcAddrTable",
    "zesGetDiagnosticsProcAddrTable",
    "zesGetEngineProcAddrTable",
    "zesGetFabricPortProcAddrTable",
    "zesGetFanProcAddrTable",
    "zesGetFirmwareProcAddrTable",
    "zesGetFrequencyProcAddrTable",
    "zesGetLedProcAddrTable",
    "zesGetMemoryProcAddrTable",
    "zesGetPerformanceFactorProcAddrTable",
    "zesGetPowerProcAddrTable",
    "zesGetPsuProcAddrTable",
    "zesGetRasProcAddrTable",
    "zesGetSchedulerProcAddrTable",
    "zesGetStandbyProcAddrTable",
    "zesGetTemperatureProcAddrTable",
];

/// The driver library named in ZE_ENABLE_ALT_DRIVERS.
fn driver_library() -> PathBuf {
    let drivers = require_alt_driver();
    let library = drivers
        .split(',')
        .find(|path| path.ends_with("libze_software_driver.so"))
        .unwrap_or_else(|| panic!("ZE_ENABLE_ALT_DRIVERS={drivers:?} names no libze_software_driver.so"));
    PathBuf::from(library)
}

fn readelf(argument: &str) -> String {
    let output = Command::new("readelf").arg(argument).arg("-W").arg(driver_library()).output().expect("run readelf");
    assert!(output.status.success(), "readelf {argument}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("readelf prints text")
}

#[test]
fn the_driver_does_not_link_the_loader() {
    let dynamic = readelf("-d");
    let needed: Vec<&str> = dynamic.lines().filter(|line| line.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "readelf -d lists the NEEDED entries:\n{dynamic}");
    assert!(!needed.iter().any(|line| line.contains("libze_loader")), "{needed:#?}");
}

#[test]
fn the_driver_exports_the_46_getters() {
    let symbols = readelf("--dyn-syms");
    for getter in GETTERS {
        assert!(
            symbols.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.last() == Some(&getter) && fields.contains(&"FUNC") && !fields.contains(&"UND")
            }),
            "{getter} is not defined and exported"
        );
    }
}

/// Compiles `tests/c/<name>.c` against Level Zero and this crate's header,
/// runs it with the inherited environment, and checks that it succeeds.
fn compile_and_run_c(name: &str) {
    require_alt_driver();
    let pkg_config =
        Command::new("pkg-config").args(["--cflags", "--libs", "level-zero"]).output().expect("run pkg-config");
    assert!(pkg_config.status.success(), "pkg-config knows level-zero (libze-dev)");
    let flags = String::from_utf8(pkg_config.stdout).expect("pkg-config prints text");
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // One file per process: concurrent runs must not replace each other's program.
    let program = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}_{}", std::process::id()));
    let compiled = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join(format!("tests/c/{name}.c")))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&program)
        .output()
        .expect("run cc");
    assert!(compiled.status.success(), "cc: {}", String::from_utf8_lossy(&compiled.stderr));
    let run = run_fresh_program(&program);
    let _ = std::fs::remove_file(&program);
    assert!(
        run.status.success(),
        "{name}: {}\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn c_smoke_program() {
    compile_and_run_c("smoke");
}

#[test]
fn c_live_objects_through_the_header() {
    compile_and_run_c("live_objects");
}

/// Runs a program just written, retrying while the kernel still considers it
/// open for writing (ETXTBSY), which can happen briefly after the linker exits.
fn run_fresh_program(program: &std::path::Path) -> std::process::Output {
    const TEXT_FILE_BUSY: i32 = 26;
    for _ in 0..50 {
        match Command::new(program).output() {
            Err(error) if error.raw_os_error() == Some(TEXT_FILE_BUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            result => return result.unwrap_or_else(|error| panic!("run {}: {error}", program.display())),
        }
    }
    panic!("{} stayed busy", program.display())
}
