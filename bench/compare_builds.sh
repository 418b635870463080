#!/usr/bin/env bash
# Times the step and epoch benchmarks of two builds side by side: the revision OLD_REV and
# the working tree, alternating in every round (old first in odd rounds, new first in even
# ones) so that load from other processes hits both alike. Prints, per benchmark line, the
# median of each side's per-round medians and the median and range of the per-round ratios
# new / old, and the epoch's trained-weights digest of each side.
#
#   bash bench/compare_builds.sh OLD_REV [ROUNDS]        # ROUNDS: default 8
#
# OLD_REV is checked out in a worktree under target/compare/ and its benchmarks built there
# (a release build, about 10 minutes the first time). Benchmarks: `train_step --only=mlp`,
# `train_step --only=cnn`, `meta_step --only=mlp --quick` (one thread each), and
# `epoch --reps=3` on one and on two threads.
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: bash bench/compare_builds.sh OLD_REV [ROUNDS]}
rounds=${2:-8}
root=$PWD
short=$(git rev-parse --short "$old_rev")
old_tree=$root/target/compare/$short

build() { # build DIR TARGET_DIR: prints the directory holding the bench binaries
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench -q -p repro-stages --no-run >&2)
  echo "$2/release/deps"
}
newest() { # newest DIR NAME: the newest bench binary NAME in DIR
  ls -t "$1/$2"-* | grep -v '\.d$' | head -n 1
}

if [ ! -d "$old_tree/src" ]; then
  git worktree add --detach -f "$old_tree/src" "$old_rev" >&2
fi
old_bin=$(build "$old_tree/src" "$old_tree/target")
new_bin=$(build "$root" "$root/target")

out=$(mktemp)
trap 'rm -f "$out"' EXIT
run_side() { # run_side SIDE ROUND DIR
  local side=$1 round=$2 dir=$3
  local ts ms es
  ts=$(newest "$dir" train_step)
  ms=$(newest "$dir" meta_step)
  es=$(newest "$dir" epoch)
  RAYON_NUM_THREADS=1 "$ts" --only=mlp | awk -v s="$side" -v r="$round" '$1 ~ /^mlp/ { print s, r, $1, $2 }' >>"$out"
  RAYON_NUM_THREADS=1 "$ts" --only=cnn | awk -v s="$side" -v r="$round" '$1 ~ /^cnn/ { print s, r, $1, $2 }' >>"$out"
  RAYON_NUM_THREADS=1 "$ms" --only=mlp --quick |
    awk -v s="$side" -v r="$round" '$1 ~ /^mlp/ && NF == 6 { print s, r, "meta_step:" $2, $4 }' >>"$out"
  for t in 1 2; do
    RAYON_NUM_THREADS=$t "$es" --reps=3 |
      awk -v s="$side" -v r="$round" -v t="$t" '$1 == "ce_epoch" { print s, r, "epoch_t" t, $2 }
        $1 == "ce_epoch_weights" { print s, r, "digest", $2 }' >>"$out"
  done
}
for r in $(seq 1 "$rounds"); do
  echo "round $r of $rounds" >&2
  if [ $((r % 2)) = 1 ]; then
    run_side old "$r" "$old_bin"
    run_side new "$r" "$new_bin"
  else
    run_side new "$r" "$new_bin"
    run_side old "$r" "$old_bin"
  fi
done

echo "# old: $old_rev ($short), new: working tree at $(git rev-parse --short HEAD), $rounds rounds"
python3 - "$out" <<'EOF'
import statistics, sys
from collections import defaultdict
times = defaultdict(lambda: defaultdict(dict))
digests = defaultdict(set)
for line in open(sys.argv[1]):
    side, rnd, name, value = line.split()
    if name == "digest":
        digests[side].add(value)
    else:
        times[name][int(rnd)][side] = float(value)
print(f"{'benchmark':<32} {'old ms':>9} {'new ms':>9} {'new/old':>8}  range")
for name, rounds in times.items():
    both = [r for r in rounds.values() if len(r) == 2]
    ratios = [r["new"] / r["old"] for r in both]
    old = statistics.median(r["old"] for r in both)
    new = statistics.median(r["new"] for r in both)
    print(f"{name:<32} {old:9.3f} {new:9.3f} {statistics.median(ratios):7.3f}x"
          f"  {min(ratios):.2f}-{max(ratios):.2f}")
for side in ("old", "new"):
    print(f"# {side} epoch weights: {', '.join(sorted(digests[side]))}")
EOF
