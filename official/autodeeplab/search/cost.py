"""Multiply-adds of the retrained network's cells in closed form: exactly for a genotype, and as an
expectation under the search's relaxation (differentiable), for the cost term of the architecture
loss (`search_config.cost_weight`).

Counted as `utils/complexity.py` counts (convolutions only; for one image of the given size), for
the cells of `modeling/cell.DiscreteCell` along `modeling/backbone.Backbone`'s path, at filter
multiplier F (a level-k cell has f = F * 2**k channels per block, P_k output pixels):
* preprocessing: H^{l-1} gets a 1x1 conv C_prev -> f, H^{l-2} (when its channel count is not f)
  a 1x1 conv C_pp -> f, both at H^{l-1}'s resolution as the cell receives it: level
  min(k_prev, k) (a finer move resizes H^{l-1} before the cell; a coarser one strides the ops).
  C = B * F * 2**level for a cell's output, 128 and 64 for the stem's two outputs.
* ops (output P_k): separable KxK x stages: stages * (K*K*f + f*f) * P_k; atrous KxK (a full conv
  in the retrain network): K*K*f*f * P_k; skip into a coarser level: f*f * P_k (1x1, stride 2);
  pooling, identity skip, zero: 0. Ops reading H^{l-1} / H^{l-2} carry the stride of a coarser
  move; ops reading earlier blocks do not.

The expectation (`expected_cells`): the path's probability over each trellis edge (node
marginals times the transition probabilities, the preprocessing's H^{l-2} term over the two edges
before the cell), and per cell edge softmax(alpha) for its op. The cell keeps two inputs per block;
the relaxation's stand-in for that choice: edge e of a block is kept with probability
2 * s_e / sum of s over the block's edges, s_e = 1 - softmax(alpha_e)[zero] (its non-zero mass),
and its op is distributed as its non-zero weights over s_e. With a one-hot relaxation (two edges
per block with a non-zero op, the path's transitions 0 or 1) this is exactly `cells_multiply_adds`
of the genotype it decodes to.
"""
from __future__ import annotations

import math

import numpy as np

from official.autodeeplab.search.space import STEM_FILTERS
from official.autodeeplab.search.space import STEM_STRIDES
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype


def level_pixels(height: int, width: int, num_levels: int = space.NUM_LEVELS) -> list[int]:
  """Output pixels of each level for a height x width image (the stem's 'SAME' strides, then each
  level halving, rounding up)."""
  for stride in STEM_STRIDES:
    height, width = math.ceil(height / stride), math.ceil(width / stride)
  return [h * w for h, w in zip(space.level_sizes(height, num_levels),
                                space.level_sizes(width, num_levels))]


def op_multiply_adds(op: str, filters: int, stride: int, pixels: int) -> int:
  """One op of a retrain cell, `pixels` output pixels."""
  spec = space.OP_BY_NAME[op]
  if spec.kind == 'separable':
    return spec.stages * (spec.kernel ** 2 * filters + filters * filters) * pixels
  if spec.kind == 'atrous':
    return spec.kernel ** 2 * filters * filters * pixels
  if spec.kind == 'skip' and stride == 2:
    return filters * filters * pixels
  return 0


def _channels(levels: list[int], layer: int, back: int, num_blocks: int, multiplier: int) -> int:
  """Channels of H^{layer - back}: a cell's concat of blocks, or the stem's outputs."""
  source = layer - back
  if source >= 0:
    return num_blocks * multiplier * 2**levels[source]
  return STEM_FILTERS[-1] if source == -1 else STEM_FILTERS[-2]


def cells_multiply_adds(genotype: Genotype, filter_multiplier: int, height: int,
                        width: int) -> int:
  """The `cells` component of `complexity.multiply_adds` of the retrained network, computed."""
  pixels = level_pixels(height, width)
  path, blocks = list(genotype.path), genotype.num_blocks
  total = 0
  for layer, level in enumerate(path):
    previous = path[layer - 1] if layer else 0
    f = filter_multiplier * 2**level
    stride = 2 if level > previous else 1
    at_input = pixels[min(level, previous)]
    total += _channels(path, layer, 1, blocks, filter_multiplier) * f * at_input
    prev_prev = _channels(path, layer, 2, blocks, filter_multiplier)
    if prev_prev != f:
      total += prev_prev * f * at_input
    for block in genotype.cell:
      for index, op in block:
        total += op_multiply_adds(op, f, stride if index < 2 else 1, pixels[level])
  return int(total)


