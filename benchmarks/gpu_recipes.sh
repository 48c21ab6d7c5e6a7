#!/usr/bin/env bash
# The README's recipe and right-for-the-right-reasons tables, re-measured on a lent GPU as result records:
#   scratch -> focused (the recipe) and the focus-only control (the same without the penalty), pneumocam compare of
#   each against scratch, and scripts/gpu_check.py. One prepared script for the device tool:
#
#     bash benchmarks/gpu_recipes.sh DATA OUT [DEVICE]
#
# DATA holds kermany224/ and kermany224-lungmasks/ (../shared/data here); OUT receives the records
# (scratch-gpu.json, focused-gpu.json, control-gpu.json, compare-focused-gpu.json, compare-control-gpu.json,
# gpu-check.json). DEVICE cuda (default) or cpu; SCRATCH_EPOCHS=... shrinks the recipes to try the script here.
set -euo pipefail
DATA=$1; OUT=$2; DEVICE=${3:-cuda}
WORK=${WORK:-/tmp/pneumocam-gpu-recipes}
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
PC=(python3 -m pneumocam)
IMAGES=$DATA/kermany224; MASKS=$DATA/kermany224-lungmasks
COMMON=(--data "$IMAGES" --eval-split heldout --lung-masks "$MASKS" --device "$DEVICE" --precision fp32 --seed 0)
SHRINK=()
if [ -n "${SCRATCH_EPOCHS:-}" ]; then  # a trial on a small machine: fewer films and epochs
  SHRINK=(--max-per-class 40 --trust-images 2 --n-draws 20 --bootstrap 50)
fi
record() {  # record NAME RUN SECONDS NOTE
  python3 benchmarks/run_record.py "$2" --name "$1" --wall-s "$3" --record-dir "$OUT" --note "$4" >/dev/null
}
timed_run() {  # timed_run NAME ARGS...: the run folder on stdout's last line
  local name=$1; shift
  local began=$SECONDS
  "${PC[@]}" run "${COMMON[@]}" "${SHRINK[@]}" --out "$WORK/$name" "$@" > "$WORK/$name.log" 2>&1 || {
    tail -30 "$WORK/$name.log"; return 1; }
  echo "$name: $((SECONDS - began)) s" >&2
  echo "$((SECONDS - began)) $(ls -d "$WORK/$name"/run-*)"
}
NOTE="One run each, seed 0, on a lent GPU (fp32 with PyTorch's default TF32 convolutions); the held-out patients \
(15% of train's patients, never trained or selected on) are the same films in every run."
EPOCHS=()
[ -n "${SCRATCH_EPOCHS:-}" ] && EPOCHS=(--epochs "$SCRATCH_EPOCHS" --size-schedule "64:1,96:$((SCRATCH_EPOCHS - 1))" --image-size 96)
read -r s_wall SCRATCH < <(timed_run scratch --recipe scratch "${EPOCHS[@]}")
record scratch-gpu "$SCRATCH" "$s_wall" "$NOTE"
FEPOCHS=()
[ -n "${SCRATCH_EPOCHS:-}" ] && FEPOCHS=(--epochs 1 --image-size 96)
read -r f_wall FOCUSED < <(timed_run focused --recipe focused --weights "$SCRATCH/train/model.pt" "${FEPOCHS[@]}")
record focused-gpu "$FOCUSED" "$f_wall" "$NOTE"
compare_with_scratch() {  # compare_with_scratch ARM RUN
  "${PC[@]}" compare "$SCRATCH" "$2" --out "$WORK/compare-$1" > "$WORK/compare-$1.log" 2>&1
  cp "$(ls -d "$WORK/compare-$1"/compare-*)/compare.json" "$OUT/compare-$1-gpu.json"
}
compare_with_scratch focused "$FOCUSED"
if [ "$DEVICE" = cuda ]; then  # before the control: the records that matter most come back first
  python3 scripts/gpu_check.py --out "$WORK/check" > "$WORK/check.log" 2>&1 || tail -20 "$WORK/check.log"
  cp "$WORK/check/gpu_check.json" "$OUT/gpu-check.json" || true
fi
read -r c_wall CONTROL < <(timed_run control --recipe focused --weights "$SCRATCH/train/model.pt" \
  --attention-penalty 0 "${FEPOCHS[@]}")
record control-gpu "$CONTROL" "$c_wall" "$NOTE The control is the focused recipe with --attention-penalty 0."
compare_with_scratch control "$CONTROL"
ls -la "$OUT"
