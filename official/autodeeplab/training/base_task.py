"""What the one loop (`training/loop.py`) asks of a task, as Model Garden's `base_task.Task`: the
search (`search_task.SearchTask`) and the retrain (`train_task.TrainTask`) implement it.

A task owns its model, optimizers, inputs and compiled step; the loop owns resume, the run's
description file, progress lines, TensorBoard scalars, checkpoints, signals and divergence.
"""
from __future__ import annotations

import abc
import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Cadence:
  """How often the loop reports and saves (steps), and how many checkpoints it keeps."""
  log_every: int = 100
  checkpoint_every: int = 1000
  max_checkpoints: int = 3


@dataclasses.dataclass
class StepResult:
  """What one step reports.

  Attributes:
    losses: {name: value} of the step (their sum is checked for finiteness).
    nonfinite: logits that were NaN or infinite (a cross-entropy of NaN logits can come out
      finite, so the loss alone can hide a diverged run).
    what: which loss, for the divergence message ('the trainA loss', 'the loss').
    images, labels, predictions: the step's batch and predictions (per replica), for summaries.
    skipped_in_a_row: float16 updates skipped in a row for non-finite gradients (loss_scale.py).
  """
  losses: dict
  nonfinite: int = 0
  what: str = 'the loss'
  skipped_in_a_row: int = 0
  images: object = None
  labels: object = None
  predictions: object = None

  def finite(self) -> bool:
    return math.isfinite(sum(self.losses.values())) and not self.nonfinite


class Task(abc.ABC):
  """One job the loop runs.

  Attributes a task sets:
    name: 'search' or 'train': the progress lines' prefix.
    divergence_hint: what the DivergedError message advises.
    strategy: the tf.distribute strategy its model and optimizers live in.
    step: the step counter (a tf.Variable, checkpointed).
    shard_files: the TFRecord files read (to name a corrupt one), or None.
    optional_checkpoint_objects: attributes of `checkpoint()` an older checkpoint may lack.
  """
  name: str
  divergence_hint: str
  strategy: tf.distribute.Strategy
  step: tf.Variable
  shard_files: list[str] | None = None
  optional_checkpoint_objects: tuple[str, ...] = ()

  @property
  @abc.abstractmethod
  def cadence(self) -> Cadence:
    """How often the loop logs and checkpoints."""

  @property
  @abc.abstractmethod
  def images_per_step(self) -> int:
    """Images one step consumes, for images/s."""

  @abc.abstractmethod
  def checkpoint(self) -> tf.train.Checkpoint:
    """Everything a rerun needs to resume exactly (the loop adds the data iterators)."""

  @abc.abstractmethod
  def datasets(self) -> dict:
    """{checkpoint attribute: tf.data.Dataset} of the inputs."""

  @abc.abstractmethod
  def run_description(self):
    """(file name, dict, `run_description.check_or_write_json` keyword arguments) or None."""

  @abc.abstractmethod
  def train_step(self, iterators) -> StepResult:
    """One step; `iterators.next(name)` gives a batch of `datasets()[name]`."""

  @abc.abstractmethod
  def log_scalars(self, step: int) -> tuple[dict, str]:
    """({TensorBoard tag: value}, the progress line's text) for the step."""

  @abc.abstractmethod
  def after_step(self, workdir: str, step: int, result: StepResult, final: bool,
                 chief: bool) -> list[str] | None:
    """Periodic work (exports, images, validation) on every worker, `workdir` this process's
    own; returns lines to log."""

  @abc.abstractmethod
  def finish(self, workdir: str, step: int, chief: bool) -> dict:
    """The run's result."""

  def stop_reason(self, workdir: str) -> str | None:
    """Why the run ends before its last step (checked before the first step and after each),
    or None to go on."""
    del workdir
    return None
