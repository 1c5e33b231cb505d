#!/usr/bin/env python3
"""Scenarios 1 and 2 of scripts/bench (a cached allocate and free on one
thread, and on two) for our allocator built from two trees, in one run:
processes of the two builds alternate on each of the SYCL runtime's Level
Zero adapters, and the medians and their ratio are printed. For changes that
must keep the hot path's speed; scripts/bench-against builds the trees and
runs this.
"""
import argparse
import statistics

import run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the CMake build directory of the tree measured")
    parser.add_argument("--against-build", required=True, help="the CMake build directory of the tree compared with")
    parser.add_argument("--label", required=True, help="what the tree compared with is, for the report")
    run.add_runtime_arguments(parser)  # the same for both trees
    parser.add_argument("--rounds", type=int, default=21, help="processes of each build per adapter")
    args = parser.parse_args()

    programs = [run.PROGRAMS["ours"]]
    builds = {
        "now": run.Runner(args.build, args.driver, args.loader, args.sycl, False, programs),
        args.label: run.Runner(args.against_build, args.driver, args.loader, args.sycl, False, programs),
    }
    # What each process reports, per scenario: its time per cycle, and on two
    # threads its throughput against its own one-thread rate.
    measures = {"cycle": ("ns_per_cycle", "ns per cached allocate + free, one thread"),
                "cycle_threads": ("scaling", "2-thread throughput / 1-thread")}
    results = {(scenario, adapter, name): [] for scenario in measures for adapter in run.ADAPTERS for name in builds}
    for round_ in range(args.rounds):
        # Which build goes first alternates, so that neither always runs in the other's wake.
        order = list(builds.items()) if round_ % 2 == 0 else list(reversed(builds.items()))
        for scenario, (key, _) in measures.items():
            for adapter in run.ADAPTERS:
                for name, runner in order:
                    result = runner.run(adapter, "ours", scenario, run.FULL[scenario])
                    results[(scenario, adapter, name)].append(result[key])

    print(f"\nMedians of {args.rounds} processes each:")
    print(f"| scenario | adapter | now | {args.label} | now / {args.label} |")
    print("|---|---|---|---|---|")
    for scenario, (_, what) in measures.items():
        for adapter in run.ADAPTERS:
            now = statistics.median(results[(scenario, adapter, "now")])
            then = statistics.median(results[(scenario, adapter, args.label)])
            print(f"| {what} | {adapter} | {now:.3g} | {then:.3g} | {now / then:.3f} |")

if __name__ == "__main__":
    main()
