"""What a long run keeps in its workdir besides checkpoints, how it resumes, how it stops.

* `model.json`: what the retrain model is (genotype, filter multiplier, classes, dataset), written
  when a run starts and compared when it resumes, so a workdir is never silently reused for another
  model; evaluation and export rebuild the model from it.
* `restore`: restores the latest checkpoint of a `tf.train.CheckpointManager`, turning
  TensorFlow's shape-mismatch traceback into one line that names the workdir, the variable and
  both shapes.
* `ProgressMeter`: images/s and ETA for the progress line.
* `StopOnSigterm` / `Preempted` (used by `training/loop.py`): a SIGTERM (a preempted VM, `kill`, a cluster scheduler) ends the
  current step, the loop checkpoints and raises `Preempted`; rerunning resumes.
* `worker_workdir`: under MultiWorkerMirroredStrategy only the chief writes to the workdir; the
  other workers save their (required, identical) checkpoints to a directory of their own.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import tensorflow as tf

from official.autodeeplab.errors import Preempted
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.utils import files

MODEL_FILE = 'model.json'
CHECKPOINT_DIR = 'checkpoints'
BEST_DIR = 'best'  # the best validated weights (train_config.eval_every), beside checkpoints/
BEST_FILE = 'best.json'


def model_description(genotype: genotype_lib.Genotype, filter_multiplier: int, num_classes: int,
                      dataset: str | None = None, spec=None) -> dict:
  """What `model.json` holds; `model_size` is S/M/L when F is one of theirs, else null. With the
  dataset's `spec`, its class names (compared on resume), and for a dataset that is not built in
  its whole spec (palette, label map: `spec_file.document`), so export and predict need no
  --dataset."""
  size = {f: name for name, f in sizes.MODEL_SIZES.items()}.get(int(filter_multiplier))
  description = {'genotype': genotype.to_dict(), 'filter_multiplier': int(filter_multiplier),
                 'model_size': size, 'num_classes': int(num_classes), 'dataset': dataset}
  if spec is not None:
    from official.autodeeplab.data import datasets
    from official.autodeeplab.data import spec_file
    description.update({'class_names': list(spec.class_names)} if spec.name in datasets.DATASETS
                       else spec_file.document(spec))
  return description


def write_text(path: str, text: str) -> None:
  """Atomic write, a failure as one line (`utils/files.write_text`)."""
  files.write_text(path, text)


def write_json(path: str, data) -> None:
  write_text(path, json.dumps(data, indent=1) + '\n')


def check_or_write_model(workdir: str, description: dict, write: bool = True) -> None:
  """Writes `workdir/model.json` (unless `write` is False), or checks that the one there
  describes the same model."""
  check_or_write_json(workdir, MODEL_FILE, description, write=write, **MODEL_CHECK)


def check_or_write_json(workdir: str, name: str, description: dict, write: bool = True,
                        what: str = 'configuration', keys=None, read=None,
                        optional=(), updated=()) -> None:
  """Writes `workdir/name` (unless `write` is False), or checks that the one there holds the same
  description: every key, or `keys` (those in `optional` only when both have them);
  `read(workdir)` reads (and validates) the existing one. Keys in `updated` are not compared but
  rewritten (when `write`) with this run's values: what the latest run used (its precision)."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    if not write:
      raise UserInputError(f'{workdir}: no {name}')
    write_json(path, description)
    return
  existing = read(workdir) if read is not None else read_json(workdir, name)
  for key in keys or sorted(set(existing) | set(description)):
    if key in optional and (key not in existing or key not in description):
      continue  # written by a newer version than the file's, or not known to the caller
    if existing.get(key) != description.get(key):
      raise UserInputError(
          f'{workdir}: holds a run of another {what} ({key} {existing.get(key)} in {path}, '
          f'asked for {description.get(key)}); use another --workdir or the same settings')
  changed = {key: description[key] for key in updated
             if key in description and existing.get(key) != description[key]}
  if write and changed:
    write_json(path, {**read_json(workdir, name), **changed})


def read_json(workdir: str, name: str, hint: str = '') -> dict:
  path = os.path.join(workdir, name)
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserInputError(f'{workdir}: no {name}' + (f'; {hint}' if hint else '')) from None
  except ValueError as e:
    raise UserInputError(f'{path}: not valid JSON ({e})') from None


