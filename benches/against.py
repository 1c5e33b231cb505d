#!/usr/bin/env python3
"""Scenario 1 of scripts/bench (a cached allocate and free on one thread) for
our allocator built from two trees, in one run: processes of the two builds
alternate on each of the SYCL runtime's Level Zero adapters, and the medians
and their ratio are printed. For changes that must keep the hot path's speed;
scripts/bench-against builds the trees and runs this.
"""
import argparse
import statistics

import run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build directory of the tree measured")
    parser.add_argument("--against-build", required=True, help="the CMake build directory of the tree compared with")
    parser.add_argument("--label", required=True, help="what the tree compared with is, for the report")
    parser.add_argument("--driver", required=True, help="libze_software_driver.so, the same for both")
    parser.add_argument("--loader", required=True, help="the lib/ of Level Zero loader 1.20.6")
    parser.add_argument("--sycl", required=True, help="the lib/ of Intel's SYCL runtime")
    parser.add_argument("--rounds", type=int, default=21, help="processes of each build per adapter")
    args = parser.parse_args()

    programs = [run.PROGRAMS["ours"]]
    builds = {
        "now": run.Runner(args.build, args.driver, args.loader, args.sycl, False, programs),
        args.label: run.Runner(args.against_build, args.driver, args.loader, args.sycl, False, programs),
    }
    nanoseconds = {(adapter, name): [] for adapter in run.ADAPTERS for name in builds}
    for round_ in range(args.rounds):
        # Which build goes first alternates, so that neither always runs in the other's wake.
        order = list(builds.items()) if round_ % 2 == 0 else list(reversed(builds.items()))
        for adapter in run.ADAPTERS:
            for name, runner in order:
                result = runner.run(adapter, "ours", "cycle", run.FULL["cycle"])
                nanoseconds[(adapter, name)].append(result["ns_per_cycle"])

    print(f"\nScenario 1, ns per cached allocate + free, medians of {args.rounds} processes each:")
    print(f"| adapter | now | {args.label} | now / {args.label} |")
    print("|---|---|---|---|")
    for adapter in run.ADAPTERS:
        now = statistics.median(nanoseconds[(adapter, "now")])
        then = statistics.median(nanoseconds[(adapter, args.label)])
        print(f"| {adapter} | {now:.2f} | {then:.2f} | {now / then:.3f} |")


if __name__ == "__main__":
    main()
