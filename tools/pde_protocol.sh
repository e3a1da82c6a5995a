#!/usr/bin/env bash
# The Darcy evaluation protocol of `equireg pde`, fixed before any of its results were seen.
#
#   bash tools/pde_protocol.sh tune      # choose zeta per side on the validation cases
#   bash tools/pde_protocol.sh test ZETA_A ZETA_U [CASES]
#
# tune: DPS only, the first 4 validation cases (assets/pde/darcy_val.npy), 123 points, 100 steps,
#   seed 0, zeta in {0.3, 1, 3} for each side; the rule: the zeta with the lowest mean relative
#   L2 of u (forward, observe a) or the lowest mean error rate of a (inverse, observe u).
# test: the first CASES (default 8) held-out test cases (assets/pde/darcy_test.npy), 123 points
#   (3 %), 100 steps, seed 0, DPS and DPS+EquiReg (--compare: D4, the prior's own denoiser at
#   t = 100, alpha 0.01, the image defaults; no alpha sweep was run) from the same points and
#   seed; then the classical baselines on the very same masks and the paired table.
# Outputs under build/pde/protocol/ (the tables are copied into docs/RESULTS.md by hand).
# The case counts (4 and 8) are what the CPU time available allowed when the protocol was fixed
# (commit 98c5c4a; two CPU cores with the software Vulkan driver, about 0.25 s per case and
# step); with a GPU, pass more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-build/venv/bin/python}
BIN=target/release/equireg
OUT=build/pde/protocol
mkdir -p "$OUT"
cargo build --release -q -p equireg-cli
case "${1:-}" in
tune)
    "$PY" -c "import numpy as np; np.save('$OUT/val_cases.npy', np.load('assets/pde/darcy_val.npy')[:4])"
    for side in a u; do
        for z in 0.3 1 3; do
            d="$OUT/tune-$side-z$z"
            rm -rf "$d"
            "$BIN" pde --problem darcy --observe "$side" --points 123 --steps 100 --seed 0 \
                --zeta "$z" --input "$OUT/val_cases.npy" --out "$d" --batch 4 2>&1 | grep -v XDG | tail -2
        done
    done
    ;;
test)
    za=$2
    zu=$3
    n=${4:-8}
    "$PY" -c "import numpy as np; np.save('$OUT/test_cases.npy', np.load('assets/pde/darcy_test.npy')[:$n])"
    for side in a u; do
        z=$za
        [ "$side" = u ] && z=$zu
        d="$OUT/test-$side"
        rm -rf "$d"
        "$BIN" pde --problem darcy --observe "$side" --points 123 --steps 100 --seed 0 --zeta "$z" \
            --compare --input "$OUT/test_cases.npy" --out "$d" --batch 8 2>&1 | grep -v XDG | tail -3
        "$PY" tools/pde_baselines.py --cases "$OUT/test_cases.npy" --observe "$side" --run "$d" \
            --out "$d/baselines" > "$d/baselines.log" 2>&1
        if [ "$side" = a ]; then
            pairs=(--pair "equireg - dps" --pair "dps - interp_nearest_solve" --pair "dps - lmmse_threshold_solve")
        else
            pairs=(--pair "equireg - dps" --pair "dps - interp_cubic_rule" --pair "dps - lmmse_threshold")
        fi
        "$PY" tools/pde_evaluate.py "$d/metrics.csv" "$d/baselines/metrics.csv" "${pairs[@]}" \
            --out "$d/table.md" | tail -30
    done
    ;;
*)
    echo "usage: $0 tune | test ZETA_A ZETA_U [CASES]" >&2
    exit 2
    ;;
esac
