#!/usr/bin/env python3
"""Collects every number a profile's runs wrote, and compares two such collections.

bench/gpu_bundle.sh uses `extract` on the CPU run of the `tiny` profile (the reference it
packs next to the `cuda` binary); bench/gpu_check.sh uses `extract` on the GPU run and then
`compare`. Standard library only (a GPU node has python3 but maybe nothing else).

  gpu_compare.py extract PROJECT PROFILE OUT.json
      For every member of PROFILE in PROJECT/pipeline.lock, reads its run's output files
      (results/.runs/runs/<fingerprint>/out/): every *.json file, and every *.csv file
      without its `#` comment lines, except under log/ (wall times). Writes
      {member: {relative path: content}}.
  gpu_compare.py compare REFERENCE.json CANDIDATE.json [--tol 0.02] [--top 15]
      Pairs up every number of the two (same member, file, position); a number agrees
      when |candidate - reference| <= tol * max(1, |reference|) (default tol 0.02: 2 %
      of the value, or 0.02 absolute below 1). Non-numbers must be equal. Prints a
      Markdown summary with the largest differences; exit 0 when everything agrees,
      1 otherwise. The `device` field of the metrics (cpu, cuda) is not compared.
"""

import csv
import io
import json
import os
import sys


def extract(project, profile, out):
    with open(os.path.join(project, "pipeline.lock")) as f:
        lock = json.load(f)
    members = lock.get("profiles", {}).get(profile)
    if not members:
        sys.exit(f"{project}/pipeline.lock: no members recorded for profile {profile!r}")
    runs = {}
    for member, rec in sorted(members.items()):
        d = os.path.join(project, "results", ".runs", "runs", rec["fingerprint"], "out")
        files = {}
        for root, dirs, names in os.walk(d):
            if root == d and "log" in dirs:
                dirs.remove("log")
            for name in sorted(names):
                p = os.path.join(root, name)
                rel = os.path.relpath(p, d)
                if name.endswith(".json"):
                    with open(p) as f:
                        files[rel] = json.load(f)
                elif name.endswith(".csv"):
                    with open(p, newline="") as f:
                        text = "".join(l for l in f if not l.startswith("#"))
                    files[rel] = list(csv.reader(io.StringIO(text)))
        runs[member] = files
    with open(out, "w") as f:
        json.dump(runs, f, sort_keys=True)
    print(f"{out}: {len(runs)} members of profile {profile}")


# keys that name where a run happened, not what it computed
IGNORED = {"device"}


def number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def walk(ref, cand, path, out):
    """Appends (path, reference, candidate) for every leaf pair; None for a missing side."""
    if isinstance(ref, dict) and isinstance(cand, dict):
        for k in sorted((set(ref) | set(cand)) - IGNORED):
            walk(ref.get(k), cand.get(k), f"{path}/{k}", out)
    elif isinstance(ref, list) and isinstance(cand, list):
        for i in range(max(len(ref), len(cand))):
            walk(ref[i] if i < len(ref) else None, cand[i] if i < len(cand) else None,
                 f"{path}[{i}]", out)
    else:
        out.append((path, ref, cand))


def compare(ref_path, cand_path, tol, top):
    with open(ref_path) as f:
        ref = json.load(f)
    with open(cand_path) as f:
        cand = json.load(f)
    leaves = []
    walk(ref, cand, "", leaves)
    numeric, bad, other = [], [], []
    for path, r, c in leaves:
        rn, cn = number(r), number(c)
        if rn is not None and cn is not None:
            d = abs(cn - rn)
            rel = d / max(1.0, abs(rn))
            numeric.append((rel, d, path, rn, cn))
            if rel > tol:
                bad.append(path)
        elif r != c:
            other.append((path, r, c))
    numeric.sort(reverse=True)
    exact = sum(1 for n in numeric if n[1] == 0.0)
    print(f"- numbers compared: {len(numeric)} ({exact} identical), "
          f"over the tolerance ({tol} x max(1, |cpu|)): {len(bad)}")
    print(f"- other values that differ or are missing on one side: {len(other)}")
    print(f"\nLargest differences (scaled = |gpu - cpu| / max(1, |cpu|)):\n")
    print("| scaled | cpu | gpu | where |\n|---|---|---|---|")
    for rel, d, path, rn, cn in numeric[:top]:
        print(f"| {rel:.3g} | {rn:.6g} | {cn:.6g} | `{path}` |")
    for path, r, c in other[:top]:
        print(f"\nDiffers: `{path}`: cpu {str(r)[:80]!r}, gpu {str(c)[:80]!r}")
    return 0 if not bad and not other else 1


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "extract":
        extract(a[1], a[2], a[3])
        return 0
    if len(a) >= 3 and a[0] == "compare":
        opts = dict(zip(a[3::2], a[4::2]))
        return compare(a[1], a[2], float(opts.get("--tol", 0.02)), int(opts.get("--top", 15)))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
