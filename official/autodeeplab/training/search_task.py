"""First-order bilevel architecture search (paper sec. 4.2 and 5.1).

The train set is split into trainA (weights w) and trainB (architecture alpha, beta), exactly half
each (`input_pipeline.split_in_halves`); steps alternate: w <- SGD(grad_w L_trainA), then
alpha, beta <- Adam(grad_{alpha,beta} L_trainB), the latter only after `arch_start_step` (the paper
starts at epoch 20 of 40). Weight decay is L2 added to the gradient, as in the paper (Keras
optimizers' own weight decay is decoupled); for the weights it happens inside the in-place SGD
update (`optimization.SGD`).

Start-up matters for a supernet on TensorFlow, so the step is split in two kinds of
`tf.function`: `_gradients` (forward + backward for all trainable variables, one graph, traced and
instantiated once) and two small update functions. By default the arch step uses that graph too and
computes weight gradients it does not use: for a short run that costs less than a second large
graph. A long run (`SearchConfig.arch_only_gradients`, on in the paper's gin) gives the arch step
its own `_arch_gradients` graph differentiating alpha and beta only (what that costs and saves:
`SearchConfig.arch_only_gradients`).

`run_search` is the loop (checkpoints, progress, TensorBoard, SIGTERM, divergence);
`export_architecture` writes what the search has found so far (arch.npz, genotype.json,
architecture.png), every `export_every` steps and at the end; `decode_checkpoint` does the same
from any workdir's latest checkpoint without training.
"""
from __future__ import annotations

import io
import math
import os
import typing

import gin
import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import supernet
from official.autodeeplab.search import decode
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from official.autodeeplab.training import distribute
from official.autodeeplab.training import evaluation
from official.autodeeplab.training import losses
from official.autodeeplab.training import optimization
from official.autodeeplab.training import run_state
from official.autodeeplab.training.search_settings import LoopSettings
from official.autodeeplab.training.search_settings import SearchConfig
from official.autodeeplab.utils import cpu_runtime
from official.autodeeplab.utils import visualize

SUPERNET_FILE = 'supernet.json'  # what the supernet of a search workdir is (to rebuild it)


class StepOutput(typing.NamedTuple):
  """What one search step reports: the batch loss, how many logits were not finite, and the
  predicted classes of each replica's batch."""
  loss: float
  nonfinite: int
  predictions: typing.Any


class DivergedError(UserInputError):
  """The loss or the logits stopped being finite; the message names the step."""


