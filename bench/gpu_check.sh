#!/usr/bin/env bash
# One script for a single-GPU machine (under five minutes without --train):
#   bash bench/gpu_check.sh            teacher frames/s on the GPU + the default tour with the teacher on the GPU
#   bash bench/gpu_check.sh --train    first re-make the shipped teacher and student weights on the GPU
# Uses the python that has torch with CUDA (PY=python3 by default); Ray is not needed (in-process runner).
# Writes into $OUT (default runs/gpu_check); the last line printed is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print('gpu:', torch.cuda.get_device_name(), 'torch', torch.__version__)"
if [[ "${1:-}" == "--train" ]]; then
  t0=$(date +%s)
  $PY -m stream.cli -v train-teacher --device cuda --out "$OUT/sim_teacher.safetensors" ${TEACHER_ARGS:-} 2>&1 | grep -v DEBUG | tee "$OUT/train_teacher.log"
  cp "$OUT/sim_teacher.safetensors" perception/weights/sim_teacher.safetensors
  $PY -m stream.cli -v train-student --device cuda --out "$OUT/student_clear_oldtown.safetensors" ${STUDENT_ARGS:-} 2>&1 | grep -v DEBUG | tee "$OUT/train_student.log"
  cp "$OUT/student_clear_oldtown.safetensors" perception/weights/student_clear_oldtown.safetensors
  echo "training took $(( $(date +%s) - t0 )) s"
fi
$PY bench/teacher_speed.py --device cuda | tee "$OUT/teacher_speed.txt"
$PY -m stream.cli run --no-progress --set teacher.device=cuda --out "$OUT/tour" ${RUN_ARGS:-} | tee "$OUT/tour.txt"
$PY - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
speed = json.loads(open(f"{out}/teacher_speed.txt").read().strip().splitlines()[-1])
s = json.load(open(f"{out}/tour/summary.json"))
print(json.dumps({"gpu": speed["gpu"], "teacher_fps_batch1": speed["teacher_fps_batch1"], "teacher_fps_batch16": speed["teacher_fps_batch16"],
                  "end_to_end_fps": s["fps"], "frames": s["frames"], "wall_s": s["wall_s"], "student_miou": s["student_miou"],
                  "teacher_miou": s["teacher_miou"], "teacher_rate": s["teacher_rate"], "teacher_device": s["teacher_device"]}))
PY
