"""The Ray ingest and evaluator actors' code paths load without torch (see stream.actors)."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from learners.records import EvalRecord
from stream.config import load_config

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import pickle, sys
import stream.actors  # the module every actor process imports
config, records = pickle.loads(sys.stdin.buffer.read())  # what the driver sends them
from stream.evaluation import FrameEvaluator
from stream.sources import open_source
source = open_source(config.run.source, config)
frame = next(iter(source))
source.close()
evaluator = FrameEvaluator(config.evaluator, config.run.label_map)
evaluator.update(records)
print(frame.shape, evaluator.summary()["frames"], "torch" in sys.modules)
"""


def test_ingest_and_evaluator_paths_never_import_torch():
    config = load_config(None, ["run.frames=4"])
    labels = np.zeros((128, 256), np.uint8)
    records = [EvalRecord(0, "clear", labels, labels, labels)]
    done = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps((config, records)), cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["(128,", "256)", "1", "False"]
