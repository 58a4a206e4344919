"""Retraining the discrete network from scratch (paper sec. 5.2, DeepLab's protocol).

SGD with momentum 0.9 on the 'poly' schedule from 0.05 (power 0.9) over the whole run; the loss is
the mean pixel cross-entropy over labelled pixels plus the model's L2 losses (4e-5 on conv kernels
only), so the weight decay reaches the gradient as in the paper; BN statistics are learned
('fine-tuned') and synchronised across replicas when the model is built with `synchronized=True`;
scheduled drop path follows the fraction of training done (`Segmenter.set_training_progress`, set
inside the compiled step).

The compiled step (`TrainTask.train_step`) runs the forward and backward pass and the update under
`strategy.run`; `run_training` is the loop around it: exact resume from the latest checkpoint
(model, optimizer, step, data iterator), TensorBoard scalars and images, a progress line, and a
stop on a non-finite loss that keeps the last good checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import gin
import numpy as np
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.training import losses
from official.autodeeplab.training import optimization
from official.autodeeplab.training import run_state
from official.autodeeplab.utils import visualize


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The retrain protocol; defaults are the paper's Cityscapes settings.

  Attributes:
    total_steps: training steps (the poly schedule's length; 1.5M in the paper for Cityscapes).
    batch_size: global batch size (split over the replicas).
    crop_size: square training crop (769 Cityscapes, 513 VOC / ADE20K).
    min_scale: random scale augmentation range.
    max_scale: see min_scale.
    max_image_side: shrink training images so their longer side is at most this before the
      random scale (513 for ADE20K in the paper; None: keep their size).
    learning_rate: poly schedule's initial learning rate.
    end_learning_rate: the rate at total_steps.
    lr_power: poly schedule's power.
    warmup_steps: linear warm-up steps before the poly schedule (0 in the paper).
    momentum: SGD momentum.
    log_every: steps between progress lines and TensorBoard scalars.
    checkpoint_every: steps between checkpoints (the last step is always saved).
    image_summary_every: steps between TensorBoard images (image, ground truth, prediction).
    max_checkpoints: checkpoints kept in the workdir.
  """
  total_steps: int = 1_500_000
  batch_size: int = 8
  crop_size: int = 769
  min_scale: float = 0.5
  max_scale: float = 2.0
  max_image_side: int | None = None
  learning_rate: float = 0.05
  end_learning_rate: float = 0.0
  lr_power: float = 0.9
  warmup_steps: int = 0
  momentum: float = 0.9
  log_every: int = 100
  checkpoint_every: int = 2000
  image_summary_every: int = 2000
  max_checkpoints: int = 3

  def validate(self) -> None:
    for name in ('total_steps', 'batch_size', 'crop_size', 'log_every', 'checkpoint_every',
                 'image_summary_every', 'max_checkpoints'):
      if getattr(self, name) < 1:
        raise UserInputError(f'train_config.{name}={getattr(self, name)}: must be positive')
    if not 0 < self.min_scale <= self.max_scale:
      raise UserInputError(f'train_config.min_scale/max_scale={self.min_scale}/{self.max_scale}: '
                           'expected 0 < min_scale <= max_scale')
    if self.learning_rate <= 0:
      raise UserInputError(f'train_config.learning_rate={self.learning_rate}: must be positive')


class NonFiniteLossError(UserInputError):
  """The loss became NaN or infinite; the message names the step and the checkpoint kept."""


