"""First-order bilevel architecture search (paper sec. 4.2 and 5.1).

The train set is split into trainA (weights w) and trainB (architecture alpha, beta); steps
alternate: w <- SGD(grad_w L_trainA), then alpha, beta <- Adam(grad_{alpha,beta} L_trainB), the
latter only after `arch_start_step` (the paper starts at epoch 20 of 40). Weight decay is L2 added
to the gradient, as in the paper (Keras optimizers' own weight decay is decoupled).

Start-up matters more than anything for a supernet on TensorFlow, so the step is split in two
kinds of `tf.function`: `_gradients` (forward + backward for all trainable variables, one graph,
traced and instantiated once and used by both steps) and two small update functions. The arch
step thereby also computes weight gradients it does not use; measured, that costs less than
building and instantiating a second large graph.
"""
from __future__ import annotations

import dataclasses
import os

import gin
import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.modeling import supernet
from official.autodeeplab.search import decode
from official.autodeeplab.training import losses
from official.autodeeplab.training import optimization
from official.autodeeplab.utils import visualize


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Optimisation settings of the search; defaults are the paper's.

  Attributes:
    total_steps: weight steps in the whole search (the cosine schedule's length).
    arch_start_step: first weight step after which architecture steps run.
    weight_lr: cosine schedule from weight_lr to weight_lr_min.
    weight_lr_min: see weight_lr.
    weight_momentum: SGD momentum.
    weight_decay: L2 on the weights, added to the gradient.
    arch_lr: Adam learning rate of alpha and beta.
    arch_weight_decay: L2 on alpha and beta, added to the gradient.
  """
  total_steps: int = 1000
  arch_start_step: int = 500
  weight_lr: float = 0.025
  weight_lr_min: float = 0.001
  weight_momentum: float = 0.9
  weight_decay: float = 3e-4
  arch_lr: float = 3e-3
  arch_weight_decay: float = 1e-3


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
      self.weight_optimizer = optimization.sgd(schedule, config.weight_momentum)
      self.arch_optimizer = keras.optimizers.Adam(config.arch_lr)
      # Slots before any trace: creating them inside a traced step is slow and retraces.
      self.weight_optimizer.build(self.model.weight_variables)
      self.arch_optimizer.build(self.model.arch_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='search_step')
    self._variables = self.model.weight_variables + self.model.arch_variables
    self._num_weights = len(self.model.weight_variables)
    self._gradients = tf.function(self._replica_gradients, reduce_retracing=True)
    self._apply_weights = self._update_fn(self.weight_optimizer, self.model.weight_variables,
                                          config.weight_decay)
    self._apply_arch = self._update_fn(self.arch_optimizer, self.model.arch_variables,
                                       config.arch_weight_decay)

  def checkpoint(self) -> tf.train.Checkpoint:
    """Everything needed to resume exactly: weights, alpha/beta, both optimisers, the step."""
    return tf.train.Checkpoint(model=self.model, weight_optimizer=self.weight_optimizer,
                               arch_optimizer=self.arch_optimizer, step=self.step)

  def _replica_gradients(self, images, labels):
    def fn(images, labels):
      with tf.GradientTape() as tape:
        logits = self.model(images, training=True)
        loss = losses.segmentation_loss(labels, logits, self.strategy.num_replicas_in_sync)
      return loss, tape.gradient(loss, self._variables)
    return self.strategy.run(fn, args=(images, labels))

  def _update_fn(self, optimizer, variables, weight_decay):
    """A compiled update: L2 added to the gradients, then the optimiser, on every replica."""
    def replica_update(grads):
      decayed = optimization.add_weight_decay(grads, variables, weight_decay)
      optimizer.apply_gradients(zip(decayed, variables))

    @tf.function
    def update(grads):
      self.strategy.run(replica_update, args=(grads,))
    return update

  def _loss(self, loss):
    return float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None))

  def weight_step(self, images, labels) -> float:
    """One SGD step on the weights with a trainA batch; returns the batch loss."""
    loss, grads = self._gradients(images, labels)
    self._apply_weights(grads[:self._num_weights])
    self.step.assign_add(1)
    return self._loss(loss)

  def arch_step(self, images, labels) -> float:
    """One Adam step on alpha and beta with a trainB batch; returns the batch loss."""
    loss, grads = self._gradients(images, labels)
    self._apply_arch(grads[self._num_weights:])
    return self._loss(loss)

  def arch_active(self) -> bool:
    return int(self.step.numpy()) >= self.config.arch_start_step


def run_search(task: SearchTask, train_a: tf.data.Dataset, train_b: tf.data.Dataset,
               num_steps: int, workdir: str, log_every: int = 10,
               checkpoint_every: int = 100, log=print,
               shard_files: list[str] | None = None) -> dict:
  """The search loop: alternate weight / arch steps, checkpoint, log, decode at the end.

  Resumes from the latest checkpoint in `workdir/checkpoints` (weights, alpha/beta, both
  optimisers, the step and both data iterators), writes TensorBoard scalars to
  `workdir/tensorboard`, and at the end `workdir/arch.npz` (raw alpha, beta and the normalised
  transition probabilities), `workdir/genotype.json` and `workdir/architecture.png`. Given `shard_files`, a corrupt shard
  is named in a UserInputError instead of TensorFlow's "corrupted record at N".
  """

  iter_a, iter_b = iter(task.strategy.experimental_distribute_dataset(train_a)), iter(
      task.strategy.experimental_distribute_dataset(train_b))
  checkpoint = task.checkpoint()
  if task.strategy.num_replicas_in_sync == 1:  # distributed iterators cannot be checkpointed
    checkpoint.iterator_a, checkpoint.iterator_b = iter_a, iter_b
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, 'checkpoints'), 3)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    log(f'[search] resumed from {manager.latest_checkpoint} at step {int(task.step.numpy())}')
  writer = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))
  weight_loss, arch_loss = float('nan'), None  # no arch step before arch_start_step
  while int(task.step.numpy()) < num_steps:
    images, labels = input_pipeline.next_checked(iter_a, shard_files)
    weight_loss = task.weight_step(images, labels)
    if task.arch_active():
      images, labels = input_pipeline.next_checked(iter_b, shard_files)
      arch_loss = task.arch_step(images, labels)
    step = int(task.step.numpy())
    if step % log_every == 0 or step == num_steps:
      with writer.as_default(step=step):
        tf.summary.scalar('loss/trainA', weight_loss)
        if arch_loss is not None:
          tf.summary.scalar('loss/trainB', arch_loss)
        tf.summary.scalar('learning_rate', task.weight_optimizer.learning_rate)
      arch_text = 'not started' if arch_loss is None else f'{arch_loss:.4f}'
      log(f'[search] step {step}/{num_steps} loss(trainA) {weight_loss:.4f} '
          f'loss(trainB) {arch_text}')
    if step % checkpoint_every == 0 or step == num_steps:
      manager.save(checkpoint_number=step)
  alpha, beta = (v.numpy() for v in task.model.arch_variables)
  arch_path = os.path.join(workdir, 'arch.npz')
  np.savez(arch_path + '.tmp.npz', alpha=alpha, beta=beta,
           transition_probabilities=decode.transition_probabilities(beta))
  os.replace(arch_path + '.tmp.npz', arch_path)
  genotype = decode.decode(alpha, beta, task.model.num_blocks)
  genotype.to_json(os.path.join(workdir, 'genotype.json'))
  visualize.plot_architecture(genotype, os.path.join(workdir, 'architecture.png'),
                              decode.transition_probabilities(beta),
                              f'search step {int(task.step.numpy())}')
  return {'step': int(task.step.numpy()), 'loss_trainA': weight_loss, 'loss_trainB': arch_loss,
          'genotype': genotype}


# gin configures these factories (not the Keras classes: gin on a Keras 3 Layer subclass breaks).
@gin.configurable
def build_supernet(num_classes: int, num_layers: int = 12, num_blocks: int = 5,
                   filter_multiplier: int = 8, recompute: bool = False, seed: int = 0):
  """The supernet of an experiment; see `supernet.Supernet` for the arguments."""
  return supernet.Supernet(num_classes, num_layers=num_layers, num_blocks=num_blocks,
                           filter_multiplier=filter_multiplier, recompute=recompute, seed=seed)


@gin.configurable
def search_config(**overrides) -> SearchConfig:
  """SearchConfig with the paper's defaults, overridden by gin bindings."""
  return dataclasses.replace(SearchConfig(), **overrides)