def read_model(workdir: str) -> dict:
  """`workdir/model.json`, validated; its 'genotype' as written, and the parsed `Genotype` under
  'genotype_object' (not compared, not written)."""
  path = os.path.join(workdir, MODEL_FILE)
  try:
    with open(path) as f:
      data = json.load(f)
    data['genotype_object'] = genotype_lib.Genotype.from_dict(data['genotype'],
                                                              f'{path}: genotype')
    int(data['filter_multiplier']), int(data['num_classes'])
  except FileNotFoundError:
    raise UserInputError(f'{workdir}: no {MODEL_FILE}; is it a tools.train workdir?') from None
  except (ValueError, KeyError, TypeError) as e:
    if isinstance(e, UserInputError):
      raise
    raise UserInputError(
        f'{path}: unreadable model description ({type(e).__name__}: {e})') from None
  return data


# How `model.json` is compared when a run resumes (`check_or_write_json`'s keyword arguments).
MODEL_CHECK = {'what': 'model', 'keys': ('genotype', 'filter_multiplier', 'num_classes',
                                         'class_names'),
               'read': read_model, 'optional': ('class_names',),
               'updated': ('precision',)}

_SHAPE_MISMATCH = re.compile(r'incompatible tensor with shape (\(.*?\)) when attempting to '
                             r'restore variable with shape (\(.*?\)) and name (\S+?)\.?(\s|$)')


def restore(checkpoint: tf.train.Checkpoint, path: str | None, workdir: str,
            partial: bool = False, optional: tuple[str, ...] = ()) -> bool:
  """Restores checkpoint `path` (e.g. a CheckpointManager's latest); False if it is None.

  Every object of `checkpoint` must be in the file but its attributes named in `optional` (added
  after older checkpoints were written: those keep their initial values); with `partial`, the
  file may hold more (an optimizer when only the model is restored). A checkpoint of another model (other genotype, size
  or classes) is a one-line UserInputError naming the workdir, the first mismatched variable and
  both shapes; the checkpoint is untouched.
  """
  if not path:
    return False
  held = {name: getattr(checkpoint, name) for name in _absent_objects(path, optional)}
  for name in held:  # not in the file: left out of the matching, then put back
    delattr(checkpoint, name)
  try:
    status = checkpoint.restore(path)
    if partial:
      status.expect_partial()
    status.assert_existing_objects_matched()
  except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
    match = _SHAPE_MISMATCH.search(str(e))
    if match:
      saved, wanted, name = match.group(1), match.group(2), match.group(3)
      detail = f'variable {name} has shape {saved} in the checkpoint, {wanted} in this model'
    else:
      detail = str(e).strip().splitlines()[0][:300]
    raise UserInputError(f'{workdir}: checkpoint {path} does not match this model ({detail}); '
                         'use another --workdir or the settings it was trained with') from None
  except tf.errors.OpError as e:
    raise UserInputError(f'{path}: unreadable checkpoint ({e.message.splitlines()[0]})') from None
  finally:
    for name, value in held.items():
      setattr(checkpoint, name, value)
  return True


def _absent_objects(path: str, names: tuple[str, ...]) -> list[str]:
  """Those of `names` (top-level checkpoint attributes) with no variable in checkpoint `path`."""
  if not names:
    return []
  try:
    keys = [key for key, _ in tf.train.list_variables(path)]
  except (tf.errors.OpError, ValueError):  # the restore itself reports an unreadable file
    return []
  return [name for name in names if not any(key.startswith(name + '/') for key in keys)]


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, seconds = divmod(rest, 60)
  if days:
    return f'{days}d{hours:02d}h'
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{seconds:02d}s'


class ProgressMeter:
  """Step rate between two reports (so the first report, after the traced step, sets the mark),
  as images/s and an ETA."""

  def __init__(self, total_steps: int, images_per_step: int):
    self.total_steps, self.images_per_step = total_steps, images_per_step
    self._last = None  # (step, time) of the previous report
    self.steps_per_s = None

  def report(self, step: int) -> str:
    """' X img/s ETA D' with the rate since the previous report ('' at the first report)."""
    now = time.perf_counter()
    if self._last is not None and step > self._last[0] and now > self._last[1]:
      self.steps_per_s = (step - self._last[0]) / (now - self._last[1])
    self._last = (step, now)
    if self.steps_per_s is None:
      return ''
    eta = format_duration((self.total_steps - step) / self.steps_per_s)
    return f' {self.images_per_s():.2f} img/s ETA {eta}'

  def images_per_s(self) -> float | None:
    return None if self.steps_per_s is None else self.steps_per_s * self.images_per_step


def latest_checkpoint(workdir: str) -> str:
  """The latest readable checkpoint of a training workdir (`checkpoints.latest_readable`: an
  unreadable newest one is reported and skipped); an error naming the workdir if it has none."""
  from official.autodeeplab.training import checkpoints
  path = checkpoints.latest_readable(os.path.join(workdir, CHECKPOINT_DIR))
  if not path:
    raise UserInputError(f'{workdir}: no checkpoint in {CHECKPOINT_DIR}/; train first '
                         '(python -m tools.train --workdir=...)')
  return path


