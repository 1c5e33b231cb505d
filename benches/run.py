#!/usr/bin/env python3
"""Runs the benchmark programs of benches/ and writes the report (issues 6, 15 and 17).

scripts/bench builds the programs and calls this; run it by hand as
    python3 benches/run.py --build build/bench --driver build/bench/cargo/release/libze_software_driver.so \\
        --loader <level-zero-1.20.6>/lib --sycl <sycl-2026.2.0>/lib --report BENCHMARKS.md [--quick]

Every subject runs on Intel's SYCL runtime over Level Zero loader 1.20.6 and the
software driver, once with each of the runtime's Level Zero adapters (v2 and
v1). Every measurement is one process of one subject (our allocator is a
process-wide singleton, and the two PyTorch references link two different
libc10s), so each prints one JSON line. Timed scenarios are repeated in rounds
that go through the subjects in turn; a subject's figure is the median over
rounds of each process's best trial. Ratios are ours / reference: below 1 is
better for us.
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
    "seed-2.5.1": "bench_seed_2_5",
    "seed-2.15.0": "bench_seed_2_15",
    "umf-1.2.0": "bench_umf",
}
SEEDS = ["seed-2.5.1", "seed-2.15.0"]
REFERENCES = SEEDS + ["umf-1.2.0"]
# The runtime's two Level Zero adapters, each forced with UR_ADAPTERS_FORCE_LOAD.
ADAPTERS = {"v2": "libur_adapter_level_zero_v2.so.0", "v1": "libur_adapter_level_zero.so.0"}
# Scenario 5 measures bytes, which do not depend on the adapter.
MEMORY_ADAPTER = "v2"
# Scenario 1's cycle around allocators that do next to nothing, and scenario 6's
# misses through an allocator that only calls the driver (bench_floor.cpp).
FLOOR_PROGRAM = "bench_floor"
FLOOR_VARIANTS = ["none", "cas", "cache", "cache-plain"]
# Scenario 1 once more with memory history on, in a ring of this many entries.
HISTORY_ENTRIES = 100000
MISS_FLOOR_VARIANT = "raw"
LABEL = {
    "ours": "ours",
    "ours-barrier": "ours, `RecordWith::Barrier`",
    "ours-last-event": "ours, `RecordWith::LastEventUnlessIdle`",
    "seed-2.5.1": "seed (PyTorch 2.5.1)",
    "seed-2.15.0": "PyTorch 2.15.0",
    "umf-1.2.0": "UMF 1.2.0",
}
# Our ways of recording stream events through the SYCL integration (bench_ours.cpp).
RECORD = {"ours": {}, "ours-barrier": {"BENCH_OURS_RECORD": "barrier"},
          "ours-last-event": {"BENCH_OURS_RECORD": "last-event"}}
STREAM_LATENCY_US = 20
BACKGROUND_OURS = "pinned_use_background_threads:True"
THRESHOLD_MB = 16
ROUNDED = "pinned_fit:rounded"
# Our settings measured on scenario 5's traces besides the defaults (exact
# fit), and whether only the traces that free (5a, 5c, 5d) need them: PyTorch's
# rounding (`pinned_fit:rounded` alone is PyTorch's behaviour), finer classes,
# the best of rounding's answers to blocks that no longer fit, and splitting.
MEMORY_VARIANTS = {
    "ours+split": ("pinned_split_blocks:True", True),
    "ours+rounded": (ROUNDED, False),
    "ours+rounded/4": (f"{ROUNDED},pinned_roundup_divisions:4", False),
    "ours+rounded/8+release": (f"{ROUNDED},pinned_roundup_divisions:8,pinned_release_cached_on_miss:True", True),
}
# Scenario 5's traces (scenarios.h), and whether they free.
TRACES = {
    "memory_loader": ("5a. data loader", True),
    "memory_offload": ("5b. weight offload", False),
    "memory_nlp": ("5c. NLP batches", True),
    "memory_kv": ("5d. KV-cache offload", True),
}

FULL = {
    "rounds": {"cycle": 11, "cycle_threads": 9, "handoff": 5, "stream": 7, "miss": 15},
    "cycle": {"rounds": 50000, "trials": 7},
    "cycle_threads": {"rounds": 30000, "trials": 15},
    "handoff": {"count": 50000, "trials": 5},
    "stream": {"batch": 32, "batches": 100, "trials": 3},
    "held": {"iterations": 1000},
    "memory_loader": {"steps": 400},
    "memory_offload": {"layers": 8},
    "memory_nlp": {"steps": 400},
    "memory_kv": {"steps": 600},
    "miss": {"count": 256, "trials": 101},
    "callgrind_cycle": {"rounds": 2000, "trials": 1},
    "callgrind_stream": {"batch": 32, "batches": 20, "trials": 1},
    "callgrind_miss": {"count": 256, "trials": 3},
}
QUICK = {
    "rounds": {"cycle": 1, "cycle_threads": 1, "handoff": 1, "stream": 1, "miss": 1},
    "cycle": {"rounds": 200, "trials": 1},
    "cycle_threads": {"rounds": 200, "trials": 1},
    "handoff": {"count": 200, "trials": 1},
    "stream": {"batch": 8, "batches": 3, "trials": 1},
    "held": {"iterations": 40},
    "memory_loader": {"steps": 40},
    "memory_offload": {"layers": 1},
    "memory_nlp": {"steps": 40},
    "memory_kv": {"steps": 60, "capacity": 48},
    "miss": {"count": 16, "trials": 3},
    "callgrind_cycle": {"rounds": 10, "trials": 1},
    "callgrind_stream": {"batch": 8, "batches": 2, "trials": 1},
    "callgrind_miss": {"count": 16, "trials": 1},
}


class Runner:
    def __init__(self, build, driver, loader, sycl, quick, programs=(*PROGRAMS.values(), FLOOR_PROGRAM)):
        self.bin = os.path.join(build, "benches")
        self.driver = os.path.abspath(driver)
        self.library_path = f"{os.path.abspath(loader)}:{os.path.abspath(sycl)}"
        self.sycl = os.path.abspath(sycl)
        self.quick = quick
        self.processes = 0
        if not os.path.isfile(self.driver):
            sys.exit(f"run.py: no software driver at {self.driver}")
        for program in programs:
            if not os.access(os.path.join(self.bin, program), os.X_OK):
                sys.exit(f"run.py: {program} is not built in {self.bin}")

    def env(self, adapter, extra):
        env = dict(os.environ)
        # Only what a run asks for: nothing inherited may change the settings.
        for name in list(env):
            if name.startswith(("ZE_", "XPU_CACHING_HOST_ALLOCATOR", "PYTORCH_", "BENCH_", "UMF_", "UR_", "SYCL_")):
                del env[name]
        env["LD_LIBRARY_PATH"] = self.library_path
        env["UR_ADAPTERS_FORCE_LOAD"] = os.path.join(self.sycl, ADAPTERS[adapter])
        env["ZE_ENABLE_ALT_DRIVERS"] = self.driver
        env["ZE_SOFTWARE_DRIVER_LEAK_CHECK"] = "off"
        env.update(extra)
        return env

    def run(self, adapter, subject, scenario, params, env=None, wrapper=(), program=None):
        command = list(wrapper) + [os.path.join(self.bin, program or PROGRAMS[subject]), scenario]
        command += [f"{key}={value}" for key, value in params.items()]
        self.processes += 1
        try:
            done = subprocess.run(command, env=self.env(adapter, env or {}), capture_output=True, text=True,
                                  timeout=900)
        except subprocess.TimeoutExpired:
            sys.exit(f"run.py: timed out on {adapter}: {' '.join(command)}")
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"run.py: failed on {adapter} (exit {done.returncode}): {' '.join(command)}")
        result = json.loads(lines[-1])
        print(f"  {adapter} {result['subject']:<16} {scenario:<15} {summary(result)}", flush=True)
        return result


def summary(result):
    keys = ["ns_per_cycle", "ns_per_cycle_aggregate", "scaling", "new_bytes", "mean_wait_iterations",
            "reserved_per_requested", "ratio_to_raw", "misses", "ns_per_allocation"]
    return " ".join(f"{key}={result[key]:.4g}" if isinstance(result[key], float) else f"{key}={result[key]}"
                    for key in keys if key in result)


def median(values):
    return statistics.median(values)


def stream_variants(adapter):
    """Scenario 3's subjects: (program subject, environment) by name."""
    latency = {"ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US": str(STREAM_LATENCY_US)}
    ours = [name for name in RECORD if adapter == "v2" or name != "ours-last-event"]
    variants = {name: ("ours", {**latency, **RECORD[name]}) for name in ours}
    variants.update({seed: (seed, latency) for seed in SEEDS})
    variants["ours+bg"] = ("ours", {**latency, "XPU_CACHING_HOST_ALLOCATOR_CONF": BACKGROUND_OURS})
    variants["seed-2.15.0+bg"] = ("seed-2.15.0", {**latency, "BENCH_TORCH_CONFIG_BACKGROUND": "1",
                                                  "PYTORCH_ALLOC_CONF": "pinned_use_background_threads:True"})
    return variants


