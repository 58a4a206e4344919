"""A discrete cell built from a genotype's cell, as in Google's released 'hnasnet' code.

Inputs: H^{l-1} (already resized x2 by the backbone when the path moves to a finer level) gets
ReLU, 1x1 conv to `filters` (= F * 2**level), BN; H^{l-2} is bilinearly resized to H^{l-1}'s
resolution and, if its channel count differs, gets ReLU, 1x1 conv, BN. When the path moves to a
coarser level, the ops reading those two inputs run with stride 2 (an atrous op halves its input bilinearly and uses
rate 1); ops reading earlier blocks run with stride 1. Block = sum of its two ops; cell output =
concat of all blocks.

Scheduled drop path (NASNet, as in Google's code): during training each op output (but the
identity) is dropped per example with probability 1 - keep, where
keep = 1 - progress * (cell_index + 1) / num_cells * (1 - drop_path_keep_prob), progress being the
fraction of training done; kept outputs are scaled by 1 / keep. At inference it is the identity.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking


@keras.saving.register_keras_serializable('autodeeplab')
def hash_uniform(seed: tf.Tensor, count) -> tf.Tensor:
  """`count` floats in [0, 1) from an integer hash of (seed[0], seed[1], index): Weyl sums
  mixed by two rounds of MurmurHash3's finaliser, in uint32 arithmetic.

  Why not `tf.random.stateless_uniform`: under XLA (`train_config.jit_compile`) it draws other
  numbers than TensorFlow's kernels for the same seed, even with the Philox algorithm named and
  the same key and counter (TF 2.21, CPU), so a compiled step would drop other paths. Integer
  arithmetic is exact everywhere.
  """
  seed = tf.cast(seed, tf.uint32)
  constant = lambda value: tf.constant(value, tf.uint32)
  h = (seed[0] * constant(0x9E3779B1) + seed[1] * constant(0x85EBCA77)
       + tf.cast(tf.range(count), tf.uint32) * constant(0xC2B2AE3D))
  for _ in range(2):
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, constant(16))) * constant(0x85EBCA6B)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, constant(13))) * constant(0xC2B2AE35)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, constant(16)))
  return tf.cast(tf.bitwise.right_shift(h, constant(8)), tf.float32) / float(2**24)


class DropPath(keras.layers.Layer):
  """Drops whole examples' paths with the scheduled probability; identity at inference.

  The masks come from `hash_uniform` of (this layer's `seed`, the replica, the training step),
  so a resumed run draws exactly the masks an uninterrupted one would, compiled or not.

  Args:
    layer_ratio: (cell_index + 1) / num_cells.
    keep_prob: drop_path_keep_prob at the end of training (1.0 disables drop path).
    seed: distinguishes this layer's masks from the other DropPath layers'.
  """

  def __init__(self, layer_ratio: float = 1.0, keep_prob: float = 1.0, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.layer_ratio, self.keep_prob, self.seed = layer_ratio, keep_prob, seed
    # Fraction of training done and the step, set by the training loop for every DropPath of a
    # model (`Segmenter.set_training_progress`).
    self.progress = self.add_weight(shape=(), initializer='zeros', trainable=False,
                                    name='progress')
    self.step = self.add_weight(shape=(), initializer='zeros', trainable=False, dtype='int64',
                                name='step')

  def current_keep_prob(self):
    return 1.0 - tf.minimum(self.progress, 1.0) * self.layer_ratio * (1.0 - self.keep_prob)

  def call(self, x, training=False):
    if not training or self.keep_prob >= 1.0:
      return x
    keep = tf.cast(self.current_keep_prob(), tf.float32)
    replica = tf.distribute.get_replica_context()
    replica_id = replica.replica_id_in_sync_group if replica is not None else 0
    seed = tf.stack([tf.cast(self.seed * 4096 + replica_id, tf.int64),
                     tf.convert_to_tensor(self.step.value, tf.int64)])
    # The mask is drawn and scaled in float32 in every precision.
    noise = tf.reshape(hash_uniform(seed, tf.shape(x)[0]), [-1, 1, 1, 1])
    return x * tf.cast(tf.floor(keep + noise) / keep, x.dtype)

  def get_config(self):
    return {**super().get_config(), 'layer_ratio': self.layer_ratio, 'keep_prob': self.keep_prob,
            'seed': self.seed}


@keras.saving.register_keras_serializable('autodeeplab')
class DiscreteCell(ops.TypedConfig, tracking.CheckpointLists, keras.layers.Layer):
  """One retrain cell.

  Args:
    cell: `Genotype.cell`, ((input, op), (input, op)) per block.
    filters: channels per block (F * 2**level); the output has len(cell) * filters.
    stride: 2 when the path moves to a coarser level into this cell, else 1.
    layer_ratio: (cell_index + 1) / num_cells, for drop path.
    drop_path_keep_prob: keep probability at the end of training.
    settings: conv/BN settings.
    seed: this cell's index, which seeds its drop-path masks.
  """

  def __init__(self, cell, filters: int, stride: int = 1, layer_ratio: float = 1.0,
               drop_path_keep_prob: float = 1.0,
               settings: ops.LayerSettings = ops.LayerSettings(), seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.cell = tuple(tuple((int(index), str(op)) for index, op in block) for block in cell)
    self.filters, self.stride = filters, stride
    self.layer_ratio, self.drop_path_keep_prob = layer_ratio, drop_path_keep_prob
    self.settings = settings
    self.prev_conv, self.prev_bn = settings.conv(filters, 1), settings.batch_norm()
    self.prev_prev_conv, self.prev_prev_bn = settings.conv(filters, 1), settings.batch_norm()
    self.block_ops, self.drop_paths = [], []
    for block in self.cell:
      for index, name in block:
        stride_here = stride if index < 2 else 1
        self.block_ops.append(ops.build_op(name, filters, stride_here, settings))
        self.drop_paths.append(
            DropPath(layer_ratio, drop_path_keep_prob, seed=seed * 64 + len(self.drop_paths))
            if name != 'skip' or stride_here > 1 else None)

  def build(self, input_shapes):
    prev_shape, prev_prev_shape = input_shapes
    self.prev_conv.build(prev_shape)
    self.prev_bn.build((None, None, None, self.filters))
    self._project_prev_prev = prev_prev_shape[-1] != self.filters
    if self._project_prev_prev:
      self.prev_prev_conv.build(prev_prev_shape)
      self.prev_prev_bn.build((None, None, None, self.filters))
    shape = (None, None, None, self.filters)
    for layer in self.block_ops:
      layer.build(shape)
    self.built = True

  def call(self, inputs, training=False):
    h_prev, h_prev_prev = inputs
    size = ops.spatial_size(h_prev)
    h_prev_prev = ops.resize_bilinear(h_prev_prev, size)
    if self._project_prev_prev:
      h_prev_prev = self.prev_prev_bn(self.prev_prev_conv(tf.nn.relu(h_prev_prev)),
                                      training=training)
    h_prev = self.prev_bn(self.prev_conv(tf.nn.relu(h_prev)), training=training)
    states = [h_prev, h_prev_prev]
    k = 0
    for block in self.cell:
      total = 0
      for index, _ in block:
        y = self.block_ops[k](states[index], training=training)
        if self.drop_paths[k] is not None:
          y = self.drop_paths[k](y, training=training)
        total += y
        k += 1
      states.append(total)
    return tf.concat(states[2:], axis=-1)

  def get_config(self):
    return self.config_of(cell=[[list(pair) for pair in block] for block in self.cell],
                          filters=self.filters, stride=self.stride, layer_ratio=self.layer_ratio,
                          drop_path_keep_prob=self.drop_path_keep_prob, settings=self.settings,
                          seed=self.seed)