def read_best(workdir: str) -> dict | None:
  """`workdir/best/best.json` (step, miou, split), or None before the first validation."""
  path = os.path.join(workdir, BEST_DIR, BEST_FILE)
  if not os.path.exists(path):
    return None
  return read_json(os.path.dirname(path), BEST_FILE)


def save_best(model, workdir: str, record: dict) -> str:
  """Replaces `workdir/best/` with the model's weights (`best/ckpt-1`, a checkpoint with its
  state file) and `best.json` = record, built under a temporary name first: a crash leaves the
  previous best whole. Returns the checkpoint prefix."""
  import shutil
  target = os.path.join(workdir, BEST_DIR)
  tmp, old = f'{target}.tmp-{os.getpid()}', f'{target}.old-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  prefix = tf.train.Checkpoint(model=model).save(os.path.join(tmp, 'ckpt'))
  write_json(os.path.join(tmp, BEST_FILE), record)
  if os.path.exists(target):
    os.rename(target, old)
  os.rename(tmp, target)
  shutil.rmtree(old, ignore_errors=True)
  return os.path.join(target, os.path.basename(prefix))


def resolve_checkpoint(workdir: str, checkpoint: str | None) -> str:
  """A checkpoint prefix: `checkpoint`, 'best' (the best validated weights) or, by default, the
  workdir's latest."""
  if checkpoint == 'best':
    if read_best(workdir) is None:
      raise UserInputError(f'checkpoint=best: {workdir} has no {BEST_DIR}/{BEST_FILE} (train with '
                           'train_config.eval_every > 0 to keep the best validated weights)')
    return tf.train.latest_checkpoint(os.path.join(workdir, BEST_DIR)) or os.path.join(
        workdir, BEST_DIR, 'ckpt-1')
  return checkpoint or latest_checkpoint(workdir)


def load_trained_model(workdir: str, checkpoint: str | None = None):
  """The retrain model described by `workdir/model.json` with the weights of `checkpoint`
  (default: the workdir's latest; 'best': the best validated). Returns (model, description,
  checkpoint path)."""
  from official.autodeeplab.modeling import segmenter
  description = read_model(workdir)
  geno = description.pop('genotype_object')
  path = resolve_checkpoint(workdir, checkpoint)
  if checkpoint and not tf.io.gfile.exists(path + '.index'):
    raise UserInputError(f'checkpoint={checkpoint}: no such checkpoint (expected the prefix of '
                         'a .index/.data pair, e.g. WORKDIR/checkpoints/ckpt-1000)')
  model = segmenter.build_segmenter(geno, description['num_classes'],
                                    filter_multiplier=description['filter_multiplier'])
  restore(tf.train.Checkpoint(model=model), path, workdir, partial=True)
  return model, description, path


def kept_checkpoint(manager: tf.train.CheckpointManager) -> str:
  """What a stopped run leaves to resume from, for its message."""
  return manager.latest_checkpoint or 'none (no checkpoint was written yet)'


def preempted(tool: str, step: int, manager: tf.train.CheckpointManager,
              signum: int = signal.SIGTERM) -> Preempted:
  """The error a loop raises after checkpointing on SIGTERM or SIGINT."""
  return Preempted(f'[{tool}] {signal.Signals(signum).name} at step {step}: checkpoint '
                   f'{manager.latest_checkpoint} written; rerun the same command to resume',
                   exit_code=128 + signum)


class StopOnSigterm:
  """Within the context, SIGTERM and SIGINT (Ctrl-C) set `requested` (and `signum`) instead of
  ending the process, so the loop can finish its step, checkpoint and stop. (Only in the main
  thread, where Python runs handlers.)"""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signum = signal.SIGTERM
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested, self.signum = True, signum

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    return False


def is_chief(strategy) -> bool:
  """Whether this process writes the run's files: always, except the non-chief workers of a
  multi-worker strategy."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not getattr(resolver, 'task_type', None):
    return True
  cluster = resolver.cluster_spec().as_dict()
  if 'chief' in cluster:
    return resolver.task_type == 'chief'
  return resolver.task_type == 'worker' and resolver.task_id == 0


def worker_checkpoints(strategy, workdir: str) -> str:
  """The directory this process's checkpoints go to."""
  return os.path.join(worker_workdir(strategy, workdir), CHECKPOINT_DIR)


def worker_workdir(strategy, workdir: str) -> str:
  """`workdir` for the chief; `workdir/workers/{type}-{id}` for the other workers (their
  checkpoint saves take part in the collective but must not overwrite the chief's)."""
  if is_chief(strategy):
    return workdir
  resolver = strategy.cluster_resolver
  return os.path.join(workdir, 'workers', f'{resolver.task_type}-{resolver.task_id}')