def op_tables(filter_multiplier: int, height: int, width: int,
              num_levels: int = space.NUM_LEVELS) -> np.ndarray:
  """[levels, 2 (stride 1 / 2), ops] multiply-adds of each op in a cell of that level."""
  pixels = level_pixels(height, width, num_levels)
  return np.array([[[op_multiply_adds(op, filter_multiplier * 2**k, stride, pixels[k])
                     for op in space.PRIMITIVES] for stride in (1, 2)]
                   for k in range(num_levels)], np.float64)


def expected_cells(alpha, transitions, num_blocks: int, filter_multiplier: int, height: int,
                   width: int):
  """The expected cells' multiply-adds of the network the relaxation decodes to (module
  docstring), as a differentiable TensorFlow float32 scalar.

  Args:
    alpha: [edges, ops] raw cell weights.
    transitions: [L, levels, 3] transition probabilities (`Supernet.transition_probabilities`).
  """
  import tensorflow as tf
  num_layers, num_levels = transitions.shape[0], transitions.shape[1]
  weights = tf.nn.softmax(tf.cast(alpha, tf.float32), axis=-1)
  zero = space.PRIMITIVES.index('zero')
  tables = tf.constant(op_tables(filter_multiplier, height, width, num_levels), tf.float32)
  # Expected op cost per (level, stride) of one whole cell: sum over blocks and their edges.
  per_cell = 0.0
  for b in range(num_blocks):
    rows = [space.edge_index(b, j) for j in range(space.num_block_inputs(b))]
    block = tf.gather(weights, rows)
    kept = 2.0 / tf.reduce_sum(1.0 - block[:, zero])
    for j in range(space.num_block_inputs(b)):
      costs = tables if j < 2 else tf.repeat(tables[:, :1], 2, axis=1)  # blocks: stride 1
      per_cell += kept * tf.reduce_sum(costs * block[j], axis=-1)  # [levels, 2]
  pixels = tf.constant(level_pixels(height, width, num_levels), tf.float32)
  filters = tf.constant([filter_multiplier * 2**k for k in range(num_levels)], tf.float32)
  cell_channels = num_blocks * filters
  # moves[l][k', k]: P(the path goes from level k' at layer l - 1 to level k at layer l).
  matrices = [_transition_matrix(transitions[l], num_levels) for l in range(num_layers)]
  marginal = tf.one_hot(0, num_levels)  # the stem: level 0
  previous_edges = None  # joint of (level at l - 2, level at l - 1)
  total = 0.0
  rows, columns = np.meshgrid(range(num_levels), range(num_levels), indexing='ij')
  at_input = tf.gather(pixels, np.minimum(rows, columns))  # [k', k]
  stride = tf.constant((columns > rows).astype(np.int64))
  for layer in range(num_layers):
    edges = marginal[:, None] * matrices[layer]  # [k', k]
    prev_channels = cell_channels if layer else tf.fill([num_levels], float(STEM_FILTERS[-1]))
    total += tf.reduce_sum(edges * prev_channels[:, None] * filters[None, :] * at_input)
    # H^{l-2}'s projection: over (level at l - 2, level at l - 1, level at l).
    if layer >= 2:
      triples = previous_edges[:, :, None] * matrices[layer][None]
      pp_channels = cell_channels
    else:
      triples = tf.one_hot(0, num_levels)[:, None, None] * edges[None]
      pp_channels = tf.fill([num_levels], float(STEM_FILTERS[-1 - (1 - layer)]))
    projected = tf.cast(tf.not_equal(pp_channels[:, None], filters[None, :]), tf.float32)
    total += tf.reduce_sum(triples * (pp_channels[:, None, None] * filters[None, None, :]
                                      * projected[:, None, :] * at_input[None]))
    # The ops: reading H^{l-1} / H^{l-2} with the move's stride, blocks with stride 1.
    op_costs = tf.gather_nd(per_cell, tf.stack([np.broadcast_to(columns, stride.shape),
                                                stride], -1))  # [k', k]
    total += tf.reduce_sum(edges * op_costs)
    previous_edges, marginal = edges, tf.reduce_sum(edges, axis=0)
  return total


def _transition_matrix(transitions, num_levels: int):
  """[levels, 3] (finer, same, coarser) -> [levels, levels] from level k' to level k."""
  import tensorflow as tf
  rows = []
  for source in range(num_levels):
    row = tf.zeros([num_levels])
    for d in range(3):
      target = source + d - 1
      if 0 <= target < num_levels:
        row += transitions[source, d] * tf.one_hot(target, num_levels)
    rows.append(row)
  return tf.stack(rows)
