"""The Ray ingest and evaluator actors' code paths load without torch (see stream.actors)."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from learners.records import LearnerOutput
from stream.config import load_config

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import pickle, sys
import stream.actors  # the module every actor process imports
config, outputs = pickle.loads(sys.stdin.buffer.read())  # what the driver sends them
from stream.evaluation import FrameEvaluator
from stream.ingest import Ingest
ingest = Ingest(config)
pack, truths, manifest = ingest.read(1)
ingest.close()
evaluator = FrameEvaluator(config.evaluator, config.run.label_map)
evaluator.update(truths, outputs)
print(manifest.frames[0].shape, evaluator.summary()["frames"], "torch" in sys.modules)
"""


def test_ingest_and_evaluator_paths_never_import_torch():
    config = load_config(None, ["run.frames=4"])
    labels = np.zeros((128, 256), np.uint8)
    outputs = [LearnerOutput(0, labels, labels)]
    done = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps((config, outputs)), cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["(128,", "256)", "1", "False"]