def measure_adapter(runner, plan, adapter):
    """The timed scenarios (1, 2, 2b, 3, 4, 6) on one adapter."""
    results = {}
    rounds = plan["rounds"]

    print(f"== {adapter}: 1. cached allocate + free, one thread", flush=True)
    results["cycle"] = {s: [] for s in PROGRAMS}
    results["floor"] = {v: [] for v in FLOOR_VARIANTS}
    results["history"] = []
    for _ in range(rounds["cycle"]):
        for subject in PROGRAMS:
            results["cycle"][subject].append(runner.run(adapter, subject, "cycle", plan["cycle"]))
        for variant in FLOOR_VARIANTS:
            results["floor"][variant].append(runner.run(adapter, f"floor-{variant}", "cycle",
                                                        {**plan["cycle"], "variant": variant}, program=FLOOR_PROGRAM))
        results["history"].append(runner.run(adapter, "ours", "cycle", plan["cycle"],
                                             env={"BENCH_OURS_HISTORY": str(HISTORY_ENTRIES)}))

    print(f"== {adapter}: 2. the same on 2 threads", flush=True)
    results["cycle_threads"] = {s: [] for s in PROGRAMS}
    for _ in range(rounds["cycle_threads"]):
        for subject in PROGRAMS:
            results["cycle_threads"][subject].append(runner.run(adapter, subject, "cycle_threads",
                                                                plan["cycle_threads"]))

    print(f"== {adapter}: 2b. one thread allocates, another frees", flush=True)
    results["handoff"] = {s: [] for s in PROGRAMS}
    for _ in range(rounds["handoff"]):
        for subject in PROGRAMS:
            results["handoff"][subject].append(runner.run(adapter, subject, "handoff", plan["handoff"]))

    print(f"== {adapter}: 3. allocate + record + free, {STREAM_LATENCY_US} us per command", flush=True)
    variants = stream_variants(adapter)
    busy = ["ours", "ours-barrier"] + SEEDS
    results["stream"] = {v: [] for v in variants}
    results["stream_busy"] = {v: [] for v in busy}
    for _ in range(rounds["stream"]):
        for variant, (subject, env) in variants.items():
            results["stream"][variant].append(runner.run(adapter, subject, "stream", plan["stream"], env))
        for variant in busy:
            subject, env = variants[variant]
            results["stream_busy"][variant].append(runner.run(adapter, subject, "stream",
                                                              {**plan["stream"], "busy": 1}, env))

    print(f"== {adapter}: 4. two streams, one held back", flush=True)
    results["held"] = {}
    for every in (4, 1):
        for subject in ["ours"] + SEEDS:
            results["held"][(subject, every)] = runner.run(adapter, subject, "held",
                                                           {**plan["held"], "held_every": every})

    print(f"== {adapter}: 6. miss path against raw zeMemAllocHost (same process)", flush=True)
    results["miss"] = {s: [] for s in PROGRAMS}
    results["miss_control"] = []
    results["miss_floor"] = []
    for _ in range(rounds["miss"]):
        for subject in PROGRAMS:
            results["miss"][subject].append(runner.run(adapter, subject, "miss", plan["miss"]))
        results["miss_control"].append(runner.run(adapter, "ours", "miss", {**plan["miss"], "control": 1}))
        results["miss_floor"].append(runner.run(adapter, f"floor-{MISS_FLOOR_VARIANT}", "miss",
                                                {**plan["miss"], "variant": MISS_FLOOR_VARIANT},
                                                program=FLOOR_PROGRAM))
    return results


