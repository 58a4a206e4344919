"""The readable reference of the whole search trellis: eq. (6) as a plain loop (paper sec. 4.1.2).

    H^l_s = sum over s' in {s/2, s, 2s} of beta(s' -> s) * Cell(pre(H^{l-1}_{s'}), H^{l-2}_s; alpha)

one node at a time, one reference `search_cell.Cell` per node, nothing stacked, nothing fused, no
zero nodes. `supernet.Supernet` computes the same function with one `tf.foldl` over a full
4-level layer, zero tensors for the nodes that do not exist yet and fused cells; a test binds the
two (same logits, same gradients on shared weights), so the wiring (which beta scales which edge,
the missing nodes of the first layers, H^{l-2}, the preprocessing of each transition) is checked
against the equation, not just the cell.

Shared weights: the stem, the heads, alpha and beta are the supernet's own; the preprocessing
kernels are read from its per-level weight rows; each node's cell is a Keras `search_cell.Cell`
whose kernels `share_cell_weights` writes into the supernet's rows.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import fused_cell
from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import search_cell
from official.autodeeplab.search import space

_EPSILON = ops.SEARCH_SETTINGS.batch_norm_epsilon


def _batch_norm(x):
  """Non-affine BN with the batch's own moments, as every BN in the search."""
  mean, variance = tf.nn.moments(x, axes=[0, 1, 2], keepdims=True)
  return (x - mean) * tf.math.rsqrt(variance + _EPSILON)


def _relu_conv_bn(x, kernel, stride=1):
  return _batch_norm(tf.nn.conv2d(tf.nn.relu(x), kernel, stride, 'SAME'))


def node_cells(model) -> dict[tuple[int, int], search_cell.Cell]:
  """One reference cell per node (layer, level) that exists in the trellis."""
  return {(layer, level): search_cell.Cell(model.filter_multiplier * 2**level, model.num_blocks)
          for layer in range(model.num_layers) for level in space.levels_at_layer(layer)}


def share_cell_weights(model, cells, images) -> None:
  """Builds the reference cells (one call on `images`) and writes their kernels into the
  supernet's per-level weights, so both compute with the same numbers."""
  reference_logits(model, cells, images)  # creates the cells' Keras variables
  for level, layout in enumerate(model.layouts):
    rows = model.level_weights[level].numpy()
    cell_size = fused_cell.cell_layout(model.filter_multiplier * 2**level, model.num_blocks).size
    for layer in range(model.num_layers):
      if (layer, level) in cells:
        rows[layer, layout.size - cell_size:] = fused_cell.pack_reference_cell(
            cells[(layer, level)])
    model.level_weights[level].assign(rows)


def reference_logits(model, cells, images, training=True):
  """Eq. (6) node by node; `cells` from `node_cells(model)`."""
  op_weights = tf.nn.softmax(model.alpha, axis=-1)
  beta = model.transition_probabilities()      # [layer, source level, transition]
  nodes = {(-1, 0): model.stem_features(images, training)}   # the stem: stride 4, level 0
  sizes = space.level_sizes(tf.shape(nodes[(-1, 0)])[1:3], model.num_levels)
  for layer in range(model.num_layers):
    for level in space.levels_at_layer(layer):
      kernels = model.layouts[level].unpack(model.level_weights[level][layer])
      width = model.filter_multiplier * 2**level
      h_prev_prev = nodes.get((layer - 2, level))
      if h_prev_prev is None:  # no node there: the cell runs without its H^{l-2} edges
        h_prev_prev = tf.zeros(tf.concat([tf.shape(images)[:1], sizes[level], [width]], 0))
      else:
        h_prev_prev = _relu_conv_bn(h_prev_prev, kernels['pre/prev_prev'])
      total = 0.0
      for source, transition in ((level - 1, space.COARSER), (level, space.SAME),
                                 (level + 1, space.FINER)):
        h_prev = nodes.get((layer - 1, source))
        if h_prev is None:
          continue
        if source < level:    # from the finer level: stride-2 3x3 conv
          h_prev = _relu_conv_bn(h_prev, kernels['pre/from_finer'], stride=2)
        elif source == level:
          h_prev = _relu_conv_bn(h_prev, kernels['pre/from_same'])
        else:                 # from the coarser level: 1x1 conv, bilinear x2, BN
          h_prev = tf.nn.conv2d(tf.nn.relu(h_prev), kernels['pre/from_coarser'], 1, 'SAME')
          h_prev = _batch_norm(tf.image.resize(h_prev, sizes[level], method='bilinear'))
        cell = cells[(layer, level)](h_prev, h_prev_prev, op_weights, training=training)
        total += beta[layer, source, transition] * cell
      nodes[(layer, level)] = total
  last = model.num_layers - 1
  image_size = tf.shape(images)[1:3]
  return tf.add_n([tf.image.resize(model.heads[level](nodes[(last, level)], training=training),
                                   image_size, method='bilinear')
                   for level in space.levels_at_layer(last)])


def cell_gradients_as_rows(model, cells, tape, loss) -> list[np.ndarray]:
  """d loss / d (each node's cell kernels), packed like the supernet's per-level weights (the
  preprocessing slices left 0): what the supernet's gradient holds in the cell slices."""
  rows = [np.zeros(v.shape, np.float32) for v in model.level_weights]
  for (layer, level), cell in cells.items():
    variables = cell.trainable_variables
    saved = [v.numpy() for v in variables]
    for v, g in zip(variables, tape.gradient(loss, variables)):
      v.assign(g)
    size = fused_cell.cell_layout(model.filter_multiplier * 2**level, model.num_blocks).size
    rows[level][layer, model.layouts[level].size - size:] = fused_cell.pack_reference_cell(cell)
    for v, value in zip(variables, saved):
      v.assign(value)
  return rows
