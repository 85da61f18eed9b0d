#!/usr/bin/env bash
# Mutation testing with mutmut (not part of CI: minutes per file, not seconds).
#
#   tools/mutation.sh                      the focus files, one at a time
#   tools/mutation.sh node/_router.py      one file (of actors/, node/, brains/, bus/, protocol/)
#
# Run it from an activated venv with both extras: pip install -e ".[dev,mutation]".
# Configuration: [tool.mutmut] in pyproject.toml. mutmut copies the
# code into mutants/ (git-ignored), runs the whole suite once to learn which tests reach
# which function, and then runs, for each mutant, only the tests that reach its function
# (-x: the first failure kills it), one mutant at a time: the tests start real
# nats-servers, and the machine has two cores. Results are kept in mutants/: a second
# run only re-tests what changed; `rm -rf mutants` starts over.
#
# Time on a 2-core machine (tests start real servers, so mostly waiting; measured
# 2026-12-01 with a second run beside it): the first run spends ~3 min (the whole
# suite, once) learning which tests reach what; then node/_router.py (200 mutants)
# ~18 min, _announcer.py (15) ~3 min, _inbox.py (~500) over an hour,
# _directory_service.py (279) ~55 min, _directory.py (~500) ~55 min. A mutant that
# survives costs the whole run of its tests. To re-test only some mutants, name them:
# mutmut run --max-children 1 'volta.actors._inbox.xǁInboxǁ_fail__mutmut_*' ...
#
# Output per file: the counts, then each mutant that lived as file:line: old -> new.
# `mutmut show NAME` prints a mutant's diff; `mutmut apply NAME` writes it into the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mutmut >/dev/null; then
    echo 'tools/mutation.sh: no mutmut here: pip install -e ".[dev,mutation]"' >&2
    exit 2
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(node/_router.py actors/_announcer.py actors/_unit.py actors/_inbox.py
           actors/_capabilities.py node/_directory_service.py node/_directory.py)
fi

mkdir -p mutants
for file in "${files[@]}"; do
    case "$file" in
        actors/*.py | node/*.py | brains/*.py | bus/*.py | protocol/*.py) ;;
        *) echo "tools/mutation.sh: $file: only files of actors/, node/, brains/, bus/ and protocol/ are configured" >&2
           exit 2 ;;
    esac
    module="volta.${file%.py}"
    module="${module//\//.}"
    echo "== $file ($module)"
    start=$SECONDS
    # The progress spinner goes to a log; the counts and survivors are printed below.
    mutmut run --max-children 1 "$module.*" > "mutants/run-${module}.log" 2>&1 || {
        tail -n 40 "mutants/run-${module}.log" >&2
        exit 1
    }
    echo "   mutmut run took $((SECONDS - start)) s (log: mutants/run-${module}.log)"
    python tools/mutation_report.py "$file"
done
