#!/usr/bin/env python3
"""Runs the benchmark programs of benches/ and writes the report (issue 6).

scripts/bench builds the programs and calls this; run it by hand as
    python3 benches/run.py --build build/bench --driver build/bench/cargo/release/libze_software_driver.so \
        --report BENCHMARKS.md [--quick]

Every measurement is one process of one subject (our allocator is a process-wide
singleton, and the two PyTorch references link two different libc10s), so each
prints one JSON line. Timed scenarios are repeated in rounds that go through
the subjects in turn; a subject's figure is the median over rounds of each
process's best trial. Ratios are ours / reference: below 1 is better for us.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PROGRAMS = {
    "ours": "bench_ours",
    "torch-2.5.1": "bench_torch_2_5",
    "torch-2.15.0": "bench_torch_2_15",
    "umf-1.2.0": "bench_umf",
}
# Scenario 1's cycle around allocators that do next to nothing, and scenario 6's
# misses through an allocator that only calls the driver (bench_floor.cpp).
FLOOR_PROGRAM = "bench_floor"
FLOOR_VARIANTS = ["none", "cas"]
MISS_FLOOR_VARIANT = "raw"
REFERENCES = ["torch-2.5.1", "torch-2.15.0", "umf-1.2.0"]
STREAM_REFERENCES = ["torch-2.5.1", "torch-2.15.0"]
LABEL = {
    "ours": "ours",
    "torch-2.5.1": "PyTorch 2.5.1",
    "torch-2.15.0": "PyTorch 2.15.0",
    "umf-1.2.0": "UMF 1.2.0",
    "raw": "raw zeMemAllocHost",
}
DIVISIONS = [1, 2, 4, 8]
STREAM_LATENCY_US = 20
BACKGROUND_OURS = "pinned_use_background_threads:True"
THRESHOLD_MB = 16
RELEASE = "pinned_release_cached_on_miss:True"
SPLIT = "pinned_split_blocks:True"
# Our answers to a cache of blocks that no longer fit (scenario 5a): give them
# back on a miss, carve requests out of them, or both.
LOADER_VARIANTS = {"release": RELEASE, "split": SPLIT, "split+release": f"{SPLIT},{RELEASE}"}

FULL = {
    "rounds": {"cycle": 11, "cycle_threads": 9, "stream": 7, "miss": 15},
    "cycle": {"rounds": 50000, "trials": 7},
    "cycle_threads": {"rounds": 30000, "trials": 15},
    "stream": {"batch": 32, "batches": 100, "trials": 3},
    "held": {"iterations": 1000},
    "memory_loader": {"steps": 400},
    "memory_offload": {"layers": 8},
    "miss": {"count": 256, "trials": 101},
    "callgrind_cycle": {"rounds": 2000, "trials": 1},
    "callgrind_stream": {"batch": 32, "batches": 20, "trials": 1},
    "callgrind_miss": {"count": 256, "trials": 3},
}
QUICK = {
    "rounds": {"cycle": 1, "cycle_threads": 1, "stream": 1, "miss": 1},
    "cycle": {"rounds": 200, "trials": 1},
    "cycle_threads": {"rounds": 200, "trials": 1},
    "stream": {"batch": 8, "batches": 3, "trials": 1},
    "held": {"iterations": 40},
    "memory_loader": {"steps": 40},
    "memory_offload": {"layers": 1},
    "miss": {"count": 16, "trials": 3},
    "callgrind_cycle": {"rounds": 10, "trials": 1},
    "callgrind_stream": {"batch": 8, "batches": 2, "trials": 1},
    "callgrind_miss": {"count": 16, "trials": 1},
}


class Runner:
    def __init__(self, build, driver, quick):
        self.bin = os.path.join(build, "benches")
        self.driver = os.path.abspath(driver)
        self.quick = quick
        self.processes = 0
        if not os.path.isfile(self.driver):
            sys.exit(f"run.py: no software driver at {self.driver}")
        for program in [*PROGRAMS.values(), FLOOR_PROGRAM]:
            if not os.access(os.path.join(self.bin, program), os.X_OK):
                sys.exit(f"run.py: {program} is not built in {self.bin}")

    def env(self, extra):
        env = dict(os.environ)
        # Only what a run asks for: nothing inherited may change the settings.
        for name in list(env):
            if name.startswith(("ZE_", "XPU_CACHING_HOST_ALLOCATOR", "PYTORCH_", "BENCH_", "UMF_")):
                del env[name]
        env["ZE_ENABLE_ALT_DRIVERS"] = self.driver
        env["ZE_SOFTWARE_DRIVER_LEAK_CHECK"] = "off"
        env.update(extra)
        return env

    def run(self, subject, scenario, params, env=None, wrapper=(), program=None):
        command = list(wrapper) + [os.path.join(self.bin, program or PROGRAMS[subject]), scenario]
        command += [f"{key}={value}" for key, value in params.items()]
        self.processes += 1
        try:
            done = subprocess.run(command, env=self.env(env or {}), capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            sys.exit(f"run.py: timed out: {' '.join(command)}")
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"run.py: failed (exit {done.returncode}): {' '.join(command)}")
        result = json.loads(lines[-1])
        print(f"  {subject:<14} {scenario:<15} {summary(result)}", flush=True)
        return result


def summary(result):
    keys = ["ns_per_cycle", "ns_per_cycle_aggregate", "scaling", "new_bytes", "mean_wait_iterations",
            "reserved_per_requested", "ratio_to_raw", "misses"]
    return " ".join(f"{key}={result[key]:.4g}" if isinstance(result[key], float) else f"{key}={result[key]}"
                    for key in keys if key in result)


def median(values):
    return statistics.median(values)


def measure(runner, plan):
    """Runs every scenario; returns the raw results."""
    results = {}
    rounds = plan["rounds"]

    print("== 1. cached allocate + free, one thread", flush=True)
    results["cycle"] = {s: [] for s in PROGRAMS}
    results["floor"] = {v: [] for v in FLOOR_VARIANTS}
    for _ in range(rounds["cycle"]):
        for subject in PROGRAMS:
            results["cycle"][subject].append(runner.run(subject, "cycle", plan["cycle"]))
        for variant in FLOOR_VARIANTS:
            results["floor"][variant].append(runner.run(f"floor-{variant}", "cycle", {**plan["cycle"], "variant": variant},
                                                        program=FLOOR_PROGRAM))

    print("== 2. the same on 2 threads", flush=True)
    results["cycle_threads"] = {s: [] for s in PROGRAMS}
    for _ in range(rounds["cycle_threads"]):
        for subject in PROGRAMS:
            results["cycle_threads"][subject].append(runner.run(subject, "cycle_threads", plan["cycle_threads"]))

    print(f"== 3. allocate + record + free, events complete {STREAM_LATENCY_US} us per command after record",
          flush=True)
    latency = {"ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US": str(STREAM_LATENCY_US)}
    variants = {
        "ours": ("ours", {}),
        "torch-2.5.1": ("torch-2.5.1", {}),
        "torch-2.15.0": ("torch-2.15.0", {}),
        "ours+bg": ("ours", {"XPU_CACHING_HOST_ALLOCATOR_CONF": BACKGROUND_OURS}),
        "torch-2.15.0+bg": ("torch-2.15.0", {"BENCH_TORCH_CONFIG_BACKGROUND": "1",
                                              "PYTORCH_ALLOC_CONF": "pinned_use_background_threads:True"}),
    }
    results["stream"] = {v: [] for v in variants}
    for _ in range(rounds["stream"]):
        for variant, (subject, env) in variants.items():
            results["stream"][variant].append(runner.run(subject, "stream", plan["stream"], {**latency, **env}))

    print("== 4. two streams, one held back", flush=True)
    results["held"] = {}
    for every in (4, 1):
        for subject in ["ours"] + STREAM_REFERENCES:
            results["held"][(subject, every)] = runner.run(subject, "held", {**plan["held"], "held_every": every})

    print("== 5. reserved bytes per requested byte", flush=True)
    results["memory"] = {}
    for trace in ("memory_loader", "memory_offload"):
        for divisions in DIVISIONS:
            conf = {"XPU_CACHING_HOST_ALLOCATOR_CONF": f"pinned_roundup_divisions:{divisions}"}
            results["memory"][(trace, f"ours/{divisions}")] = runner.run("ours", trace, plan[trace], conf)
            for variant, setting in LOADER_VARIANTS.items() if trace == "memory_loader" else []:
                conf = {"XPU_CACHING_HOST_ALLOCATOR_CONF": f"pinned_roundup_divisions:{divisions},{setting}"}
                results["memory"][(trace, f"ours+{variant}/{divisions}")] = runner.run("ours", trace, plan[trace], conf)
        for subject in REFERENCES:
            results["memory"][(trace, subject)] = runner.run(subject, trace, plan[trace])
        # PyTorch 2.13+'s answer to rounding waste, which we read too: no rounding above a threshold.
        threshold = f"pinned_max_round_threshold_mb:{THRESHOLD_MB}"
        results["memory"][(trace, "ours+threshold")] = runner.run(
            "ours", trace, plan[trace], {"XPU_CACHING_HOST_ALLOCATOR_CONF": threshold})
        results["memory"][(trace, "torch-2.15.0+threshold")] = runner.run(
            "torch-2.15.0", trace, plan[trace], {"PYTORCH_ALLOC_CONF": threshold})

    print("== 6. miss path against raw zeMemAllocHost (same process)", flush=True)
    results["miss"] = {s: [] for s in PROGRAMS}
    results["miss_control"] = []
    results["miss_floor"] = []
    for _ in range(rounds["miss"]):
        for subject in PROGRAMS:
            results["miss"][subject].append(runner.run(subject, "miss", plan["miss"]))
        results["miss_control"].append(runner.run("ours", "miss", {**plan["miss"], "control": 1}))
        results["miss_floor"].append(runner.run(f"floor-{MISS_FLOOR_VARIANT}", "miss",
                                                {**plan["miss"], "variant": MISS_FLOOR_VARIANT}, program=FLOOR_PROGRAM))

    print("== 7. instructions per cycle (callgrind)", flush=True)
    results["callgrind"] = {}
    if shutil.which("valgrind") is None:
        print("  valgrind not found: skipped")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            for scenario, subjects in (("cycle", list(PROGRAMS)), ("stream", ["ours"] + STREAM_REFERENCES),
                                       ("miss", ["ours", "torch-2.5.1", "torch-2.15.0"])):
                for subject in subjects:
                    results["callgrind"][(scenario, subject)] = callgrind(runner, scratch, scenario, subject,
                                                                          plan["callgrind_" + scenario])
    return results


def callgrind(runner, scratch, scenario, subject, params):
    out = os.path.join(scratch, f"callgrind.{scenario}.{subject}")
    wrapper = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}"]
    env = {"BENCH_CALLGRIND": "1"}
    if scenario == "stream":
        env["ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US"] = str(STREAM_LATENCY_US)
    result = runner.run(subject, scenario, params, env, wrapper)
    inclusive = annotate(out, inclusive=True)
    exclusive = annotate(out, inclusive=False)
    total = inclusive.pop("PROGRAM TOTALS")
    exclusive.pop("PROGRAM TOTALS")
    # Level Zero: the loader's ze* entry points, inclusive of the driver under them.
    level_zero = sum(cost for name, cost in inclusive.items()
                     if re.match(r"ze[A-Z]\w*$", name[0]) and "libze_loader" in name[1])
    # Cycles counted: every trial of 1 and 3; the allocations of 6's measured trials.
    cycles = result["cycles"] * (1 if scenario == "miss" else int(params["trials"]))
    hot, libraries = {}, {}
    for (function, library), cost in exclusive.items():
        name = short_function(function)
        hot[name] = hot.get(name, 0) + cost
        if library:
            libraries[name] = os.path.basename(library)
    top = [((name, libraries.get(name, "")), cost) for name, cost in sorted(hot.items(), key=lambda item: -item[1])[:12]]
    return {
        "instructions_per_cycle": total / cycles,
        "level_zero_per_cycle": level_zero / cycles,
        "hot": [(function, library, cost / cycles) for (function, library), cost in top],
    }


def annotate(path, inclusive):
    """{(function, library): instructions} from callgrind_annotate."""
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
                           "--auto=no", path], capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(.*)$", line)
        if not match:
            continue
        cost, rest = int(match.group(1).replace(",", "")), match.group(2).strip()
        if rest.startswith("PROGRAM TOTALS"):
            costs["PROGRAM TOTALS"] = cost
            continue
        library = ""
        lib_match = re.search(r"\s\[([^\]]+)\]$", rest)
        if lib_match:
            library, rest = lib_match.group(1), rest[:lib_match.start()]
        function = (rest.split(":", 1)[1] if ":" in rest else rest).strip()
        key = (function, library)
        # The same function is listed once per source file its code came from.
        costs[key] = costs.get(key, 0) + cost if not inclusive else max(costs.get(key, 0), cost)
    return costs


def short_function(name):
    for _ in range(3):  # generic arguments, not <T as Trait> paths
        name = re.sub(r"(?<=\w)<[^<>]*>", "", name)
    name = name.replace("xpu_caching_host_allocator::", "").replace("ze_software_driver::", "driver::")
    name = re.sub(r"\(.*\)$", "", name)
    return name.strip()[:90]


# ---------------------------------------------------------------- the report


def fmt(value, digits=3):
    if value is None:
        return "–"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def mib(value):
    return f"{value / 2**20:,.1f} MiB"


def ratio(ours, reference):
    return None if not reference else ours / reference


def verdict(ok):
    return "**met**" if ok else "**not met**"


def machine():
    def command(*args):
        try:
            return subprocess.run(args, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    distro = "?"
    try:
        with open("/etc/os-release") as f:
            distro = next(line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME"))
    except (OSError, StopIteration):
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = command("git", "-C", root, "rev-parse", "--short", "HEAD")
    dirty = command("git", "-C", root, "status", "--porcelain", "--", "src", "ze-software-driver", "benches")
    if not commit:  # a tree exported with `git archive`, which names its commit
        commit, dirty = os.environ.get("BENCH_SOURCE_COMMIT", "?"), ""
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs, {memory}",
        "os": f"{distro}, Linux {platform.release()}",
        "compilers": f"{command('g++', '-dumpfullversion')} (g++), {command('rustc', '--version')}",
        "level_zero": f"libze1 {command('dpkg-query', '-W', '-f=${Version}', 'libze1')} (Debian's loader) "
                      f"with the project's ze-software-driver",
        "valgrind": command("valgrind", "--version"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def analyse(results):
    """The numbers of the report."""
    a = {}
    cycle = {s: median([r["ns_per_cycle"] for r in runs]) for s, runs in results["cycle"].items()}
    a["cycle"] = cycle
    a["cycle_best"] = {s: min(r["ns_per_cycle"] for r in runs) for s, runs in results["cycle"].items()}
    a["cycle_rounds"] = len(results["cycle"]["ours"])
    a["floor"] = {v: median([r["ns_per_cycle"] for r in runs]) for v, runs in results["floor"].items()}
    a["cycle_misses"] = {s: sum(r["misses"] for r in runs) for s, runs in results["cycle"].items()}
    threads = results["cycle_threads"]
    a["threads_aggregate"] = {s: median([r["ns_per_cycle_aggregate"] for r in runs]) for s, runs in threads.items()}
    a["threads_scaling"] = {s: median([r["scaling"] for r in runs]) for s, runs in threads.items()}
    a["threads_scaling_range"] = (min(r["scaling"] for r in threads["ours"]), max(r["scaling"] for r in threads["ours"]))
    a["machine_scaling"] = median([r["machine_scaling"] for runs in threads.values() for r in runs])
    a["stream"] = {v: median([r["ns_per_cycle"] for r in runs]) for v, runs in results["stream"].items()}
    a["stream_misses"] = {v: sum(r["misses"] for r in runs) for v, runs in results["stream"].items()}
    a["held"] = results["held"]
    a["memory"] = {key: r["reserved_per_requested"] for key, r in results["memory"].items()}
    a["memory_raw"] = results["memory"]
    a["miss"] = {s: median([r["ratio_to_raw"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_ns"] = {s: median([r["ns_per_allocation"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_raw_ns"] = {s: median([r["raw_ns_per_allocation"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_control"] = median([r["ratio_to_raw"] for r in results["miss_control"]])
    a["miss_floor"] = median([r["ratio_to_raw"] for r in results["miss_floor"]])
    a["callgrind"] = results["callgrind"]
    return a


def report(a, plan, quick, seconds, command_line):
    m = machine()
    lines = []
    w = lines.append
    title = "Benchmarks" + (" (quick mode: timings mean nothing)" if quick else "")
    w(f"# {title}")
    w("")
    w(f"Generated by `{command_line}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
      f"in {seconds / 60:.0f} min; do not edit by hand, run the command again. Issue 6 asks for it.")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {m['cpu']} (shared and noisy: only ratios from one run mean something)")
    w(f"- OS: {m['os']}")
    w(f"- Compilers: {m['compilers']}; our library in cargo's release profile")
    w(f"- Level Zero: {m['level_zero']} (no GPU), every subject in one context of it")
    w(f"- {m['valgrind']}; commit {m['commit']}")
    w("")
    w("## What runs")
    w("")
    w("Each subject is its own program (benches/), one process per measurement, through the same loader and "
      "software driver:")
    w("")
    w("- **ours**: this library as PyTorch 2.4-2.7 reaches it: `at::xpu::getCachingHostAllocator()` compiled "
      "against the torch 2.5.1 headers, `c10::Allocator::allocate` and `DataPtr` destruction, streams recorded "
      "with `at::xpu::CachingHostAllocator_recordEvent` (events on the library's own command list per stream). "
      "Default settings unless a row says otherwise.")
    w("- **PyTorch 2.5.1 / 2.15.0**: `at::CachingHostAllocatorImpl` from the wheel's own "
      "`ATen/core/CachingHostAllocator.h`, specialised as that release's `xpu/CachingHostAllocator.cpp` does "
      "and wrapped the same way (2.5.1: a `CachingHostAllocatorInterface` whose `allocate` returns a `DataPtr` "
      "with `raw_local_deleter`; 2.15.0: `DECLARE_HOST_ALLOCATOR`, background thread off as XPU has it), with "
      "SYCL replaced by Level Zero: `zeMemAllocHost` aligned to 512, `zeMemFree`, an event per record appended "
      "with `zeCommandListAppendBarrier` on the stream's own in-order immediate command list, "
      "`zeEventQueryStatus`.")
    w("- **Events of the references, as SYCL makes them**: each record creates three heap objects (XPUEvent's "
      "`unique_ptr<sycl::event>`, sycl's shared `event_impl`, Unified Runtime's event) and takes a Level Zero "
      "event from a context-wide cache of released ones, reset with `zeEventHostReset` on reuse, new ones "
      "from pools of 256 (Unified Runtime's default event caching); the stream's command list is appended "
      "to under a mutex, as a SYCL queue submits under its own lock.")
    w("- **UMF 1.2.0** (PyPI `umf`): disjoint pool with its defaults (sizes up to 2 MiB pooled, as SYCL pools "
      "host USM) over its Level Zero provider of host memory, `umfPoolAlignedMalloc(…, 512)`; no streams, so "
      "only the scenarios without streams.")
    w("- **raw**: `zeMemAllocHost`/`zeMemFree`, timed in the same process as each subject (scenario 6).")
    w("- **floor**: the same work through a `c10::Allocator` (torch 2.5.1 headers, a `DataPtr` with a deleter) "
      "that adds next to nothing. Scenario 1: one that hands out a fixed buffer, and one that also makes one "
      "atomic compare-and-swap on allocate and one on free, the least a block handed between threads needs. "
      "Scenario 6: one that calls `zeMemAllocHost` for each allocate and `zeMemFree` for each free, with no "
      "cache. What is left of a target after it is what an allocator may spend.")
    w("")
    rounds = plan["rounds"]
    w(f"Timed scenarios run {rounds['cycle']} (1), {rounds['cycle_threads']} (2), {rounds['stream']} (3) and "
      f"{rounds['miss']} (6) rounds through the subjects in turn; a figure is the median over rounds of each "
      "process's best trial. Ratios are **ours / reference**: below 1 is better for us.")
    w("")

    # ------------------------------------------------------------- ratios
    cycle, stream = a["cycle"], a["stream"]
    w("## Ratios")
    w("")
    w("| scenario | metric | ours | PyTorch 2.5.1 | ratio | PyTorch 2.15.0 | ratio | UMF 1.2.0 | ratio |")
    w("|---|---|---|---|---|---|---|---|---|")

    def row(name, metric, ours, values, refs=REFERENCES, digits=3):
        cells = [name, metric, fmt(ours, digits)]
        for ref in REFERENCES:
            if ref in refs and values.get(ref) is not None:
                cells += [fmt(values[ref], digits), f"**{fmt(ratio(ours, values[ref]))}**"]
            else:
                cells += ["n/a", "n/a"]
        w("| " + " | ".join(cells) + " |")

    row("1. cached cycle, 1 thread", "ns per allocate+free", cycle["ours"], cycle)
    floor = a["floor"]
    w(f"| 1, floor: an allocator that does nothing | ns per allocate+free | {fmt(floor['none'])} | "
      f"{fmt(cycle['torch-2.5.1'])} | {fmt(ratio(floor['none'], cycle['torch-2.5.1']))} | | | | |")
    w(f"| 1, floor: one compare-and-swap each way | ns per allocate+free | {fmt(floor['cas'])} | "
      f"{fmt(cycle['torch-2.5.1'])} | {fmt(ratio(floor['cas'], cycle['torch-2.5.1']))} | | | | |")
    agg = a["threads_aggregate"]
    row("2. cached cycle, 2 threads", "ns per cycle, aggregate", agg["ours"], agg)
    scaling = a["threads_scaling"]
    w(f"| | scaling (2-thread throughput / 1-thread) | {fmt(scaling['ours'])} | {fmt(scaling['torch-2.5.1'])} | "
      f"| {fmt(scaling['torch-2.15.0'])} | | {fmt(scaling['umf-1.2.0'])} | |")
    row(f"3. allocate+record+free, {STREAM_LATENCY_US} µs event latency", "ns per cycle", stream["ours"], stream,
        STREAM_REFERENCES)
    w(f"| 3b. the same, background event thread | ns per cycle | {fmt(stream['ours+bg'])} | n/a | n/a | "
      f"{fmt(stream['torch-2.15.0+bg'])} | **{fmt(ratio(stream['ours+bg'], stream['torch-2.15.0+bg']))}** | "
      "n/a | n/a |")
    held = a["held"]
    for every in (4, 1):
        label = "4. held-back stream" if every == 4 else "4b. held-back stream"
        share = f"1 held per {every} fast" if every > 1 else "1 held per fast"
        row(f"{label}, {share}", "new pinned MiB", held[("ours", every)]["new_bytes"] / 2**20,
            {s: held[(s, every)]["new_bytes"] / 2**20 for s in STREAM_REFERENCES}, STREAM_REFERENCES)
        row("", "fast blocks' wait before reuse, iterations", held[("ours", every)]["mean_wait_iterations"],
            {s: held[(s, every)]["mean_wait_iterations"] for s in STREAM_REFERENCES}, STREAM_REFERENCES)
    mem = a["memory"]
    for trace, name in (("memory_loader", "5a. data loader"), ("memory_offload", "5b. weight offload")):
        for divisions in DIVISIONS:
            row(f"{name}, ours {divisions} division{'s' if divisions > 1 else ''}",
                "reserved / requested bytes at peak", mem[(trace, f"ours/{divisions}")],
                {s: mem[(trace, s)] for s in REFERENCES})
        for variant, setting in LOADER_VARIANTS.items() if trace == "memory_loader" else []:
            for divisions in DIVISIONS:
                row(f"{name}, ours {divisions} division{'s' if divisions > 1 else ''} + `{setting}`",
                    "reserved / requested bytes at peak", mem[(trace, f"ours+{variant}/{divisions}")],
                    {s: mem[(trace, s)] for s in REFERENCES})
    for trace, name in (("memory_loader", "5a. data loader"), ("memory_offload", "5b. weight offload")):
        w(f"| {name}, both with `pinned_max_round_threshold_mb:{THRESHOLD_MB}` | reserved / requested bytes at peak | "
          f"{fmt(mem[(trace, 'ours+threshold')])} | n/a | n/a | {fmt(mem[(trace, 'torch-2.15.0+threshold')])} | "
          f"**{fmt(ratio(mem[(trace, 'ours+threshold')], mem[(trace, 'torch-2.15.0+threshold')]))}** | n/a | n/a |")
    row("6. miss path", "time per new block / raw `zeMemAllocHost`'s in the same process", a["miss"]["ours"],
        a["miss"])
    w(f"| 6, control: raw `zeMemAllocHost` timed as the subject | the same ratio (what the harness adds) | "
      f"{a['miss_control']:.3f} | | | | | | |")
    w(f"| 6, floor: raw `zeMemAllocHost` behind `c10::Allocator::allocate` | the same ratio (what the interface "
      f"adds) | {a['miss_floor']:.3f} | | | | | | |")
    cg = a["callgrind"]
    if cg:
        row("7. callgrind, scenario 1", "instructions per cycle", cg[("cycle", "ours")]["instructions_per_cycle"],
            {s: cg[("cycle", s)]["instructions_per_cycle"] for s in REFERENCES})
        row("7. callgrind, scenario 3", "instructions per cycle", cg[("stream", "ours")]["instructions_per_cycle"],
            {s: cg[("stream", s)]["instructions_per_cycle"] for s in STREAM_REFERENCES}, STREAM_REFERENCES)
        outside = {s: cg[("stream", s)]["instructions_per_cycle"] - cg[("stream", s)]["level_zero_per_cycle"]
                   for s in ["ours"] + STREAM_REFERENCES}
        row("", "of which outside Level Zero", outside["ours"], outside, STREAM_REFERENCES)
        outside = {s: cg[("miss", s)]["instructions_per_cycle"] - cg[("miss", s)]["level_zero_per_cycle"]
                   for s in ["ours"] + STREAM_REFERENCES}
        row("7. callgrind, scenario 6", "instructions per new block outside Level Zero", outside["ours"], outside,
            STREAM_REFERENCES)
    w("")

    # ------------------------------------------------------------- targets
    w("## Targets (issue 6)")
    w("")
    targets = []
    r1 = ratio(cycle["ours"], cycle["torch-2.5.1"])
    targets.append(("1", "at most 1/3 of PyTorch 2.5.1's time", r1 <= 1 / 3,
                    f"{fmt(cycle['ours'])} ns against {fmt(cycle['torch-2.5.1'])} ns: {fmt(r1)}× (a third is "
                    f"{fmt(cycle['torch-2.5.1'] / 3)} ns, of which the floor with one compare-and-swap each way "
                    f"takes {fmt(a['floor']['cas'])} ns)"))
    note = "" if a["machine_scaling"] >= 1.8 else "; the machine itself did not give 2 cores during this run"
    targets.append(("2", "2-thread aggregate at least 1.8× our 1-thread rate", scaling["ours"] >= 1.8,
                    f"{fmt(scaling['ours'])}× (plain arithmetic on 2 threads got {fmt(a['machine_scaling'])}×{note})"))
    r3 = ratio(stream["ours"], stream["torch-2.5.1"])
    targets.append(("3", "at most 1/3 of PyTorch 2.5.1's time", r3 <= 1 / 3,
                    f"{fmt(stream['ours'])} ns against {fmt(stream['torch-2.5.1'])} ns: {fmt(r3)}×"))
    r4 = ratio(held[("ours", 4)]["new_bytes"], held[("torch-2.5.1", 4)]["new_bytes"])
    r4b = ratio(held[("ours", 1)]["new_bytes"], held[("torch-2.5.1", 1)]["new_bytes"])
    targets.append(("4", "at most half PyTorch 2.5.1's new pinned bytes", r4 <= 0.5,
                    f"{mib(held[('ours', 4)]['new_bytes'])} against {mib(held[('torch-2.5.1', 4)]['new_bytes'])}: "
                    f"{fmt(r4)}× (4b, one held-back block per fast one: {fmt(r4b)}×, where the held stream's own "
                    "blocks alone make half)"))
    m5a, m5b = mem[("memory_loader", "ours+release/4")], mem[("memory_offload", "ours/4")]
    targets.append(("5", "at most 1.15 reserved per requested byte with 4 divisions", m5a <= 1.15 and m5b <= 1.15,
                    f"data loader {fmt(m5a, 4)} with `{RELEASE}` ({'met' if m5a <= 1.15 else 'not met'}; "
                    f"{fmt(mem[('memory_loader', 'ours/4')], 4)} without), weight offload "
                    f"{fmt(m5b, 4)} ({'met' if m5b <= 1.15 else 'not met'})"))
    r6 = a["miss"]["ours"]
    targets.append(("6", "within 5% of raw zeMemAllocHost", r6 <= 1.05,
                    f"{fmt(a['miss_ns']['ours'])} ns against {fmt(a['miss_raw_ns']['ours'])} ns in the same "
                    f"process: {fmt(r6, 4)}×"))
    w("| scenario | target | measured | |")
    w("|---|---|---|---|")
    for number, target, ok, measured in targets:
        w(f"| {number} | {target} | {measured} | {verdict(ok)} |")
    w("")
    met = sum(1 for t in targets if t[2])
    w(f"{met} of {len(targets)} targets met.")
    w("")

    # ------------------------------------------------------------- reading
    w("## Reading")
    w("")
    for paragraph in reading(a, r1, r3, r4, r6):
        w(f"- {paragraph}")
    w("")

    # ------------------------------------------------------------- details
    w("## Details")
    w("")
    w("### Scenario 5, bytes")
    w("")
    w("| trace | subject | peak requested | peak reserved | reserved / requested | new blocks |")
    w("|---|---|---|---|---|---|")
    for (trace, subject), r in a["memory_raw"].items():
        name = "data loader" if trace == "memory_loader" else "weight offload"
        if subject.startswith("ours/"):
            label = f"ours, {subject.split('/')[1]} division(s)"
        elif subject.startswith("ours+") and subject.split("/")[0][5:] in LOADER_VARIANTS:
            variant, divisions = subject[5:].split("/")
            label = f"ours, {divisions} division(s), `{LOADER_VARIANTS[variant]}`"
        elif subject.endswith("+threshold"):
            label = f"{LABEL[subject.split('+')[0]]}, `pinned_max_round_threshold_mb:{THRESHOLD_MB}`"
        else:
            label = LABEL[subject]
        w(f"| {name} | {label} | {mib(r['peak_requested'])} | {mib(r['peak_reserved'])} | "
          f"{fmt(r['reserved_per_requested'])} | {r['host_allocations']:,} of {r['allocations']:,} |")
    w("")
    w("### Scenario 4, counts")
    w("")
    w("| held : fast | subject | new blocks | fast-stream blocks reused | mean wait (iterations) | mean wait (µs) |")
    w("|---|---|---|---|---|---|")
    for (subject, every), r in held.items():
        w(f"| 1 : {every} | {LABEL[subject]} | {r['new_allocations']} | {r['reuses']} of {r['fast_frees']} | "
          f"{fmt(r['mean_wait_iterations'])} | {fmt(r['mean_wait_us'])} |")
    w("")
    if cg:
        w("### Scenario 7, where our instructions go")
        w("")
        for scenario, name in (("cycle", "scenario 1 (allocate + free)"),
                               ("stream", "scenario 3 (allocate + record + free)"),
                               ("miss", "scenario 6 (one new block)")):
            ours = cg[(scenario, "ours")]
            w(f"Self cost per {'new block' if scenario == 'miss' else 'cycle'}, {name}, of "
              f"{fmt(ours['instructions_per_cycle'])} instructions "
              f"({fmt(ours['level_zero_per_cycle'])} inside Level Zero calls):")
            w("")
            w("| instructions | function | library |")
            w("|---|---|---|")
            for function, library, cost in ours["hot"]:
                w(f"| {cost:.0f} | `{function}` | {library} |")
            w("")
    w("### Scenario parameters")
    w("")
    w(f"- 1, 2: sizes 4 KiB, 64 KiB, 1 MiB, 3,000,000 B in turn, {plan['cycle']['rounds']:,} rounds of them per "
      f"trial, {plan['cycle']['trials']} trials (2: {plan['cycle_threads']['rounds']:,} rounds per thread, "
      "1-thread and 2-thread trials alternating, each thread with its own sizes loop).")
    w(f"- 3: batches of {plan['stream']['batch']} allocate+record+free cycles (64 KiB and 1 MiB), "
      f"{plan['stream']['batches']} batches per trial; each driver command sleeps {STREAM_LATENCY_US} µs "
      "(`ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US`), so events recorded in a batch are still pending within it; "
      "between batches (not timed) the harness waits for the stream. 3b sets `pinned_use_background_threads:True` "
      "(ours: `XPU_CACHING_HOST_ALLOCATOR_CONF`; 2.15.0: `PYTORCH_ALLOC_CONF`, with the template's own answer "
      "instead of XPU's `false`).")
    w(f"- 4: {plan['held']['iterations']} iterations of one 64 KiB block recorded on the fast stream (then the "
      "harness waits for that stream), and every 4th iteration (4b: every iteration) one more on a stream held "
      "back by a wait on an event signalled only at the end. Wait: iterations (and µs) from a fast-stream "
      "block's free to its reuse; blocks never reused count until the end.")
    w(f"- 5a: {plan['memory_loader']['steps']} batches of uint8 images (8-64 per batch, 3×r×r with r from 224 to "
      "384, as in multi-scale training) with int64 labels, 4 batches in flight before the oldest is freed. "
      f"5b: every weight of {plan['memory_offload']['layers']} decoder layers of a 13B Llama-like model "
      "(hidden 5120, MLP 13824, fp16) plus embedding and head, all kept. Reserved: bytes the driver holds "
      "(its live-objects extension), sampled after every allocation; requested: bytes of live requests. "
      f"The threshold rows set `pinned_max_round_threshold_mb:{THRESHOLD_MB}` (ours: "
      "`XPU_CACHING_HOST_ALLOCATOR_CONF`; PyTorch 2.15.0: `PYTORCH_ALLOC_CONF`).")
    w(f"- 6: {plan['miss']['count']} blocks of 64 KiB to 4 MiB (powers of two, unchanged by every size-class "
      f"setting) allocated from an empty cache, {plan['miss']['trials']} trials alternating with raw "
      "`zeMemAllocHost` of the same sizes in the same process.")
    w(f"- 7: `valgrind --tool=callgrind` counting only the timed loops of 1 ({plan['callgrind_cycle']['rounds']:,} "
      f"rounds), 3 ({plan['callgrind_stream']['batches']} batches) and the subject's allocations in 6 "
      f"({plan['callgrind_miss']['trials']} trials of {plan['callgrind_miss']['count']}), main thread only. "
      "Inside Level Zero: the loader's ze* entry points, with the driver under them.")
    w("")
    return "\n".join(lines)


def reading(a, r1, r3, r4, r6):
    cycle, stream, cg = a["cycle"], a["stream"], a["callgrind"]
    out = []
    text = (f"Scenario 1: our cached allocate+free takes {fmt(cycle['ours'])} ns, {fmt(r1)}× PyTorch 2.5.1's "
            f"{fmt(cycle['torch-2.5.1'])} ns and {fmt(ratio(cycle['ours'], cycle['torch-2.15.0']))}× 2.15.0's "
            f"{fmt(cycle['torch-2.15.0'])} ns; the target, a third of 2.5.1's, is "
            f"{fmt(cycle['torch-2.5.1'] / 3)} ns. The cycle around an allocator that does nothing takes "
            f"{fmt(a['floor']['none'])} ns, and {fmt(a['floor']['cas'])} ns with one compare-and-swap each way, "
            f"which leaves {fmt(cycle['torch-2.5.1'] / 3 - a['floor']['cas'])} ns for everything else an allocator "
            "does: find the thread's cache and the size class, pop and push a free list, count its statistics.")
    best = a["cycle_best"]
    text += (f" The least disturbed process of each subject (the best of {a['cycle_rounds']} rounds: on a "
             "shared machine other work on a process's CPU can slow it for its whole life): ours "
             f"{fmt(best['ours'])} ns, PyTorch 2.5.1 {fmt(best['torch-2.5.1'])} ns, "
             f"{fmt(ratio(best['ours'], best['torch-2.5.1']))}×.")
    if cg:
        ours_i = cg[("cycle", "ours")]["instructions_per_cycle"]
        ref_i = cg[("cycle", "torch-2.5.1")]["instructions_per_cycle"]
        hot = ", ".join(f"`{f}` ({c:.0f})" for f, _, c in cg[("cycle", "ours")]["hot"][:4])
        text += (f" Callgrind counts {fmt(ours_i)} instructions per cycle against {fmt(ref_i)}; our largest self "
                 f"costs are {hot}.")
    out.append(text)
    sc, machine_sc = a["threads_scaling"], a["machine_scaling"]
    text = (f"Scenario 2: on 2 threads our aggregate throughput is {fmt(sc['ours'])}× our 1-thread rate "
            f"(PyTorch 2.5.1 {fmt(sc['torch-2.5.1'])}×, 2.15.0 {fmt(sc['torch-2.15.0'])}×, UMF "
            f"{fmt(sc['umf-1.2.0'])}×), while the same threads doing plain arithmetic got {fmt(machine_sc)}×. ")
    if machine_sc < 1.5:
        text += ("The machine did not give this run a second core (other work was running), so this run cannot "
                 "tell how the allocators scale; run it again on a quiet machine.")
    elif sc["ours"] >= 0.9 * machine_sc:
        text += "Our threads do not get in each other's way."
    else:
        low, high = a["threads_scaling_range"]
        text += (f"Our rate did not double: over the rounds ours ranged from {fmt(low)}× to {fmt(high)}×. A wide "
                 "range points at the machine (one of its CPUs slowed by other work for a process's life, which "
                 "the arithmetic, a chain of dependent multiplications, hardly feels); a narrow low one at our "
                 "threads writing memory the other reads.")
    out.append(text)
    text = (f"Scenario 3: with events pending, a cycle costs us {fmt(stream['ours'])} ns, {fmt(r3)}× PyTorch "
            f"2.5.1's {fmt(stream['torch-2.5.1'])} ns.")
    if cg:
        o, p = cg[("stream", "ours")], cg[("stream", "torch-2.5.1")]
        text += (f" Of our {fmt(o['instructions_per_cycle'])} instructions per cycle, "
                 f"{fmt(o['level_zero_per_cycle'])} are inside Level Zero calls (PyTorch 2.5.1: "
                 f"{fmt(p['level_zero_per_cycle'])} of {fmt(p['instructions_per_cycle'])}): the software "
                 "driver's barrier append, event query and reset, which an allocator recording one event per "
                 "free pays whatever it does.")
        floor = o["level_zero_per_cycle"] / p["instructions_per_cycle"]
        budget = p["instructions_per_cycle"] / 3 - o["level_zero_per_cycle"]
        if budget < 100:
            text += (f" With no instructions of its own a cycle would still count {fmt(floor)}× PyTorch 2.5.1's, so "
                     "a third is out of reach while every free records its own event.")
        else:
            text += (f" A third of PyTorch 2.5.1's count leaves {fmt(budget)} instructions per cycle for our own "
                     f"code, against {fmt(o['instructions_per_cycle'] - o['level_zero_per_cycle'])} now.")
    out.append(text)
    h = a["held"]
    out.append(f"Scenario 4: behind a held-back stream we allocate {mib(h[('ours', 4)]['new_bytes'])} of new pinned "
               f"memory where PyTorch 2.5.1 allocates {mib(h[('torch-2.5.1', 4)]['new_bytes'])} ({fmt(r4)}×); a "
               f"fast-stream block of ours waits {fmt(h[('ours', 4)]['mean_wait_iterations'])} iteration(s) on average "
               f"before reuse, PyTorch's {fmt(h[('torch-2.5.1', 4)]['mean_wait_iterations'])} (its one event queue "
               "stops at the held stream's first event). 2.15.0 behaves as 2.5.1 here.")
    mem = a["memory"]
    loader = {d: mem[("memory_loader", f"ours/{d}")] for d in DIVISIONS}
    offload = {d: mem[("memory_offload", f"ours/{d}")] for d in DIVISIONS}
    best = min(loader, key=loader.get)
    release = {d: mem[("memory_loader", f"ours+release/{d}")] for d in DIVISIONS}
    split = {d: mem[("memory_loader", f"ours+split/{d}")] for d in DIVISIONS}
    both = {d: mem[("memory_loader", f"ours+split+release/{d}")] for d in DIVISIONS}
    raw = a["memory_raw"]
    allocations = f"{raw[('memory_loader', 'ours/4')]['allocations']:,}"

    def new_blocks(subject):
        return f"{raw[('memory_loader', subject)]['host_allocations']:,}"

    out.append(f"Scenario 5b (weight offload, large odd sizes): power-of-two rounding holds "
               f"{fmt(offload[1])}× the requested bytes (PyTorch: {fmt(mem[('memory_offload', 'torch-2.5.1')])}×); "
               f"2, 4 and 8 divisions bring it to {fmt(offload[2])}, {fmt(offload[4])} and {fmt(offload[8])}. "
               f"Scenario 5a (data loader, sizes varying batch to batch): no caching allocator that keeps whole "
               f"blocks per size class does well; we hold {fmt(loader[1])}× with 1 division, and finer classes "
               f"make it {'worse' if loader[4] > loader[1] else 'better'} ({fmt(loader[4])}× with 4, best "
               f"{fmt(loader[best])}× with {best}), because a cached block serves only its own class or the next; "
               f"UMF, which gives blocks above 2 MiB back at once, holds {fmt(mem[('memory_loader', 'umf-1.2.0')])}×. "
               f"With `{RELEASE}` a miss first gives back as many cached bytes as it takes: we hold "
               f"{fmt(release[4])}× with 4 divisions ({fmt(release[1])}× with 1, {fmt(release[8])}× with 8), at the "
               f"price of a driver allocation for {new_blocks('ours+release/4')} of {allocations} allocations "
               f"(without it {new_blocks('ours/4')}; UMF {new_blocks('umf-1.2.0')}). "
               f"With `{SPLIT}` a miss of 1 MiB or more is carved out of the smallest larger cached block and "
               f"freed parts merge again: {fmt(split[4])}× with 4 divisions for {new_blocks('ours+split/4')} new "
               f"blocks, and with both settings {fmt(both[4])}× for {new_blocks('ours+split+release/4')}. "
               f"With no rounding above {THRESHOLD_MB} MiB (PyTorch 2.13's key, which we read too) we hold "
               f"{fmt(mem[('memory_offload', 'ours+threshold')])}× on 5b and "
               f"{fmt(mem[('memory_loader', 'ours+threshold')])}× on 5a, PyTorch 2.15.0 "
               f"{fmt(mem[('memory_offload', 'torch-2.15.0+threshold')])}× and "
               f"{fmt(mem[('memory_loader', 'torch-2.15.0+threshold')])}×.")
    text = (f"Scenario 6: a miss costs us {fmt(a['miss_ns']['ours'])} ns, {fmt(r6)}× raw zeMemAllocHost timed "
            f"alongside (PyTorch 2.5.1: {fmt(a['miss']['torch-2.5.1'])}×, 2.15.0: "
            f"{fmt(a['miss']['torch-2.15.0'])}×, UMF: {fmt(a['miss']['umf-1.2.0'])}×). Raw zeMemAllocHost "
            f"timed as the subject against itself gives {a['miss_control']:.3f}×: that much of these ratios is the "
            "harness and the machine, the rest is the allocator's. Raw zeMemAllocHost behind "
            f"`c10::Allocator::allocate` and a `DataPtr` gives {a['miss_floor']:.3f}×: that much any allocator "
            "behind PyTorch's interface pays.")
    if cg:
        o, p = cg[("miss", "ours")], cg[("miss", "torch-2.5.1")]
        hot = ", ".join(f"`{f}` ({c:.0f})" for f, _, c in o["hot"][:4])
        text += (f" Outside Level Zero a miss takes {fmt(o['instructions_per_cycle'] - o['level_zero_per_cycle'])} "
                 f"of our instructions (PyTorch 2.5.1: "
                 f"{fmt(p['instructions_per_cycle'] - p['level_zero_per_cycle'])}); the largest self costs of the "
                 f"whole miss are {hot}. The software driver's zeMemAllocHost is far cheaper than a GPU driver's, "
                 "which pins pages, so the same overhead weighs more here than it would on a GPU.")
    out.append(text)
    misses = {s: n for s, n in a["cycle_misses"].items() if n}
    if misses:
        out.append("Scenario 1 is meant to hit the cache; these subjects still allocated new memory during it: "
                   + ", ".join(f"{LABEL[s]} {fmt(n)} times" for s, n in misses.items())
                   + " (UMF by design above 2 MiB, its largest pooled size).")
    return out


def plain(value):
    """JSON-able: tuple keys become strings."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else "/".join(map(str, k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build directory holding benches/")
    parser.add_argument("--driver", required=True, help="libze_software_driver.so")
    parser.add_argument("--report", required=True, help="where to write the Markdown report")
    parser.add_argument("--quick", action="store_true", help="a few iterations of everything")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    runner = Runner(args.build, args.driver, args.quick)
    started = time.time()
    results = measure(runner, plan)
    seconds = time.time() - started
    analysis = analyse(results)
    text = report(analysis, plan, args.quick, seconds, "scripts/bench --quick" if args.quick else "scripts/bench")
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plain(results), f, indent=1)
    # The ratios and targets on the terminal.
    section = text[text.index("## Ratios"):text.index("## Reading")]
    print()
    print(section.rstrip())
    print(f"\n{runner.processes} processes in {seconds:.0f} s; report: {args.report}")


if __name__ == "__main__":
    main()
