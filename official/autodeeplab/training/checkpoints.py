"""Checkpoints you can always resume from: the newest readable one, and unreadable ones set aside.

A checkpoint can be damaged after it was written (a truncated data file, a missing index, a bad
checksum: a full disk, a copy cut short). Restoring it would die deep in TensorFlow although the
previous one is intact. `latest_readable` reads every tensor of the newest checkpoint listed in a
directory's state file and falls back, newest first, to one that reads, saying which in one line
each. When the process holds the workdir's lock (`utils/workdir_lock.py`: it is the one writer)
it also moves each unreadable checkpoint aside, never deleting it, to `corrupt-ckpt-N/` and
rewrites the `checkpoint` state file to match, so the run's checkpoint manager starts clean;
readers (evaluation, export) only fall back.
"""
from __future__ import annotations

import glob
import os
import shutil
from typing import Callable

import tensorflow as tf

from official.autodeeplab import errors
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.utils import workdir_lock


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
