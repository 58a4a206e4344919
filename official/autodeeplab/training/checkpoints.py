"""Checkpoints: the newest readable one to resume from (unreadable ones set aside), restoring one
with a clear error for another model's, and finding the one a user means (latest, best, a path).

A checkpoint can be damaged after it was written (a truncated data file, a missing index, a bad
checksum: a full disk, a copy cut short). Restoring it would die deep in TensorFlow although the
previous one is intact. `latest_readable` reads every tensor of the newest checkpoint listed in a
directory's state file and falls back, newest first, to one that reads, saying which in one line
each. When the process holds the workdir's lock (`utils/workdir_lock.py`: it is the one writer)
it also moves each unreadable checkpoint aside, never deleting it, to `corrupt-ckpt-N/` and
rewrites the `checkpoint` state file to match, so the run's checkpoint manager starts clean;
readers (evaluation, export) only fall back.

`restore` turns TensorFlow's shape-mismatch traceback into one line that names the workdir, the
variable and both shapes; `load_trained_model` rebuilds a retrain workdir's model (`model.json`)
with the weights a user names.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Callable

import tensorflow as tf

from official.autodeeplab import errors
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import best_weights
from official.autodeeplab.training import run_description
from official.autodeeplab.utils import workdir_lock

CHECKPOINT_DIR = 'checkpoints'


def problem(path: str) -> str | None:
  """Why checkpoint `path` cannot be read (its first error line), or None when every tensor
  reads (data iterator states, variant tensors, have no NumPy form and are left to the restore)."""
  try:
    reader = tf.train.load_checkpoint(path)
    for name, dtype in reader.get_variable_to_dtype_map().items():
      if dtype != tf.variant:
        reader.get_tensor(name)
  except Exception as e:  # noqa: BLE001 (TensorFlow raises OpErrors and plain Python errors)
    return errors.reason(e)
  return None


def listed(directory: str) -> list[str]:
  """The checkpoints the directory's state file lists, oldest first, as paths that open from
  here: `tf.train.get_checkpoint_state` already prefixes an entry written relative to the
  directory (what `CheckpointManager` writes) with `directory` itself, relative or not."""
  state = tf.train.get_checkpoint_state(os.path.expanduser(directory))
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
  if state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  return paths


def latest_readable(directory: str, log: Callable[[str], None] = print) -> str | None:
  """The newest readable checkpoint listed in `directory` (None when it lists none); an error
  when every listed checkpoint is unreadable. Unreadable ones are moved aside when this process
  holds the lock of the directory's workdir."""
  directory = os.path.expanduser(directory)
  paths = listed(directory)
  repair = workdir_lock.held(os.path.dirname(os.path.normpath(directory)))
  unreadable = []
  for path in reversed(paths):
    reason = problem(path)
    if reason is None:
      break
    unreadable.append(path)
    log(f'checkpoint {path} is unreadable ({reason}); '
        + (_move_aside(path) + ', ' if repair else '')
        + 'trying the one before it')
  else:
    if paths:
      raise UserInputError(f'{directory}: none of its {len(paths)} checkpoint(s) can be read '
                           f'({os.path.basename(paths[-1])} first); restore them from a copy '
                           'or start in another --workdir')
    return None
  if unreadable and repair:
    # Entries relative to the directory, as the manager writes them, so the state file stays
    # valid whatever the directory is called from. (Given a relative directory, TensorFlow
    # rewrites entries relative to the working directory; given an absolute one, it keeps them.)
    kept = [_entry(p, directory) for p in paths if p not in unreadable]
    tf.compat.v1.train.update_checkpoint_state(os.path.abspath(directory), _entry(path, directory),
                                               all_model_checkpoint_paths=kept)
  if unreadable:
    log(f'resuming from {path}, the newest readable checkpoint')
  return path


