"""The best validated weights of a retrain (`train_config.eval_every`): `workdir/best/`, a
checkpoint of the model alone with `best.json` (step, mIoU, split), apart from the rotated
checkpoints, replaced whole or not at all.
"""
from __future__ import annotations

import os
import shutil

import tensorflow as tf

from official.autodeeplab import files
from official.autodeeplab.training import run_description

BEST_DIR = 'best'
BEST_FILE = 'best.json'


def read_best(workdir: str) -> dict | None:
  """`workdir/best/best.json` (step, miou, split), or None before the first validation."""
  path = os.path.join(workdir, BEST_DIR, BEST_FILE)
  if not os.path.exists(path):
    return None
  return run_description.read_json(os.path.dirname(path), BEST_FILE)


def save_best(model, workdir: str, record: dict) -> str:
  """Replaces `workdir/best/` with the model's weights (`best/ckpt-1`, a checkpoint with its
  state file) and `best.json` = record, built under a temporary name first: a crash leaves the
  previous best whole. Returns the checkpoint prefix."""
  target = os.path.join(workdir, BEST_DIR)
  tmp, old = f'{target}.tmp-{os.getpid()}', f'{target}.old-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  prefix = tf.train.Checkpoint(model=model).save(os.path.join(tmp, 'ckpt'))
  files.write_json(os.path.join(tmp, BEST_FILE), record)
  if os.path.exists(target):
    os.rename(target, old)
  os.rename(tmp, target)
  shutil.rmtree(old, ignore_errors=True)
  return os.path.join(target, os.path.basename(prefix))


def best_checkpoint(workdir: str) -> str | None:
  """The prefix of the best weights, or None when the workdir has none."""
  if read_best(workdir) is None:
    return None
  return tf.train.latest_checkpoint(os.path.join(workdir, BEST_DIR)) or os.path.join(
      workdir, BEST_DIR, 'ckpt-1')
