#!/usr/bin/env bash
# bench/slurm_overhead.sh - what running stages as Slurm jobs costs, per stage, against the
# local executor: `repro run --profile tiny` once locally and once with `--executor slurm`, each
# in a fresh copy of the project (empty results store, no pipeline.lock), for several rounds and
# several `-j` settings, on the one-node cluster of .ci/slurm/start.
#
#   cargo build --release && bench/slurm_overhead.sh
#
# Environment (all optional):
#   REPRO    the binary (default: target/release/repro of this checkout)
#   ROUNDS   rounds per -j setting (default 3)
#   JOBS     the -j settings, space-separated; `default` passes no -j (default: "default 8 1")
#   PROFILE  the profile (default: tiny)
#   SLURM_CONF / SLURM_DIR  the cluster; when `scontrol ping` does not answer, the script runs
#            .ci/slurm/start (root; installs Debian's slurm packages when missing)
#   KEEP=1   keep the temporary projects (default: deleted at exit)
#
# What `-j` means under each executor: it caps the stages running (local) or submitted (slurm) at
# once. Local default: the number of cores; the cores are shared among the running stages
# (RAYON_NUM_THREADS). Slurm default: 64, i.e. every ready stage is submitted at once, and the
# cluster runs as many as it has job slots (.ci/slurm/start: max(8, nproc) slots, one per stage,
# each stage with RAYON_NUM_THREADS=1, so 8 stages share the 2 cores of a small machine). So:
#   -j default  the two executors as a user runs them (different concurrency: cores vs slots)
#   -j 8        same concurrency on both (8 stages at once, matching the cluster's 8 slots)
#   -j 1        one stage at a time on both: the cleanest per-stage latency, because the stages
#               run alone and every Slurm delay lands on the critical path
#
# Printed per round and -j setting:
#   stages      stages run (the `N ran` of the summary line; the same for both executors)
#   local_s     wall seconds of the local run (repro started to repro exited)
#   slurm_s     wall seconds of the Slurm run
#   ovh/stage   (slurm_s - local_s) / stages: the scheduling overhead per stage, as wall time
#   wait/run/commit  per-stage medians of the Slurm run, read from the files of its store
#               (ext4 timestamps, ~4 ms resolution); for each stage:
#                 wait   = job started (birth of its results/.runs/slurm/*.err, which slurmstepd
#                          creates) - submitted (mtime of its .sbatch, written just before sbatch)
#                 run    = the stage's last write (newest mtime under results/.runs/runs/<fp>/out,
#                          or of its .out progress file) - job started
#                 commit = the engine committed it (mtime of runs/<fp>/manifest.json) - its last
#                          write: squeue polling, job teardown, then hashing the outputs
#   lcommit     the same `commit` median for the local run: the engine's own share (waiting for
#               the child, hashing), so commit - lcommit is what polling Slurm adds
#   noop_s      wall seconds of a second Slurm run in the same project (must run nothing)
# then the median of every column over the rounds. A round FAILS (exit status 1 at the end)
# unless: both runs succeed with the same number of stages; `diff -r` of the published outputs
# (results/ without the run store results/.runs) and of pipeline.lock (every stage's output
# digest) finds nothing; and the second Slurm run prints `0 ran`, submits no job and leaves
# pipeline.lock as it was.
#
# How to read it: ovh/stage at -j 1 is the price of one Slurm round trip per stage (submission,
# the scheduler's cycle, job launch, polling); wait + (commit - lcommit) is the same price seen
# per job. At -j 8 and the default the jobs overlap, so the wall-time overhead per stage is less
# than one round trip; at the default -j the Slurm run also runs 8 stages at once against the
# local executor's `nproc`, which can hide the overhead or even win when stages are
# single-threaded. The machine may be shared: other processes' load shows up in every column,
# hence the medians.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPRO=${REPRO:-$ROOT/target/release/repro}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-"default 8 1"}
PROFILE=${PROFILE:-tiny}
KEEP=${KEEP:-0}

say() { echo "[slurm_overhead] $*" >&2; }
die() {
  say "error: $*"
  exit 2
}