def _entry(path: str, directory: str) -> str:
  """How the state file of `directory` names checkpoint `path`: by its name when it lies in the
  directory, else by its absolute path."""
  if os.path.dirname(os.path.abspath(path)) == os.path.abspath(directory):
    return os.path.basename(path)
  return os.path.abspath(path)


def _move_aside(path: str) -> str:
  """Moves the files of checkpoint `path` that exist into `corrupt-ckpt-N/` beside them and says
  so; with none to move, makes no folder and says that instead."""
  found = glob.glob(glob.escape(path) + '.*')
  if not found:
    return 'none of its files exists, nothing moved aside'
  target = os.path.join(os.path.dirname(path), f'corrupt-{os.path.basename(path)}')
  os.makedirs(target, exist_ok=True)
  for name in found:
    shutil.move(name, os.path.join(target, os.path.basename(name)))
  return f'moved aside to {target}'


def latest_checkpoint(workdir: str) -> str:
  """The latest readable checkpoint of a run's workdir (`latest_readable`: an unreadable newest
  one is reported and skipped); an error naming the workdir if it has none."""
  path = latest_readable(os.path.join(workdir, CHECKPOINT_DIR))
  if not path:
    raise UserInputError(f'{workdir}: no checkpoint in {CHECKPOINT_DIR}/; train first '
                         '(python -m tools.train --workdir=...)')
  return path


def resolve_checkpoint(workdir: str, checkpoint: str | None) -> str:
  """A checkpoint prefix: `checkpoint`, 'best' (the best validated weights) or, by default, the
  workdir's latest."""
  if checkpoint == 'best':
    path = best_weights.best_checkpoint(workdir)
    if path is None:
      raise UserInputError(f'checkpoint=best: {workdir} has no {best_weights.BEST_DIR}/'
                           f'{best_weights.BEST_FILE} (train with train_config.eval_every > 0 to '
                           'keep the best validated weights)')
    return path
  return checkpoint or latest_checkpoint(workdir)


def kept(manager: tf.train.CheckpointManager) -> str:
  """What a stopped run leaves to resume from, for its message."""
  return manager.latest_checkpoint or 'none (no checkpoint was written yet)'


_SHAPE_MISMATCH = re.compile(r'incompatible tensor with shape (\(.*?\)) when attempting to '
                             r'restore variable with shape (\(.*?\)) and name (\S+?)\.?(\s|$)')


def restore(checkpoint: tf.train.Checkpoint, path: str | None, workdir: str,
            partial: bool = False, optional: tuple[str, ...] = ()) -> bool:
  """Restores checkpoint `path` (e.g. a CheckpointManager's latest); False if it is None.

  Every object of `checkpoint` must be in the file but its attributes named in `optional` (added
  after older checkpoints were written: those keep their initial values); with `partial`, the
  file may hold more (an optimizer when only the model is restored). A checkpoint of another
  model (other genotype, size or classes) is a one-line UserInputError naming the workdir, the
  first mismatched variable and both shapes; the checkpoint is untouched.
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


def load_trained_model(workdir: str, checkpoint: str | None = None, **build_options):
  """The retrain model described by `workdir/model.json` with the weights of `checkpoint`
  (default: the workdir's latest; 'best': the best validated). Returns (model, description,
  checkpoint path). `build_options` go to `segmenter.build_segmenter`."""
  from official.autodeeplab.modeling import segmenter
  description = run_description.read_model(workdir)
  geno = description.pop('genotype_object')
  path = resolve_checkpoint(workdir, checkpoint)
  if checkpoint and not tf.io.gfile.exists(path + '.index'):
    raise UserInputError(f'checkpoint={checkpoint}: no such checkpoint (expected the prefix of '
                         'a .index/.data pair, e.g. WORKDIR/checkpoints/ckpt-1000)')
  model = segmenter.build_segmenter(
      geno, description['num_classes'], filter_multiplier=description['filter_multiplier'],
      input_channels=run_description.image_spec(description).channels, **build_options)
  restore(tf.train.Checkpoint(model=model), path, workdir, partial=True)
  return model, description, path
