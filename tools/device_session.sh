#!/usr/bin/env bash
# One call on a lent GPU machine (the `device` tool; see /work/.library/device/README.md):
# train the default prior there for MINUTES, export it, check it against the embedded prior on
# the validation crops (DPS only), then run the evaluation protocol (tools/evaluate.py: 4
# photographs x 3 seeds x 6 tasks, at 100, then 50, then 250 steps) and phase retrieval as best
# of 4 restarts, on that GPU through Vulkan with the equireg binary built here, using the new
# prior via --weights.
#
# The call has a hard limit (590 s), so every stage after training runs under a deadline
# (BUDGET seconds from the start) and writes into $OUT as it finishes: each step count's table
# (results-<K>.md), and after every stage eval-runs.tar.gz with the metrics.json of every run
# made so far, so a stage cut short still returns its finished runs (tabulate them here with
# `tools/evaluate.py --no-run` over the seeds that finished).
#
# Prepared without a device (commit b4b8e6c); rehearsed end to end on the CPU (commit 383ad04,
# which found and fixed: the archive failed for an absolute $OUT, as the device's is; MINUTES
# from the environment was ignored) with
#   DEVICE=cpu PY=/path/to/venv-with-torch/bin/python MINUTES=0.2 STEPS_LIST="3 50" SEEDS=0 \
#   VAL_STEPS=3 TASKS=sr4,phase-retrieval BUDGET=150 OUT=/tmp/device-rehearsal \
#   bash tools/device_session.sh
# (the 50-step stage is cut by the deadline there, on purpose: its finished run is archived and
# the last stage skipped); never yet run on a GPU. It needs, here, once:
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
#   cargo build --release
#   python tools/make_validation_images.py     # build/validation (needs scikit-learn, here)
# and then the call (15 minutes of device time per session, the machine's start included):
#   run(command="bash tools/device_session.sh 5", timeout_s=590,
#       carry=[".gl", "target/release/equireg", "build/validation"])
# $OUT receives gpu.txt, train.log, prior.tar (weights, config, check.safetensors, training.json,
# loss curve: what assets/models/prior holds), validation-{embedded,gpu}.md, eval.log,
# results-{100,50,250}.md, results-pr-best-of-4.md, eval-runs.tar.gz and stages.txt (what each
# stage did and when).
set -uo pipefail
MINUTES=${1:-${MINUTES:-5}}
OUT=${OUT:-build/device-out}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
BUDGET=${BUDGET:-570}          # seconds from the start after which no stage may still run
STEPS_LIST=${STEPS_LIST:-"100 50 250"}
SEEDS=${SEEDS:-0,1,2}
VAL_STEPS=${VAL_STEPS:-100}
TASKS=${TASKS:-sr4,gaussian-deblur,motion-deblur,box-inpaint,random-inpaint,phase-retrieval}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

log() { echo "[$SECONDS s] $*" | tee -a "$OUT/stages.txt"; }

# Runs "$@" under the time left before BUDGET (minus a margin for archiving); skips it when too
# little is left. Returns the command's status (124 when the deadline cut it).
staged() {
    local name=$1
    shift
    local left=$((BUDGET - SECONDS - 15))
    if [ "$left" -lt 20 ]; then
        log "skipped $name: ${left} s left"
        return 1
    fi
    log "start $name (deadline in ${left} s)"
    timeout "$left" "$@"
    local rc=$?
    log "end $name: status $rc"
    return $rc
}

# The metrics of every evaluation run so far (small: JSON only), for tabulating here.
archive_runs() {
    [ -d build/eval-gpu ] || return 0
    local dest
    dest="$(cd "$OUT" && pwd)/eval-runs.tar.gz"
    (cd build && find eval-gpu -name metrics.json -print0 | tar --null -czf "$dest" -T -)
}

for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$ICD" ] && export VK_DRIVER_FILES="$ICD"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; ./target/release/equireg devices; } \
    > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

log "start training: $MINUTES minutes on $DEVICE"
"$PY" tools/train_prior.py --device "$DEVICE" --batch 64 --minutes "$MINUTES" \
    --work build/prior-gpu --out build/prior-gpu/export > "$OUT/train.log" 2>&1
log "end training: status $?"
tail -n 5 "$OUT/train.log"
tar -C build/prior-gpu -cf "$OUT/prior.tar" export || exit 1

GPU_PRIOR=(--weights build/prior-gpu/export/weights.safetensors --config build/prior-gpu/export/config.json)
VAL=(--images build/validation --tasks "$TASKS" --dps-only --steps "$VAL_STEPS" --seeds 0)
staged validation-embedded "$PY" tools/evaluate.py "${VAL[@]}" --out build/val-gpu/embedded \
    --table "$OUT/validation-embedded.md" > "$OUT/validation.log" 2>&1
# The shipping rule: the paired DPS gain over the embedded prior (last column, its mean over the tasks) > 0.
staged validation-gpu "$PY" tools/evaluate.py "${VAL[@]}" "${GPU_PRIOR[@]}" --out build/val-gpu/gpu \
    --paired-against build/val-gpu/embedded \
    --table "$OUT/validation-gpu.md" >> "$OUT/validation.log" 2>&1
tail -n 20 "$OUT/validation.log"

for K in $STEPS_LIST; do
    staged "eval-$K" "$PY" tools/evaluate.py "${GPU_PRIOR[@]}" --tasks "$TASKS" --steps "$K" \
        --seeds "$SEEDS" --out build/eval-gpu --table "$OUT/results-$K.md" >> "$OUT/eval.log" 2>&1
    archive_runs
    tail -n 12 "$OUT/eval.log"
done
case ",$TASKS," in
*,phase-retrieval,*)
    staged pr-best-of-4 "$PY" tools/evaluate.py "${GPU_PRIOR[@]}" --tasks phase-retrieval \
        --task-restarts phase-retrieval=4 --steps "${STEPS_LIST%% *}" --seeds "$SEEDS" \
        --out build/eval-gpu --table "$OUT/results-pr-best-of-4.md" >> "$OUT/eval.log" 2>&1
    archive_runs
    ;;
esac
log "done"