class SearchTask:
  """Holds the supernet, both optimisers and the compiled steps.

  The model, the optimisers (with their slots, built before any trace) and the step counter are
  created inside the strategy's scope.

  Args:
    model_fn: builds the `Supernet` (called inside the strategy's scope).
    config: optimisation settings.
    strategy: a tf.distribute strategy (default: the current one).
  """

  def __init__(self, model_fn, config: SearchConfig = SearchConfig(),
               strategy: tf.distribute.Strategy | None = None):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    with self.strategy.scope():
      self.model = model_fn()
      self.model.build((None, None, None, 3))
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
    self._variables = self.model.weight_variables + self.model.arch_variables
    self._num_weights = len(self.model.weight_variables)
    self._gradients = tf.function(
        lambda images, labels: self._replica_gradients(images, labels, self._variables),
        reduce_retracing=True)
    self._arch_gradients = tf.function(
        lambda images, labels: self._replica_gradients(images, labels,
                                                       self.model.arch_variables),
        reduce_retracing=True)
    self._apply_weights = self._update_fn(self.weight_optimizer, self.model.weight_variables,
                                          weight_decay=0.0)
    self._apply_arch = self._update_fn(self.arch_optimizer, self.model.arch_variables,
                                       config.arch_weight_decay)

  def checkpoint(self) -> tf.train.Checkpoint:
    """Everything needed to resume exactly: weights, alpha/beta, both optimisers, the step."""
    return tf.train.Checkpoint(model=self.model, weight_optimizer=self.weight_optimizer,
                               arch_optimizer=self.arch_optimizer, step=self.step)

  def _replica_gradients(self, images, labels, variables):
    def fn(images, labels):
      # Small crops: the trellis loop and its gradient stay functional (utils/cpu_runtime.py).
      with distribute.functional_while_loops(cpu_runtime.functional_loops(images.shape[1])):
        with tf.GradientTape() as tape:
          logits = self.model(images, training=True)
          loss = losses.segmentation_loss(labels, logits, self.strategy.num_replicas_in_sync)
        # TensorFlow's cross-entropy of NaN logits can come out finite: count them as well.
        nonfinite = tf.reduce_sum(tf.cast(~tf.math.is_finite(logits), tf.float32))
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        return loss, nonfinite, predictions, tape.gradient(loss, variables)
    return self.strategy.run(fn, args=(images, labels))

  def _update_fn(self, optimizer, variables, weight_decay):
    """A compiled update: L2 added to the gradients, then the optimiser, on every replica."""
    def replica_update(grads):
      # tf.identity puts each gradient on this replica's device (no copy): Keras all-reduces the
      # gradients, and under MultiWorkerMirroredStrategy a bare function argument has no device
      # ("destinations can not be empty").
      grads = [tf.identity(g) for g in grads]
      decayed = optimization.add_weight_decay(grads, variables, weight_decay)
      optimizer.apply_gradients(zip(decayed, variables))

    @tf.function
    def update(grads):
      self.strategy.run(replica_update, args=(grads,))
    return update

  def _output(self, loss, nonfinite, predictions) -> StepOutput:
    total = lambda x: float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None))
    return StepOutput(total(loss), int(total(nonfinite)), predictions)

  def weight_step(self, images, labels) -> StepOutput:
    """One SGD step on the weights with a trainA batch."""
    loss, nonfinite, predictions, grads = self._gradients(images, labels)
    self._apply_weights(grads[:self._num_weights])
    self.step.assign_add(1)
    return self._output(loss, nonfinite, predictions)

  def arch_step(self, images, labels) -> StepOutput:
    """One Adam step on alpha and beta with a trainB batch."""
    if self.config.arch_only_gradients:
      loss, nonfinite, predictions, grads = self._arch_gradients(images, labels)
    else:
      loss, nonfinite, predictions, grads = self._gradients(images, labels)
      grads = grads[self._num_weights:]
    self._apply_arch(grads)
    return self._output(loss, nonfinite, predictions)

  def arch_active(self) -> bool:
    return int(self.step.numpy()) >= self.config.arch_start_step


def export_architecture(model: supernet.Supernet, workdir: str,
                        step: int) -> genotype_lib.Genotype:
  """Writes what the search has found at `step`, each file atomically: `arch.npz` (raw alpha,
  beta and the transition probabilities), `genotype.json` (cell + Viterbi path) and
  `architecture.png`. Returns the genotype."""
  alpha, beta = (v.numpy() for v in model.arch_variables)
  transitions = decode.transition_probabilities(beta)
  arch_path = os.path.join(workdir, 'arch.npz')
  tmp = f'{arch_path}.tmp-{os.getpid()}.npz'
  np.savez(tmp, alpha=alpha, beta=beta, transition_probabilities=transitions, step=step)
  os.replace(tmp, arch_path)
  found = decode.decode(alpha, beta, model.num_blocks)
  found.to_json(os.path.join(workdir, 'genotype.json'))
  visualize.plot_architecture(found, os.path.join(workdir, 'architecture.png'), transitions,
                              f'search step {step}')
  return found


def _heatmap_png(values: np.ndarray, title: str, xlabels, ylabel: str) -> bytes:
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(max(4, 0.6 * values.shape[1] + 2), max(3, 0.3 * len(values))))
  image = ax.imshow(values, cmap='viridis', vmin=0, vmax=1, aspect='auto')
  ax.set_xticks(range(values.shape[1]), xlabels, rotation=45, ha='right', fontsize=7)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=90)
  plt.close(fig)
  return buffer.getvalue()


