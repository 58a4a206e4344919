"""One writer per workdir: an exclusive OS lock, taken by a binary before it imports TensorFlow.

A scheduler that starts the same job twice must not make two processes write one workdir (both
would save `checkpoints/`, and which survives would be luck). `lock(workdir)` takes
`fcntl.flock` on `workdir/.lock`, which the kernel releases when the process ends in any way
(kill -9 included), so nothing stale is ever left; the file records the holder's pid and command
for the refusal message. Under MultiWorkerMirroredStrategy the chief locks the workdir and every
other worker its own `workers/{type}-{id}` (what `distribute.worker_workdir` writes to), read from
TF_CONFIG without TensorFlow.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from typing import Mapping

from official.autodeeplab.errors import UserInputError

LOCK_FILE = '.lock'
_HELD: dict[str, int] = {}  # real path -> open descriptor, for the life of the process


def lock_dir(workdir: str, strategy: str = 'default',
             environ: Mapping[str, str] | None = None) -> str:
  """The directory this process writes: `workdir`, or a non-chief worker's own subdirectory."""
  environ = os.environ if environ is None else environ
  if strategy != 'multi_worker' or not environ.get('TF_CONFIG'):
    return workdir
  try:
    config = json.loads(environ['TF_CONFIG'])
    task_type, task_id = config['task']['type'], int(config['task']['index'])
    cluster = config.get('cluster', {})
  except (ValueError, KeyError, TypeError):
    return workdir  # TensorFlow reports a malformed TF_CONFIG itself
  chief = task_type == 'chief' or ('chief' not in cluster and task_type == 'worker'
                                   and task_id == 0)
  return workdir if chief else os.path.join(workdir, 'workers', f'{task_type}-{task_id}')


def lock(workdir: str, strategy: str = 'default') -> str:
  """Takes the exclusive lock of the directory this process writes (`lock_dir`) for the rest of
  the process's life; a directory another process holds is a one-line error naming it, the
  holder's pid and command. Returns the locked directory."""
  directory = lock_dir(workdir, strategy)
  path = os.path.join(directory, LOCK_FILE)
  if _key(directory) in _HELD:
    return directory
  try:
    os.makedirs(directory, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserInputError(f'{directory}: cannot use it as a workdir ({e.strerror})') from None
  try:
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _read_holder(descriptor)
    os.close(descriptor)
    raise UserInputError(
        f'{directory}: in use by another process (pid {holder.get("pid", "?")}: '
        f'{holder.get("command", "?")}); wait for it to end or use another --workdir') from None
  os.ftruncate(descriptor, 0)
  os.pwrite(descriptor, json.dumps({'pid': os.getpid(),
                                    'command': ' '.join(sys.argv)}).encode(), 0)
  _HELD[_key(directory)] = descriptor
  return directory


def held(directory: str) -> bool:
  """Whether this process holds `directory`'s lock, however the directory is spelt (relative,
  absolute, `~`, through a symbolic link)."""
  return _key(directory) in _HELD


def _key(directory: str) -> str:
  """One name per directory: the real path of its lock file."""
  return os.path.realpath(os.path.join(os.path.expanduser(directory), LOCK_FILE))


def _read_holder(descriptor: int) -> dict:
  try:
    return json.loads(os.pread(descriptor, 65536, 0).decode() or '{}')
  except (ValueError, OSError):
    return {}
