"""Retraining the discrete network from scratch (paper sec. 5.2, DeepLab's protocol), as a task
for `loop.run`.

SGD with momentum 0.9 on the 'poly' schedule from 0.05 (power 0.9) over the whole run; the loss is
the mean pixel cross-entropy over labelled pixels plus the model's L2 losses (on conv kernels
only), so the weight decay reaches the gradient as in the paper; BN statistics are learned
('fine-tuned') and synchronised across replicas when the model is built with `synchronized=True`;
scheduled drop path follows the fraction of training done (`Segmenter.set_training_progress`, set
inside the compiled step).

The compiled step (`TrainTask.train_step`) runs the forward and backward pass and then the update
under `strategy.run`; with `config.jit_compile` each replica's forward and backward pass is one
XLA computation. A model built under the mixed_float16 policy trains with a dynamic loss scale
(`loss_scale.py`: non-finite gradients skip the update, counted in the progress line); the
loop around it (`training/loop.py`) resumes exactly, logs, checkpoints and
stops on divergence or SIGTERM. Every `image_summary_every` steps a few training crops go to
TensorBoard beside their ground truth and prediction. With `eval_every` and a validation split
(`set_validation`), the model is scored every `eval_every` steps and at the end, single scale, with
the evaluation's metrics (`val/miou` and the per-class IoU in TensorBoard, a progress line), and the
best-scoring weights are kept in `workdir/best/` with `best.json` (`best_weights.save_best`),
apart from the rotated checkpoints, and read back on resume. `model.json` describes the model
(`run_description.model_description`: its genotype, F, classes, the dataset's spec, precision).
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable

import tensorflow as tf

from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.training import base_task
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import distribute
from official.autodeeplab.training import evaluation
from official.autodeeplab.training import loss_scale
from official.autodeeplab.training import losses
from official.autodeeplab.training import optimization
from official.autodeeplab.training import best_weights
from official.autodeeplab.training import run_description
from official.autodeeplab.training.experiment import Experiment
from official.autodeeplab.training.experiment import LoopSettings
from official.autodeeplab.utils import runtime as runtime_lib
from official.autodeeplab.utils import visualize


class TrainTask(base_task.Task):
  """The retrain model, its optimizer, the step counter, the inputs and the compiled train step.

  Model, optimizer (slots built before any trace) and step are created in the strategy's scope.

  Args:
    experiment: the run's configuration (`experiment.task` a `TrainConfig`: the protocol;
      `.loop`: how often the loop logs, checkpoints, draws images and validates).
    model_fn: builds the `Segmenter` (called inside the strategy's scope).
    strategy: a tf.distribute strategy (default: the current one).
    runtime: the process's `runtime.Runtime` (its precision goes into `model.json`).
  """

  name = 'train'
  divergence_hint = ('Lower train_config.learning_rate or add warm-up '
                     '(train_config.warmup_steps)')

  def __init__(self, experiment: Experiment, model_fn: Callable[[], segmenter.Segmenter],
               strategy: tf.distribute.Strategy | None = None,
               runtime: runtime_lib.Runtime | None = None):
    config = experiment.task
    config.validate()
    self.experiment, self.config, self.loop = experiment, config, experiment.loop
    self.runtime = runtime
    self.strategy = strategy or tf.distribute.get_strategy()
    self._spec, self._palette = None, visualize.label_palette(None)
    with self.strategy.scope():
      self.model = model_fn()
      self.schedule = optimization.PolynomialDecay(
          config.learning_rate, config.total_steps, config.lr_power, config.end_learning_rate,
          config.warmup_steps)
      self.optimizer = optimization.sgd(self.schedule, config.momentum)
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='train_step')
      self.loss_scale = loss_scale.LossScale(self.model.compute_dtype == 'float16')
    self._gradients = (tf.function(self._replica_gradients, jit_compile=True)
                       if config.jit_compile else self._replica_gradients)
    self.train_batch = tf.function(self._distributed_step, reduce_retracing=True)
    self._dataset, self.shard_files = None, None
    self._validation, self._evaluator = None, None
    self._last = {}

  def set_inputs(self, dataset: tf.data.Dataset, shard_files: list[str] | None = None,
                 spec=None) -> None:
    """Training batches (images, labels) of `config.batch_size`; `shard_files` names a corrupt
    shard; `spec` (the dataset's `DatasetSpec`) gives `model.json` its classes and the
    TensorBoard images their colours."""
    self._dataset, self.shard_files, self._spec = dataset, shard_files, spec
    self._palette = visualize.label_palette(None if spec is None else spec.palette)

  def set_validation(self, dataset: tf.data.Dataset, split: str, class_names) -> None:
    """Scores the model on `dataset` (`input_pipeline.for_evaluation` batches of `split`) every
    `loop.eval_every` steps; a no-op while that is 0."""
    if not self.loop.eval_every:
      return
    self._validation = (dataset, split, tuple(class_names))
    self._evaluator = evaluation.Evaluator(self.model, len(class_names), strategy=self.strategy)

  # A checkpoint written before loss scaling existed has none: it keeps its initial value.
  optional_checkpoint_objects = ('loss_scale',)

  def checkpoint(self) -> tf.train.Checkpoint:
    """Model, optimizer (with its iteration count and momentum slots), loss scale and step."""
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                               loss_scale=self.loss_scale)

  def learning_rate(self) -> float:
    return float(self.schedule(self.step))

  # -- the loop's protocol (training/loop.py) ------------------------------------------------------
  @property
  def cadence(self) -> LoopSettings:
    return self.loop

  @property
  def images_per_step(self) -> int:
    return self.config.batch_size

  def datasets(self) -> dict:
    if self._dataset is None:
      raise ValueError('TrainTask: no inputs; call set_inputs first')
    return {'iterator': self._dataset}

  def description(self) -> dict:
    """What `model.json` holds for this model, its dataset and precision."""
    spec = self._spec
    description = run_description.model_description(
        self.model.genotype, self.model.filter_multiplier, self.model.num_classes,
        None if spec is None else spec.name, spec)
    if self.runtime is not None:
      description['precision'] = self.runtime.precision
    return description

  def run_description(self):
    return run_description.MODEL_FILE, self.description(), run_description.MODEL_CHECK

  def train_step(self, iterators) -> base_task.StepResult:
    images, labels = iterators.next('iterator')
    cross_entropy, l2, nonfinite, predictions = self.train_batch(images, labels)
    self._last = {'loss/cross_entropy': float(cross_entropy), 'loss/l2': float(l2)}
    return base_task.StepResult({'cross-entropy': self._last['loss/cross_entropy'],
                            'L2': self._last['loss/l2']}, int(float(nonfinite)),
                           images=images, labels=labels, predictions=predictions,
                           skipped_in_a_row=int(self.loss_scale.skipped_in_a_row.numpy()))

  def log_scalars(self, step: int) -> tuple[dict, str]:
    cross_entropy, l2 = self._last['loss/cross_entropy'], self._last['loss/l2']
    scalars = {**self._last, 'learning_rate': self.learning_rate(), **self.loss_scale.summary()}
    return scalars, (f' loss {cross_entropy + l2:.4f} (cross-entropy {cross_entropy:.4f}, '
                     f'L2 {l2:.4f}) lr {self.learning_rate():.5f}{self.loss_scale.describe()}')

  def after_step(self, workdir: str, step: int, result: base_task.StepResult, final: bool,
                 chief: bool) -> list[str]:
    if chief and (step % self.loop.image_summary_every == 0 or step == 1):
      local = self.strategy.experimental_local_results
      tf.summary.image('train/image | ground truth | prediction', visualize.side_by_side(
          local(result.images)[0], local(result.labels)[0],
          local(result.predictions)[0], self._palette), step=step, max_outputs=3)
    if self._validation and (step % self.loop.eval_every == 0
                             or step == self.config.total_steps):
      return [self._validate(workdir, step)]
    return []

  def _validate(self, workdir: str, step: int) -> str:
    """Scores the model on the validation split; keeps it in workdir/best/ when it is the best."""
    dataset, split, class_names = self._validation
    self._evaluator.metrics.reset()
    scores = self._evaluator.run(dataset)
    miou = scores['miou']
    tf.summary.scalar('val/miou', miou, step=step)
    tf.summary.text('val/per_class_iou', '\n'.join(
        f'    {name}: {100 * iou:.2f}' for name, iou in zip(class_names, scores['per_class_iou'])),
        step=step)
    best = best_weights.read_best(workdir)
    if best is None or miou > best['miou']:
      best_weights.save_best(self.model, workdir, {'step': step, 'miou': miou, 'split': split})
      note = 'best so far, kept in best/'
    else:
      note = f'best {100 * best["miou"]:.1f} at step {best["step"]}'
    return f'[{self.name}] step {step} val mIoU({split}) {100 * miou:.1f} ({note})'

  def finish(self, workdir: str, step: int, chief: bool) -> dict:
    return {'step': step, 'cross_entropy': self._last.get('loss/cross_entropy', float('nan')),
            'l2': self._last.get('loss/l2', float('nan')),
            'checkpoint': tf.train.latest_checkpoint(os.path.join(
                distribute.worker_workdir(self.strategy, workdir), checkpoints.CHECKPOINT_DIR))}

  # -- the step ----------------------------------------------------------------------------------
  def _distributed_step(self, images, labels):
    """One update; returns (cross-entropy, L2 loss, number of non-finite logits, predictions of
    each replica's batch).

    The non-finite count is what detects divergence: TensorFlow's softmax cross-entropy of NaN
    logits is not NaN (it came out as log(num_classes) on CPU), so the loss alone can hide it.
    """
    self.model.set_training_progress(
        tf.cast(self.step, tf.float32) / float(self.config.total_steps), self.step)
    cross_entropy, l2, nonfinite, predictions, gradients = self.strategy.run(
        self._gradients, args=(images, labels))
    self.loss_scale.apply(self.strategy, self._replica_update, (gradients,))
    self.step.assign_add(1)
    total = lambda x: self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None)
    return total(cross_entropy), total(l2), total(nonfinite), predictions

  def _replica_gradients(self, images, labels):
    """This replica's losses, non-finite logit count, predictions and (unscaled) gradients."""
    replicas = self.strategy.num_replicas_in_sync
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape, ops.xla_safe_resize() if self.config.jit_compile else (
        contextlib.nullcontext()):
      logits = self.model(images, training=True)
      fraction = losses.top_k_fraction(self.step, self.config.top_k_percent_pixels,
                                       self.config.hard_example_mining_step)
      cross_entropy = losses.segmentation_loss(labels, logits, replicas, top_k_fraction=fraction)
      l2 = tf.add_n(self.model.losses) / replicas if self.model.losses else tf.constant(0.0)
      loss = self.loss_scale.scale_loss(cross_entropy + l2)
    gradients = self.loss_scale.unscale(tape.gradient(loss, variables))
    nonfinite = tf.reduce_sum(tf.cast(~tf.math.is_finite(logits), tf.float32))
    return (cross_entropy, l2, nonfinite, tf.argmax(logits, -1, output_type=tf.int32),
            gradients)

  def _replica_update(self, gradients):
    # tf.identity puts each gradient on this replica's device (see search_task._update_fn).
    variables = self.model.trainable_variables
    self.optimizer.apply_gradients(zip([tf.identity(g) for g in gradients], variables))