def architecture_summaries(model: supernet.Supernet, found: genotype_lib.Genotype,
                           step: int) -> None:
  """TensorBoard: softmax(alpha) [edges x ops] and the transition probabilities [layers x (level,
  transition)] as heatmaps, and the decoded architecture as text (in the default writer)."""
  alpha = tf.nn.softmax(model.alpha).numpy()
  transitions = model.transition_probabilities().numpy().reshape(model.num_layers, -1)
  columns = [f'{k}:{t}' for k in range(model.num_levels) for t in space.TRANSITIONS]
  for name, values, xlabels, ylabel in (
      ('architecture/softmax_alpha', alpha, space.PRIMITIVES, 'edge'),
      ('architecture/transition_probabilities', transitions, columns, 'layer')):
    png = _heatmap_png(values, f'{name.split("/")[1]} at step {step}', xlabels, ylabel)
    tf.summary.image(name, tf.io.decode_png(png, channels=3)[tf.newaxis], step=step)
  tf.summary.text('architecture/decoded', '    ' + found.describe().replace('\n', '\n    '),
                  step=step)


def _local(strategy, value) -> np.ndarray:
  return np.concatenate([v.numpy().reshape(-1) for v in strategy.experimental_local_results(value)])


def run_search(task: SearchTask, train_a: tf.data.Dataset, train_b: tf.data.Dataset,
               num_steps: int, workdir: str, settings: LoopSettings = LoopSettings(),
               log=print, shard_files: list[str] | None = None, images_per_step: int = 2,
               steps_per_epoch: int | None = None, description: dict | None = None,
               operative_config: str | None = None) -> dict:
  """The search loop: alternate weight / arch steps until `num_steps`.

  Resumes from the latest checkpoint in `workdir/checkpoints` (weights, alpha/beta, both
  optimisers, the step and, on one replica, both data iterators); a checkpoint of another
  supernet is refused with one line (run_state.restore). Writes TensorBoard events to
  `workdir/tensorboard` and a progress line every `log_every` steps (step, epoch, both losses,
  trainB mIoU of the arch steps' predictions since the last line, images/s, ETA), checkpoints every
  `checkpoint_every` steps, and `export_architecture` + architecture summaries every
  `export_every` steps and at the end. On SIGTERM it checkpoints and raises
  `run_state.Preempted`; a non-finite loss or logits raise `DivergedError` before anything of that
  step is saved. `description` goes to `workdir/supernet.json` (checked on resume), the operative
  gin config to `workdir/operative_config.gin`. Given `shard_files`, a corrupt shard is named.
  """
  iter_a, iter_b = iter(task.strategy.experimental_distribute_dataset(train_a)), iter(
      task.strategy.experimental_distribute_dataset(train_b))
  checkpoint = task.checkpoint()
  if task.strategy.num_replicas_in_sync == 1:  # distributed iterators cannot be checkpointed
    checkpoint.iterator_a, checkpoint.iterator_b = iter_a, iter_b
  workdir_here = run_state.worker_workdir(task.strategy, workdir)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir_here,
                                                                run_state.CHECKPOINT_DIR), 3)
  if run_state.restore(checkpoint, manager.latest_checkpoint, workdir):
    log(f'[search] resumed from {manager.latest_checkpoint} at step {int(task.step.numpy())}')
  chief = workdir_here == workdir
  if chief and description is not None:
    run_state.check_or_write_json(workdir, SUPERNET_FILE, description)
  if chief and operative_config is not None:
    run_state.write_text(os.path.join(workdir, 'operative_config.gin'), operative_config)
  writer = tf.summary.create_file_writer(os.path.join(workdir_here, 'tensorboard'))
  meter = run_state.ProgressMeter(num_steps, images_per_step)
  confusion = np.zeros([task.model.num_classes] * 2, np.int64)
  weight_loss, arch_loss, step = math.nan, None, int(task.step.numpy())
  found = None
  with run_state.StopOnSigterm() as stop, writer.as_default():
    while step < num_steps:
      images, labels = input_pipeline.next_checked(iter_a, shard_files)
      out_a = task.weight_step(images, labels)
      weight_loss, step = out_a.loss, int(task.step.numpy())
      _check_finite(out_a, step, 'trainA', manager)
      if task.arch_active():
        images, labels = input_pipeline.next_checked(iter_b, shard_files)
        out_b = task.arch_step(images, labels)
        arch_loss = out_b.loss
        _check_finite(out_b, step, 'trainB', manager)
        confusion += _confusion(_local(task.strategy, labels),
                                _local(task.strategy, out_b.predictions), confusion.shape[0])
      if step % settings.log_every == 0 or step == num_steps:
        speed = meter.report(step)
        miou = evaluation.scores(confusion)['miou'] if confusion.any() else None
        confusion[:] = 0
        tf.summary.scalar('loss/trainA', weight_loss, step=step)
        if arch_loss is not None:
          tf.summary.scalar('loss/trainB', arch_loss, step=step)
        if miou is not None:
          tf.summary.scalar('miou/trainB', miou, step=step)
        tf.summary.scalar('learning_rate', task.weight_optimizer.learning_rate, step=step)
        if meter.images_per_s():
          tf.summary.scalar('images_per_s', meter.images_per_s(), step=step)
        epoch = f' epoch {step / steps_per_epoch:.2f}' if steps_per_epoch else ''
        arch_text = 'not started' if arch_loss is None else f'{arch_loss:.4f}'
        miou_text = '' if miou is None else f' mIoU(trainB) {100 * miou:.1f}'
        log(f'[search] step {step}/{num_steps}{epoch} loss(trainA) {weight_loss:.4f} '
            f'loss(trainB) {arch_text}{miou_text}{speed}')
      if step % settings.checkpoint_every == 0 or step == num_steps or stop.requested:
        manager.save(checkpoint_number=step)
      if chief and (step % settings.export_every == 0 or step == num_steps or stop.requested):
        found = export_architecture(task.model, workdir, step)
        architecture_summaries(task.model, found, step)
        writer.flush()
      if stop.requested:
        raise run_state.preempted('search', step, manager)
    if found is None and chief:  # resumed at the end, or nothing left to do
      found = export_architecture(task.model, workdir, step)
      architecture_summaries(task.model, found, step)
  writer.flush()
  return {'step': step, 'loss_trainA': weight_loss, 'loss_trainB': arch_loss, 'genotype': found}


