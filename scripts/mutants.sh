#!/usr/bin/env bash
# Mutation check: applies each source mutation of scripts/mutants.tsv, one at a time, to a scratch
# copy of this working tree, rebuilds incrementally (own build dir, shared ccache), runs the test
# suites the mutant names, and reports which mutants survive (no test failed). A surviving mutant
# is a wrong program the tests accept: add a test that fails on it.
#
#   bash scripts/mutants.sh                 all mutants; writes bench/results/mutants.md
#   bash scripts/mutants.sh NAME [NAME...]  only these (report not written)
#   bash scripts/mutants.sh --check         only check that every snippet still matches
#
# Env: MUTANTS_DIR (scratch, default build/mutants), JOBS (2), MUTANT_TIMEOUT (s per suite, 600),
# MUTANTS_REPORT (default bench/results/mutants.md). Use ccache with CCACHE_BASEDIR above the
# checkout (as scripts/test.sh does) so that the scratch build reuses the checkout's objects.
# Exit status: 0 all killed; 1 some survived; 2 the list is stale or the baseline fails.
# scripts/test.sh (CI) runs it with a 10-minute limit; a full run took ~5 minutes (see the report).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LIST=$REPO/scripts/mutants.tsv
SCRATCH=${MUTANTS_DIR:-$REPO/build/mutants}
TREE=$SCRATCH/tree
BUILD=$TREE/build/cpu
JOBS=${JOBS:-2}
TIMEOUT=${MUTANT_TIMEOUT:-600}
REPORT=${MUTANTS_REPORT:-$REPO/bench/results/mutants.md}
die() { echo "mutants: $*" >&2; exit 2; }

mode=run
only=()
for a in "$@"; do
  case $a in
    --check) mode=check ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) die "unknown option '$a' (see --help)" ;;
    *) only+=("$a") ;;
  esac
done