[ -x "$REPRO" ] || die "$REPRO is missing: run 'cargo build --release' first (or set REPRO)"
REPRO=$(cd "$(dirname "$REPRO")" && pwd)/$(basename "$REPRO")

# ---- the cluster -------------------------------------------------------------------------------
: "${SLURM_CONF:=${SLURM_DIR:-${TMPDIR:-/tmp}/repro-slurm}/etc/slurm.conf}"
export SLURM_CONF
if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
  say "no Slurm controller answers for SLURM_CONF=$SLURM_CONF; starting one with .ci/slurm/start"
  conf=$("$ROOT/.ci/slurm/start" | sed -n 's/^SLURM_CONF=//p')
  [ -n "$conf" ] || die ".ci/slurm/start printed no SLURM_CONF line"
  export SLURM_CONF=$conf
fi
slots=$(sinfo -h -o %c 2>/dev/null | head -1)
say "cluster: SLURM_CONF=$SLURM_CONF, ${slots:-?} job slots; $(nproc) cores; binary $REPRO"

# ---- the project copies ------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slurm-overhead.XXXXXX")
cleanup() { if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# The project's files without its results and lock: every run starts from an empty store.
mkdir "$WORK/template"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -z | grep -zv -e '^results/' -e '^pipeline\.lock$' |
    xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$WORK/template"
else
  cp -r "$ROOT/pipeline.yaml" "$ROOT/data" "$WORK/template/"
fi
[ -f "$WORK/template/pipeline.yaml" ] || die "no pipeline.yaml copied from $ROOT"

now() { date +%s.%N; }

# run DIR LOG ARGS...: runs repro in DIR, prints the wall seconds; exits on failure.
run() {
  local dir=$1 log=$2 t0 t1
  shift 2
  t0=$(now)
  if ! (cd "$dir" && "$REPRO" run --profile "$PROFILE" "$@") >"$log" 2>&1; then
    say "repro run --profile $PROFILE $* failed in $dir; last lines of $log:"
    tail -20 "$log" >&2
    exit 1
  fi
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# ran LOG: the N of the summary line `N ran, ...`.
ran() { sed -n 's/^\([0-9]*\) ran, .*/\1/p' "$1" | tail -1; }

# median: the median of the numbers on stdin ("nan" when none).
median() {
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) print "nan"; else printf "%.2f\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# latencies PROJECT: "wait run commit" per-stage medians of a run, from the store (see the
# header); wait and run are "-" for a local run (no job files).
latencies() {
  local runs=$1/results/.runs rd fp sb stem submit start end commit
  for rd in "$runs"/runs/*/; do
    rd=${rd%/}
    fp=$(basename "$rd")
    [ -f "$rd/manifest.json" ] || continue
    commit=$(stat -c %.9Y "$rd/manifest.json")
    end=$(find "$rd/out" -printf '%T@\n' | sort -g | tail -1)
    sb=$(compgen -G "$runs/slurm/*.${fp:0:12}.sbatch" | head -1 || true)
    if [ -n "$sb" ]; then
      stem=${sb%.sbatch}
      submit=$(stat -c %.9Y "$sb")
      start=$(stat -c %.9W "$stem.err")
      end=$(printf '%s\n%s\n' "$end" "$(stat -c %.9Y "$stem.out")" | sort -g | tail -1)
      echo "$submit $start $end $commit"
    else
      echo "- - $end $commit"
    fi
  done >"$1.lat"
  if [ "$(awk '$1 != "-"' "$1.lat" | wc -l)" -gt 0 ]; then
    printf '%s %s %s\n' "$(awk '$1 != "-" { print $2 - $1 }' "$1.lat" | median)" \
      "$(awk '$1 != "-" { print $3 - $2 }' "$1.lat" | median)" \
      "$(awk '{ print $4 - $3 }' "$1.lat" | median)"
  else
    printf -- '- - %s\n' "$(awk '{ print $4 - $3 }' "$1.lat" | median)"
  fi
}

fmt='%-6s %6s %8s %8s %10s %6s %6s %7s %7s %7s  %s\n'
failed=0
summary=""
for j in $JOBS; do
  jargs=()
  [ "$j" = default ] || jargs=(-j "$j")
  echo
  echo "== -j $j   ($ROUNDS rounds; profile $PROFILE)"
  # shellcheck disable=SC2059
  printf "$fmt" round stages local_s slurm_s ovh/stage wait run commit lcommit noop_s checks
  rows=()
  for r in $(seq "$ROUNDS"); do
    loc=$WORK/j$j-r$r-local
    slu=$WORK/j$j-r$r-slurm
    cp -r "$WORK/template" "$loc"
    cp -r "$WORK/template" "$slu"
    # Alternate which executor goes first, so a drift of the machine's load favours neither.
    if [ $((r % 2)) = 1 ]; then
      tl=$(run "$loc" "$loc.log" "${jargs[@]}")
      ts=$(run "$slu" "$slu.log" --executor slurm "${jargs[@]}")
    else
      ts=$(run "$slu" "$slu.log" --executor slurm "${jargs[@]}")
      tl=$(run "$loc" "$loc.log" "${jargs[@]}")
    fi
    cp "$slu/pipeline.lock" "$slu.lock"
    tn=$(run "$slu" "$slu.noop.log" --executor slurm "${jargs[@]}")
    nl=$(ran "$loc.log")
    ns=$(ran "$slu.log")
    submitted=$(grep -c ': slurm job [0-9]*, logs ' "$slu.log" || true)
    checks=ok
    [ -n "$nl" ] && [ "$nl" = "$ns" ] && [ "$submitted" = "$ns" ] ||
      checks="stages differ (local $nl, slurm $ns, jobs $submitted)"
    diff -r -x .runs "$loc/results" "$slu/results" >"$slu.diff" 2>&1 ||
      checks="results/ differ (see $slu.diff)"
    cmp -s "$loc/pipeline.lock" "$slu/pipeline.lock" || checks="pipeline.lock differs"
    if [ "$(ran "$slu.noop.log")" != 0 ] || grep -q ': slurm job ' "$slu.noop.log" ||
      ! cmp -s "$slu.lock" "$slu/pipeline.lock"; then
      checks="second slurm run was not a no-op"
    fi
    [ "$checks" = ok ] || { failed=1; KEEP=1; }
    read -r lw lr ld < <(latencies "$slu")
    read -r _ _ lc < <(latencies "$loc")
    ovh=$(awk -v s="$ts" -v l="$tl" -v n="$ns" 'BEGIN { printf "%.3f", n ? (s - l) / n : 0 }')
    # shellcheck disable=SC2059
    printf "$fmt" "$r" "$ns" "$tl" "$ts" "$ovh" "$lw" "$lr" "$ld" "$lc" "$tn" "$checks"
    rows+=("$ns $tl $ts $ovh $lw $lr $ld $lc $tn")
    [ "$KEEP" = 1 ] || rm -rf "$loc" "$slu"
  done
  med=$(printf '%s\n' "${rows[@]}" | awk '
    { for (c = 1; c <= NF; c++) v[c, NR] = $c; nf = NF }
    END {
      for (c = 1; c <= nf; c++) {
        for (i = 1; i <= NR; i++) a[i] = v[c, i]
        for (i = 2; i <= NR; i++) { t = a[i]; for (k = i - 1; k >= 1 && a[k] > t; k--) a[k + 1] = a[k]; a[k + 1] = t }
        m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%s%s", (c > 1 ? " " : ""), m
      }
      print ""
    }')
  # shellcheck disable=SC2059,SC2086
  printf "$fmt" median $med ""
  summary+="$(printf '%-8s %s' "-j $j" "$med")"$'\n'
done

echo
echo "== medians: -j stages local_s slurm_s ovh/stage wait run commit lcommit noop_s"
printf '%s' "$summary"
if [ "$failed" = 1 ]; then
  say "some checks FAILED; the projects are kept in $WORK"
  exit 1
fi