def _check_finite(out: StepOutput, step: int, half: str, manager) -> None:
  if math.isfinite(out.loss) and not out.nonfinite:
    return
  kept = run_state.kept_checkpoint(manager)
  raise DivergedError(
      f'step {step}: the {half} loss is not finite ({out.loss}, {out.nonfinite} NaN/inf logits); '
      f'search stopped, nothing of this step saved, last checkpoint kept: {kept}. Lower '
      'search_config.weight_lr / arch_lr')


def _confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  valid = labels != input_pipeline.IGNORE_LABEL
  index = labels[valid].astype(np.int64) * num_classes + predictions[valid]
  return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def decode_checkpoint(workdir: str) -> tuple[genotype_lib.Genotype, np.ndarray, int]:
  """(genotype, transition probabilities, step) of a search workdir's latest checkpoint, without
  training: the supernet is rebuilt from `supernet.json` and only restored."""
  description = run_state.read_json(workdir, SUPERNET_FILE, 'is it a tools.search workdir?')
  path = run_state.latest_checkpoint(workdir)
  try:
    model = supernet.Supernet(**{k: int(description[k]) for k in (
        'num_classes', 'num_layers', 'num_blocks', 'filter_multiplier')})
  except (KeyError, TypeError, ValueError) as e:
    raise UserInputError(f'{os.path.join(workdir, SUPERNET_FILE)}: unreadable ({e})') from None
  model.build((None, None, None, 3))
  step = tf.Variable(0, dtype=tf.int64)
  run_state.restore(tf.train.Checkpoint(model=model, step=step), path, workdir, partial=True)
  alpha, beta = (v.numpy() for v in model.arch_variables)
  return (decode.decode(alpha, beta, model.num_blocks), decode.transition_probabilities(beta),
          int(step.numpy()))


# gin configures these factories (not the Keras classes: gin on a Keras 3 Layer subclass breaks).
@gin.configurable
def build_supernet(num_classes: int, num_layers: int = 12, num_blocks: int = 5,
                   filter_multiplier: int = 8, recompute: bool = False, seed: int = 0):
  """The supernet of an experiment; see `supernet.Supernet` for the arguments."""
  return supernet.Supernet(num_classes, num_layers=num_layers, num_blocks=num_blocks,
                           filter_multiplier=filter_multiplier, recompute=recompute, seed=seed)