# ---- the list: name, file, original, replacement, tests (tab-separated) ----------------------
names=(); files=(); origs=(); repls=(); tests=()
while IFS=$'\t' read -r name file orig repl tst rest; do
  [[ -z $name || $name == \#* ]] && continue
  [[ -n $tst && -z ${rest:-} ]] || die "$LIST: mutant '$name' needs exactly 5 tab-separated fields"
  names+=("$name"); files+=("$file"); origs+=("$orig"); repls+=("$repl"); tests+=("$tst")
done <"$LIST"
(( ${#names[@]} > 0 )) || die "$LIST holds no mutants"
dups=$(printf '%s\n' "${names[@]}" | sort | uniq -d)
[[ -z $dups ]] || die "duplicate mutant names in $LIST: $dups"
for n in "${only[@]}"; do
  printf '%s\n' "${names[@]}" | grep -qxF -- "$n" || die "no mutant named '$n' in $LIST"
done

# Exact, single-occurrence replacement (python: no escaping of the snippet). apply FILE ORIG REPL
apply() {
  python3 - "$@" <<'PY'
import sys
path, orig, repl = sys.argv[1:4]
src = open(path, encoding="utf-8").read()
n = src.count(orig)
if n != 1:
    sys.exit(f"{'not found' if n == 0 else f'found {n} times'}")
open(path, "w", encoding="utf-8").write(src.replace(orig, repl))
PY
}
count_in() { python3 -c 'import sys; print(open(sys.argv[1], encoding="utf-8").read().count(sys.argv[2]))' "$1" "$2"; }

stale=0
for i in "${!names[@]}"; do
  f=$REPO/${files[$i]}
  if [[ ! -f $f ]]; then echo "file not found: mutant ${names[$i]} is stale (${files[$i]})" >&2; stale=1; continue; fi
  c=$(count_in "$f" "${origs[$i]}")
  if [[ $c == 0 ]]; then echo "snippet not found: mutant ${names[$i]} is stale (${files[$i]})" >&2; stale=1
  elif [[ $c != 1 ]]; then echo "snippet found $c times: mutant ${names[$i]} is ambiguous (${files[$i]})" >&2; stale=1; fi
done
(( stale == 0 )) || die "update $LIST to the current sources"
echo "mutants: ${#names[@]} in the list, every snippet matches once"
[[ $mode == check ]] && exit 0

# ---- the scratch tree: this working tree's tracked and unignored files ------------------------
# Only files whose content differs are copied, with a new modification time, so unchanged ones do
# not rebuild. Never set a time back: a file restored after a mutant (or left mutated by an
# interrupted run) must look newer than the objects built from the mutant. Files gone from the
# working tree are removed so that CMake's globs see the same sources.
t_start=$(date +%s)
mkdir -p "$TREE"
ln -sfn "$REPO/../shared" "$SCRATCH/shared"  # serve_e2e.sh reads <source>/../shared
ln -sfn "$REPO/.deps" "$TREE/.deps"
(cd "$REPO" && git ls-files -z -co --exclude-standard) >"$SCRATCH/files"
python3 - "$REPO" "$TREE" "$SCRATCH/files" <<'PY'
import os, shutil, sys
repo, tree, lst = sys.argv[1:4]
keep = set(open(lst, "rb").read().decode().split("\0")) - {""}
for rel in keep:
    src, dst = os.path.join(repo, rel), os.path.join(tree, rel)
    if not os.path.lexists(src):
        continue  # deleted but not yet staged
    if os.path.islink(src):
        if not os.path.islink(dst) or os.readlink(dst) != os.readlink(src):
            if os.path.lexists(dst): os.remove(dst)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
        continue
    with open(src, "rb") as f: data = f.read()
    if os.path.isfile(dst) and not os.path.islink(dst):
        with open(dst, "rb") as f:
            if f.read() == data: continue
    elif os.path.lexists(dst):
        os.remove(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f: f.write(data)
    shutil.copymode(src, dst)
for root, dirs, fs in os.walk(tree):
    rel = os.path.relpath(root, tree)
    if rel == "build" or rel.startswith("build" + os.sep) or rel.startswith(".deps"):
        dirs[:] = []
        continue
    for f in fs:
        p = os.path.normpath(os.path.join(rel, f))
        if p not in keep and not os.path.islink(os.path.join(root, f)):
            os.remove(os.path.join(root, f))
PY

export CMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$REPO")}
# The tests get the compile definitions of the checkout's own cpu build (they read models/ and
# ../shared there and write their few scratch files under build/cpu), so every test object comes
# from ccache instead of a second compile of all suites. Do not run the same suites there meanwhile.
mkdir -p "$REPO/build/cpu"
cmake -S "$TREE" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNESTEDFP_CUDA=OFF \
  -DNESTEDFP_TEST_SOURCE_DIR="$REPO" -DNESTEDFP_TEST_BINARY_DIR="$REPO/build/cpu" >"$SCRATCH/configure.log" 2>&1 ||
  die "configure failed: $SCRATCH/configure.log"

selected=()
for i in "${!names[@]}"; do
  if (( ${#only[@]} == 0 )) || printf '%s\n' "${only[@]}" | grep -qxF -- "${names[$i]}"; then selected+=("$i"); fi
done
# build LOG TARGET...
build() { local log=$1; shift; cmake --build "$BUILD" -j "$JOBS" --target "$@" >"$log" 2>&1; }
# The build targets of a list of test specs.
targets_of() {
  local t
  for t in "$@"; do if [[ $t == ctest:* ]]; then echo all; else echo "${t%%:*}"; fi; done | sort -u
}
# run_tests SPEC... -> 0 when every suite passes
run_tests() {
  local t bin filter
  for t in "$@"; do
    if [[ $t == ctest:* ]]; then
      timeout "$TIMEOUT" ctest --test-dir "$BUILD" -L "${t#ctest:}" --output-on-failure >>"$LOG" 2>&1 || return 1
    else
      bin=${t%%:*}; filter='*'; [[ $t == *:* ]] && filter=${t#*:}
      timeout "$TIMEOUT" "$BUILD/$bin" --gtest_filter="$filter" --gtest_fail_fast --gtest_brief=1 >>"$LOG" 2>&1 || return 1
    fi
  done
}

all_specs=()
for i in "${selected[@]}"; do all_specs+=(${tests[$i]}); done
mapfile -t all_specs < <(printf '%s\n' "${all_specs[@]}" | sort -u)
mapfile -t targets < <(targets_of "${all_specs[@]}")
echo "mutants: baseline build of ${targets[*]} in $BUILD"
build "$SCRATCH/baseline-build.log" "${targets[@]}" || die "baseline build failed: $SCRATCH/baseline-build.log"
LOG=$SCRATCH/baseline-tests.log; : >"$LOG"
run_tests "${all_specs[@]}" || die "the unmutated tree fails its tests ($LOG): fix them first"
echo "mutants: baseline passes (${all_specs[*]})"

# ---- each mutant ------------------------------------------------------------------------------
rows=(); survived=0; broken=0
printf '%-36s %-9s %6s\n' mutant result seconds
for i in "${selected[@]}"; do
  n=${names[$i]}; f=$TREE/${files[$i]}
  LOG=$SCRATCH/$n.log; : >"$LOG"
  cp -p "$f" "$SCRATCH/original"
  t0=$(date +%s)
  apply "$f" "${origs[$i]}" "${repls[$i]}" || die "snippet not found in the scratch copy: mutant $n is stale"
  mapfile -t mt < <(targets_of ${tests[$i]})
  if ! build "$LOG" "${mt[@]}"; then
    result=no-build; broken=$((broken + 1))  # a mutant must compile: fix its replacement
  elif run_tests ${tests[$i]}; then
    result=SURVIVED; survived=$((survived + 1))
  else
    result=killed
  fi
  cp "$SCRATCH/original" "$f"  # a new mtime: the next build restores the object (ccache hit)
  secs=$(( $(date +%s) - t0 ))
  printf '%-36s %-9s %6d\n' "$n" "$result" "$secs"
  rows+=("| $n | \`${files[$i]}\` | $result | $secs | \`${tests[$i]}\` |")
done
total=$(( $(date +%s) - t_start ))
echo "mutants: ${#selected[@]} run, $survived survived, $broken did not build, ${total}s"

if (( ${#only[@]} == 0 )); then
  {
    echo "# Mutation check (\`bash scripts/mutants.sh\`)"
    echo
    echo "Commit $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- . ':!bench/results/mutants.md' || echo ' + uncommitted changes'),"
    echo "$(date -u +%Y-%m-%d), $(nproc) CPU cores (shared), ${total} s in all, including the baseline build and run."
    echo "${#selected[@]} mutants: $(( ${#selected[@]} - survived - broken )) killed, $survived survived, $broken did not build."
    echo "Each row: one mutation of \`scripts/mutants.tsv\` applied alone; seconds = rebuild + tests."
    echo
    echo "| mutant | file | result | s | tests |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } >"$REPORT"
  echo "mutants: report in ${REPORT#$REPO/}"
fi
(( broken == 0 )) || exit 2
(( survived == 0 )) || exit 1