class TrainTask:
  """The retrain model, its optimizer, the step counter and the compiled train step.

  Model, optimizer (slots built before any trace) and step are created in the strategy's scope.

  Args:
    model_fn: builds the `Segmenter` (called inside the strategy's scope).
    config: the protocol.
    strategy: a tf.distribute strategy (default: the current one).
  """

  def __init__(self, model_fn: Callable[[], segmenter.Segmenter], config: TrainConfig,
               strategy: tf.distribute.Strategy | None = None):
    config.validate()
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    with self.strategy.scope():
      self.model = model_fn()
      self.schedule = optimization.PolynomialDecay(
          config.learning_rate, config.total_steps, config.lr_power, config.end_learning_rate,
          config.warmup_steps)
      self.optimizer = optimization.sgd(self.schedule, config.momentum)
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
    self.train_step = tf.function(self._distributed_step, reduce_retracing=True)

  def checkpoint(self) -> tf.train.Checkpoint:
    """Model, optimizer (with its iteration count and momentum slots) and step."""
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)

  def learning_rate(self) -> float:
    return float(self.schedule(self.step))

  def _distributed_step(self, images, labels):
    """One update; returns (cross-entropy, L2 loss, number of non-finite logits, predictions of
    each replica's batch).

    The non-finite count is what detects divergence: TensorFlow's softmax cross-entropy of NaN
    logits is not NaN (it came out as log(num_classes) on CPU), so the loss alone can hide it.
    """
    self.model.set_training_progress(
        tf.cast(self.step, tf.float32) / float(self.config.total_steps), self.step)
    cross_entropy, l2, nonfinite, predictions = self.strategy.run(self._replica_step,
                                                                  args=(images, labels))
    self.step.assign_add(1)
    total = lambda x: self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)
    return total(cross_entropy), total(l2), total(nonfinite), predictions

  def _replica_step(self, images, labels):
    replicas = self.strategy.num_replicas_in_sync
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      cross_entropy = losses.segmentation_loss(labels, logits, replicas)
      l2 = tf.add_n(self.model.losses) / replicas if self.model.losses else tf.constant(0.0)
      loss = cross_entropy + l2
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    nonfinite = tf.reduce_sum(tf.cast(~tf.math.is_finite(logits), tf.float32))
    return cross_entropy, l2, nonfinite, tf.argmax(logits, -1, output_type=tf.int32)


