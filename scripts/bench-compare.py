#!/usr/bin/env python3
"""Compares two benchmark result files written by `make bench` (BENCH_RESULTS).

    scripts/bench-compare.py OLD.json NEW.json

For every (group, case) in both files it prints the old and new medians and
new/old, both of the medians and, where the case has a baseline, of its ratio
to the baseline (the figure that carries across runs on a noisy machine).
Whether higher is better depends on the unit: for times lower is better, for
requests/s higher is. Cases in only one file are listed at the end.
"""
import json
import sys


def load(path):
    with open(path) as f:
        data = json.load(f)
    cases = {(r["group"], r["case"]): r for r in data.get("results", [])}
    return data, cases


def ratio(new, old):
    if new is None or old is None or old == 0:
        return "-"
    return f"{new / old:.3f}x"


def number(value):
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    old_data, old = load(argv[1])
    new_data, new = load(argv[2])
    for label, data in (("old", old_data), ("new", new_data)):
        print(f"{label}: {data.get('commit', '?')}  {data.get('date', '?')}  {data.get('machine', '?')}")
    print()
    header = f"{'group':<9} {'case':<60} {'unit':<10} {'old':>12} {'new':>12} {'new/old':>8} {'ratio new/old':>14}"
    print(header)
    print("-" * len(header))
    for key in [k for k in new if k in old]:
        o, n = old[key], new[key]
        unit = n.get("unit", "")
        if o.get("unit") != unit:
            unit = f"{o.get('unit')}->{unit}"
        print(
            f"{key[0]:<9} {key[1][:60]:<60} {unit:<10} {number(o['median']):>12} {number(n['median']):>12}"
            f" {ratio(n['median'], o['median']):>8} {ratio(n.get('ratio'), o.get('ratio')):>14}"
        )
    only_old = [k for k in old if k not in new]
    only_new = [k for k in new if k not in old]
    for label, keys in (("only in old", only_old), ("only in new", only_new)):
        for group, case in keys:
            print(f"{label}: {group}: {case}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
