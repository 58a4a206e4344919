"""The one training loop, for the search and the retrain alike (Model Garden's controller, small).

A task (`search_task.SearchTask`, `train_task.TrainTask`) owns its model, optimizers, inputs and
compiled step; the loop owns everything around the step, once:

* resume: the latest readable checkpoint of `workdir/checkpoints` (the task's objects, and with
  one replica the data iterators, so a rerun continues exactly where it stopped; an unreadable
  newest one is reported and set aside, `checkpoints.latest_readable`); a checkpoint of another
  model is refused with one line (`checkpoints.restore`);
* the run's description (`model.json` / `supernet.json`) written or checked, and gin's operative
  config written, by the chief only (`distribute.worker_workdir`);
* a progress line and TensorBoard scalars every `log_every` steps, with images/s and an ETA;
* checkpoints every `checkpoint_every` steps and at the last one;
* a non-finite loss or logits: `DivergedError` naming the step, before anything of that step is
  saved; so does a float16 loss scale that collapsed (`loss_scale.COLLAPSE_STEPS` updates in a
  row skipped for non-finite gradients);
* SIGTERM or SIGINT (Ctrl-C): finish the step, checkpoint, raise `Preempted` (the binaries exit
  with 143 or 130);
* with several workers (`workers.py`): every worker resumes from the chief's checkpoints and
  they check they start at one step; a signal to any worker stops all at the same step; a lost
  peer raises `PeerLost` naming it (exit 75).

The task protocol is `base_task.Task`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import tensorflow as tf

from official.autodeeplab import errors
from official.autodeeplab import files
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import DivergedError
from official.autodeeplab.errors import PeerLost
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import base_task
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import distribute
from official.autodeeplab.training import loss_scale
from official.autodeeplab.training import progress
from official.autodeeplab.training import run_description
from official.autodeeplab.training import signals
from official.autodeeplab.training import workers


def run(task: base_task.Task, workdir: str, num_steps: int, log: Callable[[str], None] = print,
        operative_config: str | None = None) -> dict:
  """Runs `task` until its step counter reaches `num_steps`; returns `task.finish(...)`."""
  iterators = {name: iter(task.strategy.experimental_distribute_dataset(dataset))
               for name, dataset in task.datasets().items()}
  checkpoint = task.checkpoint()
  if task.strategy.num_replicas_in_sync == 1:  # distributed iterators cannot be checkpointed
    for name, iterator in iterators.items():
      setattr(checkpoint, name, iterator)
  workdir_here = distribute.worker_workdir(task.strategy, workdir)
  chief = workdir_here == workdir
  cluster = workers.from_strategy(task.strategy)
  directory = os.path.join(workdir_here, checkpoints.CHECKPOINT_DIR)
  # Every worker resumes from the chief's checkpoints (the others' own copies may lag a save).
  # Before the manager reads the state file: unreadable checkpoints are set aside first.
  latest = checkpoints.latest_readable(os.path.join(workdir, checkpoints.CHECKPOINT_DIR),
                                       lambda line: log(f'[{task.name}] {line}'))
  manager = tf.train.CheckpointManager(checkpoint, directory, task.cadence.max_checkpoints)
  with _lost_peer_named(task, cluster, manager):
    agreement = _resume(task, checkpoint, latest, workdir, cluster, log)
    description = task.run_description()
    if chief and description is not None:
      name, data, check = description
      data = {**data, 'num_workers': cluster.num_workers if cluster is not None else 1}
      check = {**check, 'optional': (*check.get('optional', ()), 'num_workers')}
      run_description.check_or_write_json(workdir, name, data, **check)
    if chief and operative_config is not None:
      files.write_text(os.path.join(workdir, 'operative_config.gin'), operative_config)
    writer = tf.summary.create_file_writer(os.path.join(workdir_here, 'tensorboard'))
    meter = progress.ProgressMeter(num_steps, task.images_per_step)
    cadence = task.cadence
    step = int(task.step.numpy())
    reason = initial_reason = task.stop_reason(workdir)
    with signals.StopOnSigterm() as stop, writer.as_default():
      while step < num_steps and reason is None:
        result = task.train_step(_CheckedIterators(iterators, task.shard_files))
        step = int(task.step.numpy())
        if not result.finite():
          values = ', '.join(f'{k} {v}' for k, v in result.losses.items())
          raise DivergedError(
              f'step {step}: {result.what} is not finite ({values}, {result.nonfinite} NaN/inf '
              f'logits); {task.name} stopped, nothing of this step saved, last checkpoint kept: '
              f'{checkpoints.kept(manager)}. {task.divergence_hint}')
        if result.skipped_in_a_row >= loss_scale.COLLAPSE_STEPS:
          raise DivergedError(
              f'step {step}: the float16 loss scale collapsed ({result.skipped_in_a_row} '
              f'updates in a row skipped for non-finite gradients); {task.name} stopped, last '
              f'checkpoint kept: {checkpoints.kept(manager)}. Train in bfloat16 or float32, or '
              f'{task.divergence_hint[0].lower()}{task.divergence_hint[1:]}')
        if step % cadence.log_every == 0 or step == num_steps or step == 1:
          speed = meter.report(step)
          scalars, text = task.log_scalars(step)
          if meter.images_per_s():
            scalars['images_per_s'] = meter.images_per_s()
          for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
          log(f'[{task.name}] step {step}/{num_steps}{text}{speed}')
        stop_signal = _stop_signal(stop, agreement)
        final = step == num_steps or stop_signal is not None
        saved = step % cadence.checkpoint_every == 0 or final
        if saved:
          _save(manager, step)
        for line in task.after_step(workdir_here, step, result, final, chief) or ():
          log(line)
        reason = None if final else task.stop_reason(workdir)
        if stop_signal is None and stop.requested and agreement is None:
          stop_signal = stop.signum  # came during after_step (one process: nothing to agree)
        # A signal that came during after_step (validation, image summaries) still stops here,
        # with this step saved: what the stop message names is what a rerun resumes from.
        if (reason is not None or stop_signal is not None) and not saved:
          _save(manager, step)
        if reason is not None:
          log(f'[{task.name}] stopped at step {step} of {num_steps}: {reason}')
        if stop_signal is not None:
          writer.flush()
          raise signals.preempted(task.name, step, manager.latest_checkpoint, stop_signal)
      if initial_reason is not None and step < num_steps:
        log(f'[{task.name}] nothing to do at step {step}: {initial_reason}')
      result = task.finish(workdir, step, chief)
    writer.flush()
    return result


@contextlib.contextmanager
def _lost_peer_named(task, cluster, manager):
  """A lost peer's TensorFlow error (from any collective of the run) as `PeerLost`, naming the
  peer, the step and the last checkpoint; other errors pass."""
  try:
    yield
  except tf.errors.OpError as e:
    peer = workers.lost_peer(e, cluster) if cluster is not None else None
    if peer is None:
      raise
    step = int(task.step.numpy()) + 1
    raise PeerLost(f'[{task.name}] {peer} stopped responding at step {step}; last checkpoint '
                   f'{checkpoints.kept(manager)}; restart every worker with the same command to '
                   'resume from it') from None


def _resume(task, checkpoint, latest, workdir, cluster, log):
  """Restores `latest`; with several workers, checks they all start at one step and returns
  their `workers.Agreement` (None for one process)."""
  # Objects a checkpoint written before they existed lacks (the loss scales) are optional.
  if checkpoints.restore(checkpoint, latest, workdir,
                         optional=task.optional_checkpoint_objects):
    log(f'[{task.name}] resumed from {latest} at step {int(task.step.numpy())}')
  agreement = workers.Agreement(task.strategy) if cluster is not None else None
  if agreement is not None:
    starts = agreement.values(int(task.step.numpy()))
    if len(set(starts)) > 1:
      steps = ', '.join(f'{start:.0f}' for start in starts)
      raise UserInputError(
          f'{workdir}: the workers would resume at different steps ({steps}): every worker must '
          f'read the chief\'s {checkpoints.CHECKPOINT_DIR}/ (one workdir on a filesystem they '
          'share)')
  return agreement


def _stop_signal(stop: signals.StopOnSigterm, agreement) -> int | None:
  """The signal this step stops on (None: go on). With several workers, one that was signalled
  stops them all at this step (the largest signal number any of them got)."""
  if agreement is None:
    return stop.signum if stop.requested else None
  signums = agreement.values(stop.signum if stop.requested else 0)
  return int(max(signums)) or None


def _save(manager: tf.train.CheckpointManager, step: int) -> None:
  """Saves checkpoint `step`; a full disk or an unwritable directory is one line naming it, the
  last checkpoint written staying intact (TensorFlow writes a temporary one, then renames)."""
  kept = checkpoints.kept(manager)
  try:
    manager.save(checkpoint_number=step)
  except (OSError, tf.errors.OpError) as e:
    raise UserInputError(f'{manager.directory}: cannot write checkpoint {step} '
                         f'({errors.reason(e)}); the last one written, {kept}, is intact') from None


class _CheckedIterators:
  """`next(name)` on the loop's iterators, naming a corrupt shard instead of a deep traceback."""

  def __init__(self, iterators: dict, shard_files: list[str] | None):
    self._iterators, self._files = iterators, shard_files

  def next(self, name: str):
    return input_pipeline.next_checked(self._iterators[name], self._files)
