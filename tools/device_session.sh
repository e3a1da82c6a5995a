#!/usr/bin/env bash
# One call on a lent GPU machine (the `device` tool; see /work/.library/device/README.md):
# train the default prior there for MINUTES, export it, check it against the embedded prior on
# the validation crops (DPS only, 100 steps), then run the evaluation protocol (tools/evaluate.py:
# 4 photographs x 3 seeds x 50/100/250 steps x 6 tasks) and phase retrieval as best of 4 restarts
# on that GPU through Vulkan with the equireg binary built here, using the new prior via --weights.
# Every stage writes into $OUT as it finishes, so a run cut short still returns what it did.
#
# Prepared without a device (session 4); not yet run on one. It needs, here, once:
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
#   cargo build --release
#   python tools/make_validation_images.py     # build/validation (needs scikit-learn, here)
# and then the call (15 minutes of device time per session, the machine's start included):
#   run(command="bash tools/device_session.sh 6", timeout_s=590,
#       carry=[".gl", "target/release/equireg", "build/validation"])
# $OUT receives gpu.txt, train.log, prior.tar (weights, config, check.safetensors, training.json,
# loss curve: what assets/models/prior holds), validation-{embedded,gpu}.md, eval.log,
# results.md and results-pr-best-of-4.md.
set -uo pipefail
MINUTES=${1:-6}
OUT=${OUT:-build/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$ICD" ] && export VK_DRIVER_FILES="$ICD"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; ./target/release/equireg devices; } \
    > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

python3 tools/train_prior.py --device cuda --batch 64 --minutes "$MINUTES" \
    --work build/prior-gpu --out build/prior-gpu/export > "$OUT/train.log" 2>&1
tail -n 5 "$OUT/train.log"
tar -C build/prior-gpu -cf "$OUT/prior.tar" export || exit 1

GPU_PRIOR=(--weights build/prior-gpu/export/weights.safetensors --config build/prior-gpu/export/config.json)
VAL=(--images build/validation --dps-only --steps 100 --seeds 0)
python3 tools/evaluate.py "${VAL[@]}" --out build/val-gpu/embedded --table "$OUT/validation-embedded.md" \
    > "$OUT/validation.log" 2>&1
# The shipping rule: the paired DPS gain over the embedded prior (last column, its mean over the tasks) > 0.
python3 tools/evaluate.py "${VAL[@]}" "${GPU_PRIOR[@]}" --out build/val-gpu/gpu \
    --paired-against build/val-gpu/embedded \
    --table "$OUT/validation-gpu.md" >> "$OUT/validation.log" 2>&1
tail -n 20 "$OUT/validation.log"

python3 tools/evaluate.py "${GPU_PRIOR[@]}" --out build/eval-gpu --table "$OUT/results.md" \
    > "$OUT/eval.log" 2>&1
tail -n 30 "$OUT/eval.log"
python3 tools/evaluate.py "${GPU_PRIOR[@]}" --tasks phase-retrieval --task-restarts phase-retrieval=4 \
    --out build/eval-gpu --table "$OUT/results-pr-best-of-4.md" >> "$OUT/eval.log" 2>&1
tail -n 8 "$OUT/eval.log"
