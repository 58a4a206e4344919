"""The readable definition of the relaxed search cell: MixedOp and Cell (paper sec. 4.1.1).

This is the reference the fast supernet path (`fused_cell.py`) is tested against: one Keras layer
per op per edge, summed with the softmax(alpha) weights, exactly as eqs. (1)-(3) read. The supernet
itself runs the fused path, which computes the same function with far fewer, larger ops.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking
from official.autodeeplab.search import space


@keras.saving.register_keras_serializable('autodeeplab')
class MixedOp(tracking.CheckpointLists, keras.layers.Layer):
  """sum_k softmax(alpha)_k * op_k(x) over the 8 candidate ops (eq. 2).

  As in DARTS, the pooling ops are followed by a non-affine BN so that their scale matches the
  conv ops'; 'zero' contributes nothing and is not computed.

  Args:
    channels: channels of the input and of every op's output.
    settings: conv/BN settings; the search uses `ops.SEARCH_SETTINGS`.
  """

  def __init__(self, channels: int, settings: ops.LayerSettings = ops.SEARCH_SETTINGS, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.settings = settings
    self.candidates = [ops.build_op(op.name, channels, 1, settings) for op in space.OP_SPECS]
    self.pool_norms = [settings.batch_norm() if op.kind == 'pool' else None
                       for op in space.OP_SPECS]

  def build(self, *args, **kwargs):
    self.built = True  # the candidate ops build on their first call

  def call(self, x, op_weights, training=True):
    total = 0.0
    for k, op in enumerate(space.OP_SPECS):
      if op.kind == 'zero':
        continue
      y = self.candidates[k](x, training=training)
      if self.pool_norms[k] is not None:
        y = self.pool_norms[k](y, training=training)
      total += op_weights[k] * y
    return total


@keras.saving.register_keras_serializable('autodeeplab')
class Cell(tracking.CheckpointLists, keras.layers.Layer):
  """The relaxed cell H^l = Cell(H^{l-1}, H^{l-2}; alpha) (eq. 5).

  Block i sums MixedOps over every earlier state (H^{l-1}, H^{l-2}, blocks 0..i-1); the output is
  the concatenation of the blocks. Inputs already have `channels` channels (the supernet's
  preprocessing maps them there).

  Args:
    channels: channels per block (F * 2**level in the supernet).
    num_blocks: B.
    settings: conv/BN settings.
  """

  def __init__(self, channels: int, num_blocks: int = space.NUM_BLOCKS,
               settings: ops.LayerSettings = ops.SEARCH_SETTINGS, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.num_blocks = num_blocks
    self.mixed_ops = [MixedOp(channels, settings)
                      for b in range(num_blocks) for _ in range(space.num_block_inputs(b))]

  def build(self, *args, **kwargs):
    self.built = True  # the MixedOps build on their first call

  def call(self, h_prev, h_prev_prev, op_weights, training=True):
    """op_weights: [num_edges, num_ops] = softmax(alpha), rows in `space.edge_index` order."""
    states = [h_prev, h_prev_prev]
    for b in range(self.num_blocks):
      states.append(tf.add_n([
          self.mixed_ops[space.edge_index(b, j)](states[j], op_weights[space.edge_index(b, j)],
                                                 training=training)
          for j in range(len(states))]))
    return tf.concat(states[2:], axis=-1)
