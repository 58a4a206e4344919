"""First-order bilevel architecture search (paper sec. 4.2 and 5.1), as a task for `loop.run`.

The train set is split into trainA (weights w) and trainB (architecture alpha, beta), exactly half
each, by one rule for every source (`input_pipeline.split_in_halves`: examples ranked by the SHA-1
of their name); steps alternate: w <- SGD(grad_w L_trainA), then alpha, beta <- Adam(grad_{alpha,
beta} L_trainB), the latter only after `arch_start_step` (the paper starts at epoch 20 of 40).
Weight decay is L2 added to the gradient, as in the paper (Keras optimizers' own weight decay is
decoupled); for the weights it happens inside the in-place SGD update (`optimization.SGD`).

Start-up matters for a supernet on TensorFlow, so the step is split in two kinds of
`tf.function`: `_gradients` (forward + backward for all trainable variables, one graph, traced and
instantiated once) and two small update functions. By default the arch step uses that graph too and
computes weight gradients it does not use: for a short run that costs less than a second large
graph. A long run (`SearchConfig.arch_only_gradients`, on in the paper's gin) gives the arch step
its own `_arch_gradients` graph differentiating alpha and beta only.

Every `export_every` steps and at the end, `search_outputs.export_architecture` writes what the
search has found so far (arch.npz, genotype.json, architecture.png) and `arch_history` appends it
to the workdir's history (which `search_config.stop_when_stable` reads). A supernet built under
the mixed_float16 policy scales each step's loss with its own dynamic loss scale
(`loss_scale.py`), skipping updates whose gradients are not finite.
"""
from __future__ import annotations

import math
import typing

import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.search import cost
from official.autodeeplab.training import arch_history
from official.autodeeplab.training import base_task
from official.autodeeplab.training import distribute
from official.autodeeplab.training import evaluation
from official.autodeeplab.training import loss_scale
from official.autodeeplab.training import losses
from official.autodeeplab.training import optimization
from official.autodeeplab.training import search_outputs
from official.autodeeplab.training.experiment import Experiment
from official.autodeeplab.training.experiment import LoopSettings
from official.autodeeplab.utils import runtime as runtime_lib


class StepOutput(typing.NamedTuple):
  """What one weight or arch step reports: the batch loss, how many logits were not finite, and
  the predicted classes of each replica's batch."""
  loss: float
  nonfinite: int
  predictions: typing.Any