def measure_memory(runner, plan):
    print(f"== {MEMORY_ADAPTER}: 5. reserved bytes per requested byte", flush=True)
    adapter = MEMORY_ADAPTER
    memory = {}
    for trace, (_, frees) in TRACES.items():
        memory[(trace, "ours")] = runner.run(adapter, "ours", trace, plan[trace])
        for variant, (setting, needs_frees) in MEMORY_VARIANTS.items():
            if frees or not needs_frees:
                conf = {"XPU_CACHING_HOST_ALLOCATOR_CONF": setting}
                memory[(trace, variant)] = runner.run(adapter, "ours", trace, plan[trace], conf)
        for subject in REFERENCES:
            memory[(trace, subject)] = runner.run(adapter, subject, trace, plan[trace])
        # PyTorch 2.13+'s answer to rounding waste, which we read too with
        # rounded fit: no rounding above a threshold.
        threshold = f"pinned_max_round_threshold_mb:{THRESHOLD_MB}"
        memory[(trace, "ours+threshold")] = runner.run(
            adapter, "ours", trace, plan[trace], {"XPU_CACHING_HOST_ALLOCATOR_CONF": f"{ROUNDED},{threshold}"})
        memory[(trace, "seed-2.15.0+threshold")] = runner.run(
            adapter, "seed-2.15.0", trace, plan[trace], {"PYTORCH_ALLOC_CONF": threshold})
    return memory


def measure_callgrind(runner, plan):
    print(f"== {MEMORY_ADAPTER}: 7. instructions per cycle (callgrind)", flush=True)
    results = {}
    if shutil.which("valgrind") is None:
        print("  valgrind not found: skipped")
        return results
    with tempfile.TemporaryDirectory() as scratch:
        for scenario, subjects in (("cycle", list(PROGRAMS)), ("stream", ["ours"] + SEEDS),
                                   ("miss", ["ours"] + SEEDS)):
            for subject in subjects:
                results[(scenario, subject)] = callgrind(runner, scratch, scenario, subject,
                                                         plan["callgrind_" + scenario])
    return results


def callgrind(runner, scratch, scenario, subject, params):
    out = os.path.join(scratch, f"callgrind.{scenario}.{subject}")
    wrapper = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}"]
    env = {"BENCH_CALLGRIND": "1"}
    if scenario == "stream":
        env["ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US"] = str(STREAM_LATENCY_US)
    result = runner.run(MEMORY_ADAPTER, subject, scenario, params, env, wrapper)
    inclusive = annotate(out, inclusive=True)
    exclusive = annotate(out, inclusive=False)
    total = inclusive.pop("PROGRAM TOTALS")
    exclusive.pop("PROGRAM TOTALS")
    # Below the allocator: the SYCL runtime (libsycl and Unified Runtime) and
    # Level Zero (the loader's ze* entry points, the driver under them).
    runtime = sum(cost for (function, library), cost in exclusive.items()
                  if re.search(r"lib(sycl|ur_|ze_|umf)", library))
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
        "runtime_per_cycle": runtime / cycles,
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


