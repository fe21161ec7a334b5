#!/usr/bin/env bash
# One script for a single-GPU machine (under five minutes without --train):
#   bash bench/gpu_check.sh            teacher frames/s and robustness-view cost on the GPU + the default tour
#                                      with the teacher on the GPU
#   bash bench/gpu_check.sh --train    first re-make the shipped teacher and student weights on the GPU
# Uses the python that has torch with CUDA (PY, default python3); Ray is not needed (in-process runner).
# Work goes to $WORK (default runs/gpu_check); where $OUT is set, the weights, logs, summary and
# report are copied there too. The last line printed is one JSON object.
# DEVICE=cpu with small TEACHER_ARGS/STUDENT_ARGS/RUN_ARGS dry-runs the script on a machine without a GPU.
# e.g. TEACHER_ARGS="--steps 2 --set teacher_training.worlds=1 --set teacher_training.frames_per_world=4 --set teacher_training.eval_frames=4"
#      STUDENT_ARGS="--steps 2 --set student_training.frames=4 --set student_training.worlds=1" RUN_ARGS="--frames 30"
# (the offline-training commands live in stream/training.py; their settings are the sections above).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-runs/gpu_check}
rm -rf "$WORK/tour"; mkdir -p "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import torch, os; d=os.environ.get('DEVICE','cuda'); assert d=='cpu' or torch.cuda.is_available(), 'no CUDA GPU'; print('device:', torch.cuda.get_device_name() if d!='cpu' else 'cpu', '· torch', torch.__version__, '· cores', os.cpu_count())"
if [[ "${1:-}" == "--train" ]]; then
  t0=$(date +%s)
  $PY -m stream.cli -v train-teacher --device "$DEVICE" --out "$WORK/sim_teacher.safetensors" ${TEACHER_ARGS:-} 2>&1 | grep -v -E "DEBUG|numba" | tee "$WORK/train_teacher.log"
  cp "$WORK/sim_teacher.safetensors" perception/weights/sim_teacher.safetensors
  [[ -n "${OUT:-}" ]] && cp "$WORK/sim_teacher.safetensors" "$WORK/train_teacher.log" "$OUT"/
  t1=$(date +%s)
  $PY -m stream.cli -v train-student --device "$DEVICE" --out "$WORK/student_clear_oldtown.safetensors" ${STUDENT_ARGS:-} 2>&1 | grep -v -E "DEBUG|numba" | tee "$WORK/train_student.log"
  cp "$WORK/student_clear_oldtown.safetensors" perception/weights/student_clear_oldtown.safetensors
  [[ -n "${OUT:-}" ]] && cp "$WORK/student_clear_oldtown.safetensors" "$WORK/train_student.log" "$OUT"/
  echo "training: teacher $(( t1 - t0 )) s, student $(( $(date +%s) - t1 )) s"
fi
$PY bench/teacher_speed.py --device "$DEVICE" | tee "$WORK/teacher_speed.txt"
$PY bench/view_speed.py --device "$DEVICE" | tee "$WORK/view_speed.txt"
$PY -m stream.cli run --no-progress --set teacher.device="$DEVICE" --out "$WORK/tour" ${RUN_ARGS:-} | tee "$WORK/tour.txt"
if [[ -n "${OUT:-}" ]]; then
  cp "$WORK/tour/summary.json" "$WORK/tour/report.png" "$WORK/tour.txt" "$WORK/teacher_speed.txt" "$WORK/view_speed.txt" "$OUT"/
fi
$PY - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
speed = json.loads(open(f"{work}/teacher_speed.txt").read().strip().splitlines()[-1])
views = json.loads(open(f"{work}/view_speed.txt").read().strip().splitlines()[-1])
s = json.load(open(f"{work}/tour/summary.json"))
print(json.dumps({"gpu": speed["gpu"], "teacher_device": s["teacher_device"], "teacher_fps_batch1": speed["teacher_fps_batch1"],
                  "teacher_fps_batch16": speed["teacher_fps_batch16"], "end_to_end_fps": s["fps"], "frames": s["frames"],
                  "wall_s": s["wall_s"], "student_miou": s["student_miou"], "teacher_miou": s["teacher_miou"],
                  "teacher_rate": s["teacher_rate"],
                  "view_ms_per_frame": {k: v["view_ms"] for k, v in views.items() if isinstance(v, dict)}}))
PY