def run_training(task: TrainTask, dataset: tf.data.Dataset, workdir: str,
                 description: dict | None = None, palette: np.ndarray | None = None,
                 log: Callable[[str], None] = print, shard_files: list[str] | None = None,
                 operative_config: str | None = None, stop_at: int | None = None) -> dict:
  """Trains until `config.total_steps` (or step `stop_at`, to run a schedule in parts), resuming
  from `workdir/checkpoints` if it holds any.

  `description` (`run_state.model_description`) is written to `workdir/model.json`, or, when the
  workdir already has one, must match it; a checkpoint of another model is refused first, naming
  the first mismatched variable and both shapes. `operative_config` (gin's) is then written to
  `workdir/operative_config.gin`.

  Writes checkpoints (model, optimizer, step and, on one replica, the data iterator, so a rerun
  continues exactly where it stopped) and TensorBoard events to `workdir/tensorboard`: the loss,
  L2 loss, learning rate and images/s every `log_every` steps, and every `image_summary_every`
  steps a few training crops beside their ground truth and prediction. A NaN or infinite loss
  stops the run with `NonFiniteLossError` before anything of that step is saved; SIGTERM
  checkpoints the current step and raises `run_state.Preempted`. Under a multi-worker strategy only
  the chief writes the workdir (`run_state.worker_workdir`).
  """
  config = task.config
  iterator = iter(task.strategy.experimental_distribute_dataset(dataset))
  checkpoint = task.checkpoint()
  if task.strategy.num_replicas_in_sync == 1:  # distributed iterators cannot be checkpointed
    checkpoint.iterator = iterator
  workdir_here = run_state.worker_workdir(task.strategy, workdir)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(workdir_here, run_state.CHECKPOINT_DIR), config.max_checkpoints)
  if run_state.restore(checkpoint, manager.latest_checkpoint, workdir):
    log(f'[train] resumed from {manager.latest_checkpoint} at step {int(task.step.numpy())}')
  if description is not None and workdir_here == workdir:
    run_state.check_or_write_model(workdir, description)
  if operative_config is not None and workdir_here == workdir:
    run_state.write_text(os.path.join(workdir, 'operative_config.gin'), operative_config)
  writer = tf.summary.create_file_writer(os.path.join(workdir_here, 'tensorboard'))
  palette = visualize.label_palette(palette)
  meter = run_state.ProgressMeter(config.total_steps, config.batch_size)
  cross_entropy = l2 = math.nan
  last_step = config.total_steps if stop_at is None else min(stop_at, config.total_steps)
  with run_state.StopOnSigterm() as stop:
    while int(task.step.numpy()) < last_step:
      images, labels = input_pipeline.next_checked(iterator, shard_files)
      cross_entropy_t, l2_t, nonfinite, predictions = task.train_step(images, labels)
      cross_entropy, l2 = float(cross_entropy_t), float(l2_t)
      step = int(task.step.numpy())
      if not math.isfinite(cross_entropy + l2) or float(nonfinite):
        kept = run_state.kept_checkpoint(manager)
        raise NonFiniteLossError(
            f'step {step}: the loss is not finite (cross-entropy {cross_entropy}, L2 {l2}, '
            f'{int(float(nonfinite))} NaN/inf logits); training stopped, nothing of this step '
            f'saved, last checkpoint kept: {kept}. Lower train_config.learning_rate or add '
            'warm-up (train_config.warmup_steps)')
      if step % config.log_every == 0 or step == last_step or step == 1:
        speed = meter.report(step)
        with writer.as_default(step=step):
          tf.summary.scalar('loss/cross_entropy', cross_entropy)
          tf.summary.scalar('loss/l2', l2)
          tf.summary.scalar('learning_rate', task.learning_rate())
          if meter.images_per_s():
            tf.summary.scalar('images_per_s', meter.images_per_s())
        log(f'[train] step {step}/{config.total_steps} loss {cross_entropy + l2:.4f} '
            f'(cross-entropy {cross_entropy:.4f}, L2 {l2:.4f}) lr '
            f'{task.learning_rate():.5f}{speed}')
      if step % config.image_summary_every == 0 or step == 1:
        local = task.strategy.experimental_local_results
        with writer.as_default(step=step):
          tf.summary.image('train/image | ground truth | prediction', visualize.side_by_side(
              local(images)[0], local(labels)[0], local(predictions)[0], palette), max_outputs=3)
      if step % config.checkpoint_every == 0 or step == last_step or stop.requested:
        manager.save(checkpoint_number=step)
      if stop.requested:
        raise run_state.preempted('train', step, manager)
  writer.flush()
  return {'step': int(task.step.numpy()), 'cross_entropy': cross_entropy, 'l2': l2,
          'checkpoint': manager.latest_checkpoint}


# gin configures these factories (not the Keras classes: gin on a Keras 3 Layer subclass breaks).
@gin.configurable
def train_config(**overrides) -> TrainConfig:
  """TrainConfig with the paper's defaults, overridden by gin bindings."""
  try:
    return dataclasses.replace(TrainConfig(), **overrides)
  except TypeError as e:
    raise UserInputError(f'train_config: {e}') from None


@gin.configurable
def retrain_model(genotype: genotype_lib.Genotype, num_classes: int, model_size: str = 'S',
                  filter_multiplier: int | None = None, drop_path_keep_prob: float = 1.0,
                  weight_decay: float = 4e-5, batch_norm_momentum: float = 0.9997,
                  synchronized: bool | None = None) -> segmenter.Segmenter:
  """The retrain model of an experiment (see `segmenter.build_segmenter`). BN is synchronised
  across replicas when the current strategy has several (`synchronized=None`)."""
  if synchronized is None:
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
  return segmenter.build_segmenter(genotype, num_classes, model_size, filter_multiplier,
                                   synchronized, weight_decay, drop_path_keep_prob,
                                   batch_norm_momentum)