class SearchTask(base_task.Task):
  """The search: the supernet, both optimisers, trainA / trainB and the compiled steps.

  The model, the optimisers (with their slots, built before any trace) and the step counter are
  created inside the strategy's scope. Inputs come from `build_inputs` (or `set_inputs`); then
  `loop.run(task, workdir, experiment.total_steps)` runs the search.

  Args:
    experiment: the run's configuration (`experiment.task` a `SearchConfig`: the optimisation;
      `.data`: the input; `.loop`: how often the loop logs, checkpoints and exports).
    model_fn: builds the `Supernet` (called inside the strategy's scope).
    strategy: a tf.distribute strategy (default: the current one).
    runtime: the process's `runtime.Runtime` (whether the step's loops stay functional).
  """

  name = 'search'
  divergence_hint = 'Lower search_config.weight_lr / arch_lr'

  def __init__(self, experiment: Experiment, model_fn,
               strategy: tf.distribute.Strategy | None = None,
               runtime: runtime_lib.Runtime | None = None):
    self.experiment, self.config, self.settings = experiment, experiment.task, experiment.loop
    config = self.config
    self.runtime = runtime or runtime_lib.Runtime()
    self.strategy = strategy or tf.distribute.get_strategy()
    with self.strategy.scope():
      self.model = model_fn()
      self.model.build((None, None, None, self.model.input_channels))
      schedule = optimization.cosine_schedule(config.weight_lr, config.total_steps,
                                              config.weight_lr_min)
      # The weights' L2 is applied inside the (in-place) SGD update; alpha/beta's below.
      self.weight_optimizer = optimization.sgd(schedule, config.weight_momentum,
                                               l2=config.weight_decay)
      self.arch_optimizer = keras.optimizers.Adam(config.arch_lr, beta_1=config.arch_beta_1,
                                                  beta_2=config.arch_beta_2)
      # Slots before any trace: creating them inside a traced step is slow and retraces.
      self.weight_optimizer.build(self.model.weight_variables)
      self.arch_optimizer.build(self.model.arch_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='search_step')
      self.metrics = evaluation.SegmentationMetrics(self.model.num_classes, name='trainB')
      float16 = self.model.compute_dtype == 'float16'
      self.loss_scales = {name: loss_scale.LossScale(float16, name=f'{name}_loss_scale')
                          for name in ('weight', 'arch')}
    self._variables = self.model.weight_variables + self.model.arch_variables
    self._num_weights = len(self.model.weight_variables)
    self._gradients = tf.function(
        lambda images, labels, scale=None: self._replica_gradients(
            images, labels, self._variables, scale), reduce_retracing=True)
    self._arch_gradients = tf.function(
        lambda images, labels, scale=None: self._replica_gradients(
            images, labels, self.model.arch_variables, scale), reduce_retracing=True)
    self._apply_weights = self._update_fn(self.weight_optimizer, self.model.weight_variables,
                                          0.0, self.loss_scales['weight'])
    self._apply_arch = self._update_fn(self.arch_optimizer, self.model.arch_variables,
                                       config.arch_weight_decay, self.loss_scales['arch'])
    self.cost_model = search_outputs.cost_model(config, self.model)
    self._cost = tf.function(self._cost_term) if config.cost_weight else None
    self._update_metrics = tf.function(
        lambda labels, predictions: self.strategy.run(self.metrics.update,
                                                      args=(labels, predictions)))
    self._inputs = None
    self.shard_files, self.steps_per_epoch, self.half_sizes = None, None, None
    self._losses = {}
    self._found = None
    self._confusion = {'log': 0, 'export': 0}  # trainB confusion since the last line / export
    self._stop = None
    self._sharpness = None  # the Hessian probe (track_sharpness), built at the first export

  # -- inputs ------------------------------------------------------------------------------------
  def build_inputs(self, files: list[str] | None = None, examples: tuple | None = None,
                   seed: int = 0, image=None) -> None:
    """trainA / trainB (`experiment.data`) of TFRecord shards (`files`, whose images `image`
    describes: a `datasets.ImageSpec`) or of in-memory (images, labels, names) `examples`,
    split by `input_pipeline.split_in_halves` either way."""
    data = self.experiment.data
    train_a, train_b, counts = input_pipeline.search_halves(
        data.batch_size, data.crop_size, data.min_scale, data.max_scale, files, examples, seed,
        **({} if image is None else {'image': image}))
    self.set_inputs(train_a, train_b, data.batch_size, counts, files)

  def set_inputs(self, train_a: tf.data.Dataset, train_b: tf.data.Dataset, batch_size: int,
                 half_sizes: tuple[int, int] | None = None,
                 shard_files: list[str] | None = None) -> None:
    """Batches of trainA and trainB (`batch_size` images each); `half_sizes` (images per half)
    gives the progress line its epochs."""
    self._inputs = {'iterator_a': train_a, 'iterator_b': train_b}
    self.batch_size, self.half_sizes, self.shard_files = batch_size, half_sizes, shard_files
    self.steps_per_epoch = math.ceil(half_sizes[0] / batch_size) if half_sizes else None

  # -- the loop's protocol (training/loop.py) ------------------------------------------------------
  @property
  def cadence(self) -> LoopSettings:
    return self.settings

  @property
  def images_per_step(self) -> int:
    both = self.config.arch_start_step < self.config.total_steps
    return self.batch_size * (2 if both else 1)

  def datasets(self) -> dict:
    if self._inputs is None:
      raise ValueError('SearchTask: no inputs; call build_inputs or set_inputs first')
    return self._inputs

  optional_checkpoint_objects = ('weight_loss_scale', 'arch_loss_scale')  # older ones lack them

  def checkpoint(self) -> tf.train.Checkpoint:
    """Everything to resume exactly: weights, alpha/beta, optimisers, loss scales, the step."""
    return tf.train.Checkpoint(model=self.model, weight_optimizer=self.weight_optimizer,
                               arch_optimizer=self.arch_optimizer, step=self.step,
                               **{scale.name: scale for scale in self.loss_scales.values()})

  def run_description(self):
    # (supernet.json written before images had channels has none: RGB, not compared)
    return (search_outputs.SUPERNET_FILE, self.model.description(),
            {'optional': ('input_channels',)})

  def train_step(self, iterators) -> base_task.StepResult:
    """One weight step on a trainA batch, then (once active) one arch step on a trainB batch."""
    images, labels = iterators.next('iterator_a')
    loss, nonfinite, _ = self.weight_step(images, labels)
    self._losses['loss/trainA'] = loss
    if not math.isfinite(loss) or nonfinite:
      return base_task.StepResult({'trainA': loss}, nonfinite, 'the trainA loss')
    if not self.arch_active():
      return base_task.StepResult({'trainA': loss}, skipped_in_a_row=self._skipped_in_a_row())
    images, labels = iterators.next('iterator_b')
    loss, nonfinite, predictions = self.arch_step(images, labels)
    self._losses['loss/trainB'] = loss
    if math.isfinite(loss) and not nonfinite:
      self._update_metrics(labels, predictions)
    return base_task.StepResult({'trainB': loss}, nonfinite, 'the trainB loss',
                           skipped_in_a_row=self._skipped_in_a_row())

  def log_scalars(self, step: int) -> tuple[dict, str]:
    """Both losses, the trainB mIoU of the arch steps since the last line, the learning rate."""
    scalars = dict(self._losses)
    miou = self._trainb_miou('log')
    if miou is not None:
      scalars['miou/trainB'] = miou
    scalars['learning_rate'] = float(self.weight_optimizer.learning_rate)
    for scale in self.loss_scales.values():
      scalars.update(scale.summary())
    epoch = f' epoch {step / self.steps_per_epoch:.2f}' if self.steps_per_epoch else ''
    arch = scalars.get('loss/trainB')
    text = (f'{epoch} loss(trainA) {scalars["loss/trainA"]:.4f} loss(trainB) '
            f'{"not started" if arch is None else f"{arch:.4f}"}'
            f'{"" if miou is None else f" mIoU(trainB) {100 * miou:.1f}"}'
            f'{"".join(scale.describe() for scale in self.loss_scales.values())}')
    return scalars, text

  def after_step(self, workdir: str, step: int, result: base_task.StepResult, final: bool,
                 chief: bool) -> None:
    if step % self.settings.export_every == 0 or final:
      # Read on every worker: the metric's read is a collective across the replicas.
      miou = self._trainb_miou('export')
      if chief:
        self._export(workdir, step, miou)
      if not final and (self.config.stop_when_stable or self.config.stop_on_sharpness):
        self._agree_on_stop(chief)

  def stop_reason(self, workdir: str) -> str | None:
    """Why the search ends before num_steps (search_config.stop_when_stable), or None; a resumed
    run finds its count in the workdir's history."""
    config = self.config
    if self._stop is None and self._found is None and (config.stop_when_stable or
                                                       config.stop_on_sharpness):
      self._stop, _ = self._stops(arch_history.read(workdir))
    return self._stop

  def finish(self, workdir: str, step: int, chief: bool) -> dict:
    if self._found is None and chief:  # resumed at the end: nothing was left to do
      self._export(workdir, step, None)
    return {'step': step, 'loss_trainA': self._losses.get('loss/trainA', math.nan),
            'loss_trainB': self._losses.get('loss/trainB'), 'genotype': self._found,
            'stopped': self._stop}

  def _export(self, workdir: str, step: int, miou: float | None) -> None:
    """The export files, the history record and the stop check; `miou`: trainB's since the
    previous export."""
    epoch = step / self.steps_per_epoch if self.steps_per_epoch else None
    latency = self.cost_model if isinstance(self.cost_model, cost.Latency) else None
    measured = self._measure_sharpness() if self.config.track_sharpness else None
    self._found = search_outputs.export_and_record(self.model, self.config, workdir, step, epoch,
                                                   miou, latency, measured)
    self._stop, kept = self._stops(arch_history.read(workdir))
    if kept is not None:
      self._found = search_outputs.keep_genotype(workdir, kept)

  def _stops(self, records: list[dict]) -> tuple:
    """(why the search stops now, or None; the record whose genotype a sharpness stop keeps,
    or None): search_config.stop_when_stable first, then stop_on_sharpness."""
    config = self.config
    reason = arch_history.stop_reason(records, config.arch_start_step, config.stop_when_stable)
    sharp = arch_history.sharpness_stop(records, config.arch_start_step, config.stop_on_sharpness)
    return sharp if reason is None and sharp is not None else (reason, None)

  def _measure_sharpness(self):
    """The dominant eigenvalue of the architecture Hessian on the first trainB batch (the same
    batch at every export and after a resume: the dataset's seeded start)."""
    from official.autodeeplab.training import sharpness
    if self._sharpness is None:
      images, labels = next(iter(self.datasets()['iterator_b']))
      self._sharpness = sharpness.Probe(self.model, images, labels,
                                        self.config.sharpness_iterations)
    return self._sharpness.measure()

  def _agree_on_stop(self, chief: bool) -> None:
    """Every worker stops at the same step: the chief's decision (from its history) is summed
    over the replicas of all workers."""
    vote = tf.constant(int(chief and self._stop is not None), tf.int32)
    votes = self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(lambda: vote),
                                 axis=None)
    if int(votes) and self._stop is None:
      self._stop = 'the chief found the decoded architecture stable'

  def _trainb_miou(self, reader: str) -> float | None:
    """trainB mIoU since `reader` ('log' line or 'export') last asked; the metric variables are
    read once and reset, their counts kept for the other reader."""
    confusion = self.metrics.confusion_matrix()  # read once: the replicas' copies are summed
    self.metrics.reset()
    for name in self._confusion:
      self._confusion[name] = self._confusion[name] + confusion
    total, self._confusion[reader] = self._confusion[reader], 0
    return evaluation.scores(total)['miou'] if np.any(total) else None

  # -- the steps ---------------------------------------------------------------------------------
  def _replica_gradients(self, images, labels, variables, scale=None):
    """Loss, non-finite logits, predictions and gradients per replica; with a loss `scale`
    (float16), of the scaled loss, the gradients divided back."""
    def fn(images, labels):
      with distribute.functional_while_loops(self.runtime.functional_loops):
        with tf.GradientTape() as tape:
          logits = self.model(images, training=True)
          loss = losses.segmentation_loss(labels, logits, self.strategy.num_replicas_in_sync)
          scaled = loss if scale is None else loss * scale
        # TensorFlow's cross-entropy of NaN logits can come out finite: count them as well.
        nonfinite = tf.reduce_sum(tf.cast(~tf.math.is_finite(logits), tf.float32))
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        grads = tape.gradient(scaled, variables)
        return loss, nonfinite, predictions, grads if scale is None else [g / scale for g in grads]
    return self.strategy.run(fn, args=(images, labels))

  def _update_fn(self, optimizer, variables, weight_decay, scale: loss_scale.LossScale):
    """A compiled update: L2 added to the gradients (and `extra` ones, the same on every replica:
    the cost term's), then the optimiser, on every replica; skipped when `scale` finds a gradient
    that is not finite."""
    replicas = self.strategy.num_replicas_in_sync

    def replica_update(grads, extra):
      # tf.identity puts each gradient on this replica's device (no copy): Keras all-reduces the
      # gradients, and under MultiWorkerMirroredStrategy a bare function argument has no device
      # ("destinations can not be empty").
      grads = [tf.identity(g) for g in grads]
      if extra is not None:  # summed over the replicas by the all-reduce: a share each
        grads = [g + e / replicas for g, e in zip(grads, extra)]
      decayed = optimization.add_weight_decay(grads, variables, weight_decay)
      optimizer.apply_gradients(zip(decayed, variables))

    @tf.function
    def update(grads, extra=None):
      scale.apply(self.strategy, replica_update, (grads, extra))
    return update

  def _cost_term(self):
    """(the expected cost: cells' multiply-adds or latency, the gradients of the cost term for
    alpha and beta)."""
    config, model = self.config, self.model
    with tf.GradientTape() as tape:
      expected = self.cost_model.expected(model.alpha, model.transition_probabilities())
      penalty = config.cost_weight * tf.maximum(0.0, tf.math.log(expected / config.cost_target))
    return expected, tape.gradient(penalty, model.arch_variables)

  def _output(self, loss, nonfinite, predictions) -> StepOutput:
    total = lambda x: float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None))
    return StepOutput(total(loss), int(total(nonfinite)), predictions)

  def weight_step(self, images, labels) -> StepOutput:
    """One SGD step on the weights with a trainA batch."""
    loss, nonfinite, predictions, grads = self._gradients(images, labels,
                                                          *self._scale_of('weight'))
    self._apply_weights(grads[:self._num_weights])
    self.step.assign_add(1)
    return self._output(loss, nonfinite, predictions)

  def arch_step(self, images, labels) -> StepOutput:
    """One Adam step on alpha and beta with a trainB batch."""
    if self.config.arch_only_gradients:
      loss, nonfinite, predictions, grads = self._arch_gradients(images, labels,
                                                                 *self._scale_of('arch'))
    else:
      loss, nonfinite, predictions, grads = self._gradients(images, labels,
                                                            *self._scale_of('arch'))
      grads = grads[self._num_weights:]
    if self._cost is None:
      self._apply_arch(grads)
    else:
      expected, cost_grads = self._cost()
      self._losses[f'cost/expected_{self.cost_model.key}'] = float(expected)
      self._apply_arch(grads, cost_grads)
    return self._output(loss, nonfinite, predictions)

  def _scale_of(self, name: str) -> tuple:
    """The loss scale argument of the gradient functions: none unless float16."""
    scale = self.loss_scales[name]
    return (tf.convert_to_tensor(scale.scale),) if scale.enabled else ()

  def _skipped_in_a_row(self) -> int:
    return max(int(scale.skipped_in_a_row.numpy()) for scale in self.loss_scales.values())

  def arch_active(self) -> bool:
    return int(self.step.numpy()) >= self.config.arch_start_step

  def arch_steps_until(self, step: int) -> int:
    """How many architecture steps a search that ends at `step` has run: one per weight step
    from `arch_start_step` on (from the first step when it is 0)."""
    return max(0, step - max(self.config.arch_start_step, 1) + 1)