def machine(loader, sycl):
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
    dirty = command("git", "-C", root, "status", "--porcelain", "--", "src", "ze-software-driver", "sycl", "benches")
    if not commit:  # a tree exported with `git archive`, which names its commit
        commit, dirty = os.environ.get("BENCH_SOURCE_COMMIT", "?"), ""
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs, {memory}",
        "os": f"{distro}, Linux {platform.release()}",
        "compilers": f"{command('g++', '-dumpfullversion')} (g++), {command('rustc', '--version')}",
        "runtime": f"Intel's SYCL runtime 2026.2.0 and Unified Runtime from PyPI ({os.path.dirname(sycl)}), "
                   f"Level Zero loader 1.20.6 from Debian 13's libze1 ({os.path.dirname(loader)}), "
                   "the project's ze-software-driver",
        "valgrind": command("valgrind", "--version"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def analyse_adapter(results):
    """The numbers of one adapter's timed scenarios."""
    a = {}
    a["cycle"] = {s: median([r["ns_per_cycle"] for r in runs]) for s, runs in results["cycle"].items()}
    a["cycle_best"] = {s: min(r["ns_per_cycle"] for r in runs) for s, runs in results["cycle"].items()}
    a["cycle_rounds"] = len(results["cycle"]["ours"])
    a["floor"] = {v: median([r["ns_per_cycle"] for r in runs]) for v, runs in results["floor"].items()}
    a["history"] = median([r["ns_per_cycle"] for r in results["history"]])
    a["cycle_misses"] = {s: sum(r["misses"] for r in runs) for s, runs in results["cycle"].items()}
    threads = results["cycle_threads"]
    a["threads_aggregate"] = {s: median([r["ns_per_cycle_aggregate"] for r in runs]) for s, runs in threads.items()}
    a["threads_scaling"] = {s: median([r["scaling"] for r in runs]) for s, runs in threads.items()}
    a["threads_scaling_range"] = (min(r["scaling"] for r in threads["ours"]), max(r["scaling"] for r in threads["ours"]))
    a["machine_scaling"] = median([r["machine_scaling"] for runs in threads.values() for r in runs])
    a["handoff"] = {s: median([r["ns_per_allocation"] for r in runs]) for s, runs in results["handoff"].items()}
    a["stream"] = {v: median([r["ns_per_cycle"] for r in runs]) for v, runs in results["stream"].items()}
    a["stream_busy"] = {v: median([r["ns_per_cycle"] for r in runs]) for v, runs in results["stream_busy"].items()}
    a["held"] = results["held"]
    a["miss"] = {s: median([r["ratio_to_raw"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_ns"] = {s: median([r["ns_per_allocation"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_raw_ns"] = {s: median([r["raw_ns_per_allocation"] for r in runs]) for s, runs in results["miss"].items()}
    a["miss_per_allocation"] = {s: median([r["misses_per_allocation"] for r in runs])
                                for s, runs in results["miss"].items()}
    a["miss_control"] = median([r["ratio_to_raw"] for r in results["miss_control"]])
    a["miss_floor"] = median([r["ratio_to_raw"] for r in results["miss_floor"]])
    return a


def scenario_1_cell(a, seed):
    """Our scenario 1 time as a ratio of `seed`'s, and the targets' cell that gives it, with the leanest cache's."""
    cycle = a["cycle"]
    r1 = ratio(cycle["ours"], cycle[seed])
    return r1, (f"{fmt(cycle['ours'])} ns against {fmt(cycle[seed])} ns: {fmt(r1)}× (the leanest cache per "
                f"thread: {fmt(ratio(a['floor']['cache'], cycle[seed]))}×)")


def targets_15(adapters):
    """Issue 15's targets against the seed, on each adapter: [(number, target, ok, measured)]."""
    rows = []
    for adapter, a in adapters.items():
        stream, held = a["stream"], a["held"]
        seed = "seed-2.5.1"
        r1, measured = scenario_1_cell(a, seed)
        rows.append(("1", adapter, "at most 1/3 of the seed's time", r1 <= 1 / 3, measured))
        r3 = ratio(stream["ours"], stream[seed])
        rows.append(("3", adapter, "at most 1/5 of the seed's time", r3 <= 1 / 5,
                     f"{fmt(stream['ours'])} ns against {fmt(stream[seed])} ns: {fmt(r3)}×"))
        r4 = ratio(held[("ours", 4)]["new_bytes"], held[(seed, 4)]["new_bytes"])
        rows.append(("4", adapter, "at most half the seed's new pinned bytes", r4 <= 0.5,
                     f"{mib(held[('ours', 4)]['new_bytes'])} against {mib(held[(seed, 4)]['new_bytes'])}: "
                     f"{fmt(r4)}×"))
    return rows


def targets_6(adapters, memory):
    """Issue 6's targets that do not name a reference, on each adapter."""
    rows = []
    for adapter, a in adapters.items():
        scaling = a["threads_scaling"]["ours"]
        note = "" if a["machine_scaling"] >= 1.8 else "; the machine itself did not give 2 cores during this run"
        rows.append(("2", adapter, "2-thread aggregate at least 1.8× our 1-thread rate", scaling >= 1.8,
                     f"{fmt(scaling)}× (plain arithmetic on 2 threads got {fmt(a['machine_scaling'])}×{note})"))
        r6 = a["miss"]["ours"]
        rows.append(("6", adapter, "within 5% of raw zeMemAllocHost", r6 <= 1.05,
                     f"{fmt(a['miss_ns']['ours'])} ns against {fmt(a['miss_raw_ns']['ours'])} ns in the same "
                     f"process: {fmt(r6, 4)}×"))
    return rows


def targets_17(adapters, memory_raw):
    """Issue 17's targets, all at default settings."""
    rows = []
    seed = "seed-2.5.1"
    for trace, (name, _) in TRACES.items():
        bound = 1.05 if trace in ("memory_loader", "memory_offload") else 1.10
        ours, umf = (memory_raw[(trace, s)]["reserved_per_requested"] for s in ("ours", "umf-1.2.0"))
        rows.append((name[:2], MEMORY_ADAPTER, f"reserved / requested at most {bound:.2f} and at most UMF's",
                     ours <= bound and ours <= umf, f"{fmt(ours, 4)} (UMF {fmt(umf, 4)})"))
    for trace, (name, _) in TRACES.items():
        ours, theirs = (memory_raw[(trace, s)]["host_allocations"] for s in ("ours", seed))
        rows.append((name[:2], MEMORY_ADAPTER, "driver allocations at most the seed's", ours <= theirs,
                     f"{ours:,} against {theirs:,}"))
    for adapter, a in adapters.items():
        stream = a["stream"]
        r1, measured = scenario_1_cell(a, seed)
        rows.append(("1", adapter, "at most 1/4 of the seed's time", r1 <= 1 / 4, measured))
        r3 = ratio(stream["ours"], stream[seed])
        rows.append(("3", adapter, "at most 1/3 of the seed's time", r3 <= 1 / 3, f"{fmt(r3)}×"))
    return rows


def targets_table(w, title, rows, note):
    w(f"## {title}")
    w("")
    w("| scenario | adapter | target | measured | |")
    w("|---|---|---|---|---|")
    for number, adapter, target, ok, measured in rows:
        w(f"| {number} | {adapter} | {target} | {measured} | {verdict(ok)} |")
    w("")
    w(f"{sum(1 for row in rows if row[3])} of {len(rows)} met.{note}")
    w("")


def ratios_table(w, adapter, a, cg):
    cycle, stream, busy, held = a["cycle"], a["stream"], a["stream_busy"], a["held"]
    w(f"### Adapter {adapter}")
    w("")
    w("| scenario | metric | ours | seed (PyTorch 2.5.1) | ratio | PyTorch 2.15.0 | ratio | UMF 1.2.0 | ratio |")
    w("|---|---|---|---|---|---|---|---|---|")

    def row(name, metric, ours, values, refs=REFERENCES, digits=3):
        cells = [name, metric, fmt(ours, digits)]
        for ref in REFERENCES:
            if ref in refs and values.get(ref) is not None:
                cells += [fmt(values[ref], digits), f"**{fmt(ratio(ours, values[ref]))}**"]
            else:
                cells += ["n/a", "n/a"]
        w("| " + " | ".join(cells) + " |")

    seed = "seed-2.5.1"
    row("1. cached cycle, 1 thread", "ns per allocate+free", cycle["ours"], cycle)
    floor = a["floor"]
    w(f"| 1, floor: an allocator that does nothing | ns per allocate+free | {fmt(floor['none'])} | "
      f"{fmt(cycle[seed])} | {fmt(ratio(floor['none'], cycle[seed]))} | | | | |")
    for variant, what in [("cas", "one compare-and-swap each way"),
                          ("cache", "the leanest cache per thread, one compare-and-swap each way"),
                          ("cache-plain", "the same cache, a plain load and store for each compare-and-swap")]:
        w(f"| 1, floor: {what} | ns per allocate+free | {fmt(floor[variant])} | "
          f"{fmt(cycle[seed])} | {fmt(ratio(floor[variant], cycle[seed]))} | | | | |")
    w(f"| 1, memory history on ({HISTORY_ENTRIES:,} entries, no contexts) | ns per allocate+free | "
      f"{fmt(a['history'])} | ours, history off: {fmt(cycle['ours'])} | {fmt(ratio(a['history'], cycle['ours']))} "
      f"| | | | |")
    agg = a["threads_aggregate"]
    row("2. cached cycle, 2 threads", "ns per cycle, aggregate", agg["ours"], agg)
    scaling = a["threads_scaling"]
    w(f"| | scaling (2-thread throughput / 1-thread) | {fmt(scaling['ours'])} | {fmt(scaling[seed])} | "
      f"| {fmt(scaling['seed-2.15.0'])} | | {fmt(scaling['umf-1.2.0'])} | |")
    row("2b. one thread allocates, another frees", "ns per allocation", a["handoff"]["ours"], a["handoff"])
    row(f"3. allocate+record+free, stream idle at the free, {STREAM_LATENCY_US} µs per command",
        "ns per cycle", stream["ours"], stream, SEEDS)
    for variant in ("ours-barrier", "ours-last-event"):
        if variant in stream:
            row(f"3, {LABEL[variant]}", "ns per cycle", stream[variant], stream, SEEDS)
    w(f"| 3b. the same, background event thread | ns per cycle | {fmt(stream['ours+bg'])} | n/a | n/a | "
      f"{fmt(stream['seed-2.15.0+bg'])} | **{fmt(ratio(stream['ours+bg'], stream['seed-2.15.0+bg']))}** | "
      "n/a | n/a |")
    row("3c. the same, stream busy at the free", "ns per cycle", busy["ours"], busy, SEEDS)
    row(f"3c, {LABEL['ours-barrier']}", "ns per cycle", busy["ours-barrier"], busy, SEEDS)
    for every in (4, 1):
        label = "4. held-back stream" if every == 4 else "4b. held-back stream"
        share = f"1 held per {every} fast" if every > 1 else "1 held per fast"
        row(f"{label}, {share}", "new pinned MiB", held[("ours", every)]["new_bytes"] / 2**20,
            {s: held[(s, every)]["new_bytes"] / 2**20 for s in SEEDS}, SEEDS)
        row("", "fast blocks' wait before reuse, iterations", held[("ours", every)]["mean_wait_iterations"],
            {s: held[(s, every)]["mean_wait_iterations"] for s in SEEDS}, SEEDS)
    row("6. miss path", "ns per new block", a["miss_ns"]["ours"], a["miss_ns"])
    row("", "the same / raw `zeMemAllocHost`'s in the same process", a["miss"]["ours"], a["miss"])
    w(f"| 6, control: raw `zeMemAllocHost` timed as the subject | the same ratio (what the harness adds) | "
      f"{a['miss_control']:.3f} | | | | | | |")
    w(f"| 6, floor: raw `zeMemAllocHost` behind `c10::Allocator::allocate` | the same ratio (what the interface "
      f"adds) | {a['miss_floor']:.3f} | | | | | | |")
    if cg and adapter == MEMORY_ADAPTER:
        row("7. callgrind, scenario 1", "instructions per cycle", cg[("cycle", "ours")]["instructions_per_cycle"],
            {s: cg[("cycle", s)]["instructions_per_cycle"] for s in REFERENCES})
        row("7. callgrind, scenario 3", "instructions per cycle", cg[("stream", "ours")]["instructions_per_cycle"],
            {s: cg[("stream", s)]["instructions_per_cycle"] for s in SEEDS}, SEEDS)
        outside = {s: cg[("stream", s)]["instructions_per_cycle"] - cg[("stream", s)]["runtime_per_cycle"]
                   for s in ["ours"] + SEEDS}
        row("", "of which outside SYCL and Level Zero", outside["ours"], outside, SEEDS)
        outside = {s: cg[("miss", s)]["instructions_per_cycle"] - cg[("miss", s)]["runtime_per_cycle"]
                   for s in ["ours"] + SEEDS}
        row("7. callgrind, scenario 6", "instructions per new block outside SYCL and Level Zero", outside["ours"],
            outside, SEEDS)
    w("")


def memory_table(w, memory, memory_raw):
    w(f"### Scenario 5 (adapter {MEMORY_ADAPTER}): reserved / requested bytes at peak")
    w("")
    w("| trace | ours | seed (PyTorch 2.5.1) | ratio | PyTorch 2.15.0 | ratio | UMF 1.2.0 | ratio |")
    w("|---|---|---|---|---|---|---|---|")

    def row(name, ours):
        cells = [name, fmt(ours, 4)]
        for ref in REFERENCES:
            cells += [fmt(memory[(trace, ref)], 4), f"**{fmt(ratio(ours, memory[(trace, ref)]))}**"]
        w("| " + " | ".join(cells) + " |")

    for trace, (name, _) in TRACES.items():
        row(f"{name}, ours (defaults: exact fit)", memory[(trace, "ours")])
        for variant, (setting, _) in MEMORY_VARIANTS.items():
            if (trace, variant) in memory:
                row(f"{name}, ours `{setting}`", memory[(trace, variant)])
    for trace, (name, _) in TRACES.items():
        ours, theirs = memory[(trace, "ours+threshold")], memory[(trace, "seed-2.15.0+threshold")]
        w(f"| {name}, both rounded with `pinned_max_round_threshold_mb:{THRESHOLD_MB}` | {fmt(ours)} | n/a | "
          f"n/a | {fmt(theirs)} | **{fmt(ratio(ours, theirs))}** | n/a | n/a |")
    w("")
    w(f"### Scenario 5 (adapter {MEMORY_ADAPTER}): driver allocations")
    w("")
    w("| trace | allocations requested | ours (defaults) | ours `pinned_fit:rounded` | seed (PyTorch 2.5.1) | "
      "PyTorch 2.15.0 | UMF 1.2.0 |")
    w("|---|---|---|---|---|---|---|")
    for trace, (name, _) in TRACES.items():
        counts = [memory_raw[(trace, s)]["host_allocations"]
                  for s in ("ours", "ours+rounded", "seed-2.5.1", "seed-2.15.0", "umf-1.2.0")]
        w(f"| {name} | {memory_raw[(trace, 'ours')]['allocations']:,} | " + " | ".join(f"{c:,}" for c in counts)
          + " |")
    w("")


def report(analysis, memory_raw, cg, plan, quick, seconds, command_line, loader, sycl):
    m = machine(loader, sycl)
    memory = {key: r["reserved_per_requested"] for key, r in memory_raw.items()}
    lines = []
    w = lines.append
    title = "Benchmarks" + (" (quick mode: timings mean nothing)" if quick else "")
    w(f"# {title}")
    w("")
    w(f"Generated by `{command_line}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
      f"in {seconds / 60:.0f} min; do not edit by hand, run the command again. Issues 6, 15 and 17 ask for it.")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {m['cpu']} (shared and noisy: only ratios from one run mean something)")
    w(f"- OS: {m['os']}")
    w(f"- Compilers: {m['compilers']}; our library in cargo's release profile")
    w(f"- Runtime: {m['runtime']} (no GPU); every subject in the Level Zero context under one SYCL context")
    w(f"- {m['valgrind']}; commit {m['commit']}")
    w("")
    w("## What runs")
    w("")
    w("Each subject is its own program (benches/), one process per measurement, all on Intel's SYCL runtime "
      "2026.2 over Level Zero loader 1.20.6 and the software driver. The harness makes what c10 makes: one "
      "`sycl::context` for the platform's devices and one in-order `sycl::queue` per stream. Every timed "
      "scenario runs twice, once on each of the runtime's Level Zero adapters (`UR_ADAPTERS_FORCE_LOAD`): "
      f"**v2** (`{ADAPTERS['v2']}`) and **v1** (`{ADAPTERS['v1']}`); scenario 5 and callgrind on "
      f"{MEMORY_ADAPTER} only.")
    w("")
    w("- **ours**: this library as PyTorch 2.4-2.7 reaches it: `at::xpu::getCachingHostAllocator()` compiled "
      "against the torch 2.5.1 headers, `c10::Allocator::allocate` and `DataPtr` destruction, streams recorded "
      "with `at::xpu::CachingHostAllocator_recordEvent`; set up as PyTorch's start-up would, with "
      "`xpu_host_allocator::use_sycl_context` (sycl/): memory in the SYCL context, events on the stream's "
      "queue, none when the queue has nothing pending (`ext_oneapi_empty`), else a barrier. "
      "`RecordWith::Barrier` rows record a barrier always; `RecordWith::LastEventUnlessIdle` rows take the "
      "queue's last event (v2 only: on v1 that call waits for the queue to drain). Default settings unless a "
      "row says otherwise.")
    w("- **seed (PyTorch 2.5.1)** and **PyTorch 2.15.0**: `at::CachingHostAllocatorImpl` from the wheel's own "
      "`ATen/core/CachingHostAllocator.h` with the four overrides of that release's "
      "`aten/src/ATen/xpu/CachingHostAllocator.cpp`: `sycl::aligned_alloc_host(512, size, context)`, "
      "`sycl::free`, `XPUEvent::record` (a new `sycl::event` from `queue.ext_oneapi_submit_barrier()` per "
      "record) and `XPUEvent::query` (the event's status is `complete`); wrapped as that file wraps it (2.5.1: a "
      "`CachingHostAllocatorInterface` whose `allocate` returns a `DataPtr` with `raw_local_deleter`; 2.15.0: "
      "`DECLARE_HOST_ALLOCATOR`, background thread off as XPU has it). The runtime pools host USM up to 2 MB "
      "(UMF), so most of their `aligned_alloc_host` calls never reach the driver.")
    w("- **UMF 1.2.0** (PyPI `umf`): disjoint pool with its defaults (sizes up to 2 MiB pooled, as SYCL pools "
      "host USM) over its Level Zero provider of host memory, `umfPoolAlignedMalloc(…, 512)`; no streams, so "
      "only the scenarios without streams.")
    w("- **raw**: `zeMemAllocHost`/`zeMemFree` in the same context, timed in the same process as each subject "
      "(scenario 6).")
    w("- **floor**: the same work through a `c10::Allocator` (torch 2.5.1 headers, a `DataPtr` with a deleter) "
      "that adds next to nothing. Scenario 1: one that hands out a fixed buffer, and one that also makes one "
      "atomic compare-and-swap on allocate and one on free, the least a block handed between threads needs. "
      "Then a cache of blocks per thread at its leanest: the block on top of "
      "the thread's stack for the request's power-of-two class, claimed with one compare-and-swap and put back "
      "with one, and four plain counters with a peak; and the same cache with a plain load and store for each "
      "compare-and-swap, which no longer tells a block taken by another thread or freed twice at once. "
      "Scenario 6: one that calls `zeMemAllocHost` for each allocate and `zeMemFree` for each free, with no "
      "cache. What is left of a target after it is what an allocator may spend.")
    w("")
    rounds = plan["rounds"]
    w(f"Timed scenarios run {rounds['cycle']} (1), {rounds['cycle_threads']} (2), {rounds['handoff']} (2b), "
      f"{rounds['stream']} (3) and "
      f"{rounds['miss']} (6) rounds through the subjects in turn; a figure is the median over rounds of each "
      "process's best trial. Ratios are **ours / reference**: below 1 is better for us.")
    w("")
    w("## Ratios")
    w("")
    for adapter, a in analysis.items():
        ratios_table(w, adapter, a, cg)
    memory_table(w, memory, memory_raw)

    targets_table(w, "Targets against the seed (issue 15)", targets_15(analysis),
                  " Scenario 6 has no target against the seed: see the reading.")
    targets_table(w, "The other targets (issue 6)", targets_6(analysis, memory), "")
    targets_table(w, "Exact fit by default (issue 17)", targets_17(analysis, memory_raw),
                  " Scenarios 2, 4 and 6 keep their targets above.")

    w("## Reading")
    w("")
    for paragraph in reading(analysis, memory, memory_raw, cg):
        w(f"- {paragraph}")
    w("")

    w("## Details")
    w("")
    w(f"### Scenario 5, bytes (adapter {MEMORY_ADAPTER})")
    w("")
    w("| trace | subject | peak requested | peak reserved | reserved / requested | new blocks |")
    w("|---|---|---|---|---|---|")
    for (trace, subject), r in memory_raw.items():
        name = TRACES[trace][0]
        if subject in MEMORY_VARIANTS:
            label = f"ours, `{MEMORY_VARIANTS[subject][0]}`"
        elif subject.endswith("+threshold"):
            rounded = f"{ROUNDED}," if subject.startswith("ours") else ""
            label = f"{LABEL[subject.split('+')[0]]}, `{rounded}pinned_max_round_threshold_mb:{THRESHOLD_MB}`"
        else:
            label = LABEL[subject]
        w(f"| {name} | {label} | {mib(r['peak_requested'])} | {mib(r['peak_reserved'])} | "
          f"{fmt(r['reserved_per_requested'])} | {r['host_allocations']:,} of {r['allocations']:,} |")
    w("")
    w("### Scenario 4, counts")
    w("")
    w("| adapter | held : fast | subject | new blocks | fast-stream blocks reused | mean wait (iterations) | "
      "mean wait (µs) |")
    w("|---|---|---|---|---|---|---|")
    for adapter, a in analysis.items():
        for (subject, every), r in a["held"].items():
            w(f"| {adapter} | 1 : {every} | {LABEL[subject]} | {r['new_allocations']} | {r['reuses']} of "
              f"{r['fast_frees']} | {fmt(r['mean_wait_iterations'])} | {fmt(r['mean_wait_us'])} |")
    w("")
    if cg:
        w(f"### Scenario 7, where our instructions go (adapter {MEMORY_ADAPTER})")
        w("")
        for scenario, name in (("cycle", "scenario 1 (allocate + free)"),
                               ("stream", "scenario 3 (allocate + record + free)"),
                               ("miss", "scenario 6 (one new block)")):
            ours = cg[(scenario, "ours")]
            w(f"Self cost per {'new block' if scenario == 'miss' else 'cycle'}, {name}, of "
              f"{fmt(ours['instructions_per_cycle'])} instructions "
              f"({fmt(ours['runtime_per_cycle'])} in the SYCL runtime and Level Zero):")
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
    w(f"- 2b: the same sizes in turn, {plan['handoff']['count']:,} allocations per trial, {plan['handoff']['trials']} "
      "trials after one that fills the cache; each block goes to a second thread through a ring of 8 slots and "
      "is freed there, as PyTorch's pin-memory thread pins batches that the main thread drops. Time per "
      "allocation over the allocating thread's wall time; both threads spin, then yield, when the ring is full "
      "or empty.")
    w(f"- 3: batches of {plan['stream']['batch']} allocate+record+free cycles (64 KiB and 1 MiB), "
      f"{plan['stream']['batches']} batches per trial; each driver command sleeps {STREAM_LATENCY_US} µs "
      "(`ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US`), so events recorded in a batch are still pending within it; "
      "between batches (not timed) the harness waits for the stream's queue. No other work is submitted: at "
      "each free the stream has nothing of its own pending but the events recorded before. 3c holds the "
      "stream back for each whole batch (a barrier waiting on an event the harness signals after the batch), "
      "as when the copy that used a block has not run yet at its free. 3b sets "
      "`pinned_use_background_threads:True` (ours: `XPU_CACHING_HOST_ALLOCATOR_CONF`; 2.15.0: "
      "`PYTORCH_ALLOC_CONF`, with the template's own answer instead of XPU's `false`).")
    w(f"- 4: {plan['held']['iterations']} iterations of one 64 KiB block recorded on the fast stream (then the "
      "harness waits for that stream), and every 4th iteration (4b: every iteration) one more on a stream held "
      "back by a barrier waiting on an event signalled only at the end. Wait: iterations (and µs) from a "
      "fast-stream block's free to its reuse; blocks never reused count until the end.")
    w(f"- 5a: {plan['memory_loader']['steps']} batches of uint8 images (8-64 per batch, 3×r×r with r from 224 to "
      "384, as in multi-scale training) with int64 labels, 4 batches in flight before the oldest is freed. "
      f"5b: every weight of {plan['memory_offload']['layers']} decoder layers of a 13B Llama-like model "
      "(hidden 5120, MLP 13824, fp16) plus embedding and head, all kept. Reserved: bytes the driver holds "
      "(its live-objects extension), sampled after every allocation; requested: bytes of live requests. "
      f"5c: {plan['memory_nlp']['steps']} text batches of input ids, attention mask and labels (int64, "
      "B×L each, B from 4 to 32, L log-uniform from 64 to 4096 tokens in steps of 64), 4 batches in flight "
      "before the oldest is freed, as a tokenizing data loader feeds a model. "
      f"5d: {plan['memory_kv']['steps']} swaps of one sequence's KV cache (1 to 24 pages of 2 MiB) out to "
      f"host memory, as vLLM's swap space does; beyond {plan['memory_kv'].get('capacity', 192)} pages out, "
      "a random sequence is swapped back in and its buffer freed. "
      f"The threshold rows set `pinned_max_round_threshold_mb:{THRESHOLD_MB}` (ours: "
      "`XPU_CACHING_HOST_ALLOCATOR_CONF`; PyTorch 2.15.0: `PYTORCH_ALLOC_CONF`).")
    w(f"- 6: {plan['miss']['count']} blocks of 64 KiB to 4 MiB (powers of two, unchanged by every size-class "
      f"setting) allocated from an empty cache (`empty_cache` before each trial), {plan['miss']['trials']} "
      "trials alternating with raw `zeMemAllocHost` of the same sizes in the same process.")
    w(f"- 7: `valgrind --tool=callgrind` counting only the timed loops of 1 ({plan['callgrind_cycle']['rounds']:,} "
      f"rounds), 3 ({plan['callgrind_stream']['batches']} batches) and the subject's allocations in 6 "
      f"({plan['callgrind_miss']['trials']} trials of {plan['callgrind_miss']['count']}), main thread only. "
      "In the SYCL runtime and Level Zero: the self cost of libsycl, the Unified Runtime libraries, UMF, the "
      "loader and the driver.")
    w("")
    return "\n".join(lines)


def reading(analysis, memory, memory_raw, cg):
    out = []
    seed = "seed-2.5.1"
    for adapter, a in analysis.items():
        cycle, stream, busy = a["cycle"], a["stream"], a["stream_busy"]
        best = a["cycle_best"]
        text = (f"Adapter {adapter}. Scenario 1: our cached allocate+free takes {fmt(cycle['ours'])} ns, "
                f"{fmt(ratio(cycle['ours'], cycle[seed]))}× the seed's {fmt(cycle[seed])} ns and "
                f"{fmt(ratio(cycle['ours'], cycle['seed-2.15.0']))}× 2.15.0's {fmt(cycle['seed-2.15.0'])} ns; "
                f"the cycle around an allocator that does nothing takes {fmt(a['floor']['none'])} ns, "
                f"{fmt(a['floor']['cas'])} ns with one compare-and-swap each way, and the leanest cache per thread "
                f"{fmt(a['floor']['cache'])} ns ({fmt(ratio(a['floor']['cache'], cycle[seed]))}× the seed), "
                f"{fmt(a['floor']['cache-plain'])} ns without its compare-and-swaps. The least disturbed process of "
                f"each (the best of {a['cycle_rounds']} rounds): ours {fmt(best['ours'])} ns, the seed "
                f"{fmt(best[seed])} ns, {fmt(ratio(best['ours'], best[seed]))}×. Scenario 3: a cycle costs us "
                f"{fmt(stream['ours'])} ns against the seed's {fmt(stream[seed])} ns "
                f"({fmt(ratio(stream['ours'], stream[seed]))}×): at each free the stream's queue has nothing "
                "pending, so we record no event, where the seed submits a barrier. Recording a barrier always "
                f"costs us {fmt(stream['ours-barrier'])} ns ({fmt(ratio(stream['ours-barrier'], stream[seed]))}×)")
        if "ours-last-event" in stream:
            text += (f", and the queue's last event {fmt(stream['ours-last-event'])} ns "
                     f"({fmt(ratio(stream['ours-last-event'], stream[seed]))}×)")
        text += (f". With the stream busy at each free (3c) both of us pay a barrier per free: ours "
                 f"{fmt(busy['ours'])} ns, the seed {fmt(busy[seed])} ns "
                 f"({fmt(ratio(busy['ours'], busy[seed]))}×), ours with `RecordWith::Barrier` "
                 f"{fmt(busy['ours-barrier'])} ns: the difference is the question whether the queue is empty, "
                 "asked once every 16 records on a busy queue.")
        out.append(text)
        h = a["held"]
        out.append(f"Adapter {adapter}. Scenario 4: behind a held-back stream we allocate "
                   f"{mib(h[('ours', 4)]['new_bytes'])} of new pinned memory where the seed allocates "
                   f"{mib(h[(seed, 4)]['new_bytes'])}; a fast-stream block of ours waits "
                   f"{fmt(h[('ours', 4)]['mean_wait_iterations'])} iteration(s) on average before reuse, the "
                   f"seed's {fmt(h[(seed, 4)]['mean_wait_iterations'])} (its one event queue stops at the held "
                   "stream's first event).")
        miss_ns, per = a["miss_ns"], a["miss_per_allocation"]
        text = (f"Adapter {adapter}. Scenario 6: a block from an empty cache costs us {fmt(miss_ns['ours'])} ns, "
                f"{fmt(a['miss']['ours'], 4)}× raw zeMemAllocHost timed alongside (control "
                f"{a['miss_control']:.3f}×, `c10::Allocator` floor {a['miss_floor']:.3f}×). The seed takes "
                f"{fmt(miss_ns[seed])} ns ({fmt(ratio(miss_ns['ours'], miss_ns[seed]))}× ours against it), "
                f"{fmt(a['miss'][seed], 3)}× raw, and reaches the driver for {fmt(per[seed])} of its blocks "
                f"where we do for {fmt(per['ours'])}: its `sycl::aligned_alloc_host` goes through the runtime's "
                "UMF pool (sizes up to 2 MB), which pays for itself only when a freed size is asked for again ")
        if per[seed] >= 0.5:
            text += ("while the pool still holds it; after the seed's `empty_cache` the pool keeps few free slabs "
                     "per size, so most of these blocks come from the driver again, with the runtime's own work "
                     "on top.")
        else:
            text += ("while the pool still holds it, as it mostly does here: the seed wins this scenario by "
                     "serving misses from the runtime's pool, which a cache below the runtime could match only by "
                     "keeping memory through `empty_cache`.")
        out.append(text)
    def held(trace, subject):
        r = memory_raw[(trace, subject)]
        return f"{fmt(r['reserved_per_requested'], 4)}× for {r['host_allocations']:,} driver allocations"

    for trace, (name, _) in TRACES.items():
        requests = memory_raw[(trace, "ours")]["allocations"]
        out.append(f"Scenario {name} (adapter {MEMORY_ADAPTER}), {requests:,} requests: exact fit holds "
                   f"{held(trace, 'ours')}; PyTorch's rounding (`{ROUNDED}`) {held(trace, 'ours+rounded')}; the "
                   f"seed {held(trace, seed)}, PyTorch 2.15.0 {held(trace, 'seed-2.15.0')}, UMF "
                   f"{held(trace, 'umf-1.2.0')}.")
    out.append("Scenario 5: a cache that never gives memory back reaches the driver only for the largest set of "
               "blocks live at once, and holds every block it ever made; one that holds within 0.5% of the "
               "most bytes ever requested must give back blocks no request fits and make new ones when sizes "
               "drift, as they do in 5a, 5c and 5d. Exact fit chooses the memory; `pinned_fit:rounded` "
               "chooses PyTorch's blocks, with PyTorch's memory. Small blocks (5a's labels, 5b's norm "
               "weights, 5c's shortest batches) share driver allocations in both: the seed's "
               "`sycl::aligned_alloc_host` goes through the runtime's UMF pool, which carves host blocks below "
               "32 KiB out of shared 64 KiB driver allocations (Unified Runtime's chunk cut-off, half its 64 KiB "
               "minimum host slab), and ours carves blocks of up to 32 KiB out of 64 KiB slabs; the other blocks "
               "are one driver allocation each, in the seed as in ours.")
    if cg:
        ours, theirs = cg[("cycle", "ours")], cg[("cycle", seed)]
        hot = ", ".join(f"`{f}` ({c:.0f})" for f, _, c in ours["hot"][:4])
        out.append(f"Scenario 7 (adapter {MEMORY_ADAPTER}): callgrind counts {fmt(ours['instructions_per_cycle'])} "
                   f"instructions per scenario-1 cycle against the seed's {fmt(theirs['instructions_per_cycle'])}; "
                   f"our largest self costs are {hot}.")
    return out


def plain(value):
    """JSON-able: tuple keys become strings."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else "/".join(map(str, k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def add_runtime_arguments(parser):
    """What every subject runs on: the software driver, the loader and the SYCL runtime."""
    parser.add_argument("--driver", required=True, help="libze_software_driver.so")
    parser.add_argument("--loader", required=True, help="the lib/ of Level Zero loader 1.20.6")
    parser.add_argument("--sycl", required=True, help="the lib/ of Intel's SYCL runtime")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build directory holding benches/")
    add_runtime_arguments(parser)
    parser.add_argument("--report", required=True, help="where to write the Markdown report")
    parser.add_argument("--quick", action="store_true", help="a few iterations of everything")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    runner = Runner(args.build, args.driver, args.loader, args.sycl, args.quick)
    started = time.time()
    results = {adapter: measure_adapter(runner, plan, adapter) for adapter in ADAPTERS}
    memory_raw = measure_memory(runner, plan)
    cg = measure_callgrind(runner, plan)
    seconds = time.time() - started
    analysis = {adapter: analyse_adapter(r) for adapter, r in results.items()}
    text = report(analysis, memory_raw, cg, plan, args.quick, seconds,
                  "scripts/bench --quick" if args.quick else "scripts/bench", args.loader, args.sycl)
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plain({"timed": results, "memory": memory_raw, "callgrind": cg}), f, indent=1)
    # The ratios and targets on the terminal.
    section = text[text.index("## Ratios"):text.index("## Reading")]
    print()
    print(section.rstrip())
    print(f"\n{runner.processes} processes in {seconds:.0f} s; report: {args.report}")


if __name__ == "__main__":
    main()
