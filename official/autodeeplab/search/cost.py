"""The cost term of the architecture loss (`search_config.cost_weight`): one `CostModel`
interface, two implementations. `MultiplyAdds`: the retrained network's cells' multiply-adds in
closed form. `Latency`: the whole network's milliseconds on one inference engine, from a measured
latency table (`search/latency_table.py`, `tools/latency.py`). Each fills one `NetworkCosts`
(what every part costs, indexed by the levels it joins); a genotype's exact cost
(`exact_parts`) and its expectation under the relaxation (`expected_cost`) are both computed
from it, so they agree by construction.

Multiply-adds are counted as `utils/complexity.py` counts (convolutions only; for one image of the given size), for
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

The expectation (`expected_cost`): the path's probability over each trellis edge (node
marginals times the transition probabilities, the preprocessing's H^{l-2} term over the two edges
before the cell, the head over the joint of the first and the last level), and per cell edge
softmax(alpha) for its op. The cell keeps two inputs per block;
the relaxation's stand-in for that choice: edge e of a block is kept with probability
2 * s_e / sum of s over the block's edges, s_e = 1 - softmax(alpha_e)[zero] (its non-zero mass),
and its op is distributed as its non-zero weights over s_e. With a one-hot relaxation (two edges
per block with a non-zero op, the path's transitions 0 or 1) this is exactly the exact cost of
the genotype it decodes to.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import math

import numpy as np

from official.autodeeplab.search.space import STEM_FILTERS
from official.autodeeplab.search.space import STEM_STRIDES
from official.autodeeplab.search import latency_table
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype


def level_shapes(height: int, width: int,
                 num_levels: int = space.NUM_LEVELS) -> list[tuple[int, int]]:
  """(height, width) of each level for a height x width image (the stem's 'SAME' strides, then
  each level halving, rounding up)."""
  for stride in STEM_STRIDES:
    height, width = math.ceil(height / stride), math.ceil(width / stride)
  return list(zip(space.level_sizes(height, num_levels), space.level_sizes(width, num_levels)))


def level_pixels(height: int, width: int, num_levels: int = space.NUM_LEVELS) -> list[int]:
  """Output pixels of each level for a height x width image (`level_shapes`)."""
  return [h * w for h, w in level_shapes(height, width, num_levels)]


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


def cells_multiply_adds(genotype: Genotype, filter_multiplier: int, height: int,
                        width: int) -> int:
  """The `cells` component of `complexity.multiply_adds` of the retrained network, computed."""
  model = MultiplyAdds(filter_multiplier, height, width, genotype.num_blocks)
  return int(round(model.exact(genotype)))


def op_tables(filter_multiplier: int, height: int, width: int,
              num_levels: int = space.NUM_LEVELS) -> np.ndarray:
  """[levels, 2 (stride 1 / 2), ops] multiply-adds of each op in a cell of that level."""
  pixels = level_pixels(height, width, num_levels)
  return np.array([[[op_multiply_adds(op, filter_multiplier * 2**k, stride, pixels[k])
                     for op in space.PRIMITIVES] for stride in (1, 2)]
                   for k in range(num_levels)], np.float64)


@dataclasses.dataclass(frozen=True)
class NetworkCosts:
  """What each part of a retrain network costs, indexed by the levels it joins; any cost model
  fills these, and `exact` / `expected` only combine them. Unreachable entries are 0.

  Attributes:
    fixed: what every network pays once (a call's overhead, the stem).
    ops: [levels, 2 (stride 1, 2), ops] one op in a cell of that level.
    prev_first: [levels] layer 0's H^{l-1} preprocessing (from the stem).
    prev: [levels (from), levels (cell)] H^{l-1}'s preprocessing, with the move between levels.
    prevprev_first: [levels] layer 0's H^{l-2} (the stem's stride-2 output).
    prevprev_second: [levels (layer 0), levels (layer 1)] layer 1's H^{l-2} (the stride-4 stem).
    prevprev: [levels (l-2), levels (l-1), levels (l)] H^{l-2}'s resize and projection.
    combine: [levels] a cell's block sums and concatenation.
    head: [2 (low-level features from a level-0 cell, from the stem), levels (the last cell)]
      ASPP and the decoder.
  """
  fixed: float
  ops: np.ndarray
  prev_first: np.ndarray
  prev: np.ndarray
  prevprev_first: np.ndarray
  prevprev_second: np.ndarray
  prevprev: np.ndarray
  combine: np.ndarray
  head: np.ndarray

  @property
  def num_levels(self) -> int:
    return self.ops.shape[0]


class CostModel(abc.ABC):
  """What the search's cost term and `tools.describe` ask of a cost: a genotype's exact cost (and
  its parts), and its expectation under the relaxation, both from one `NetworkCosts`.

  Attributes:
    key: the name of the exact value in reports ('multiply_adds', 'latency_ms').
  """
  key = ''

  @abc.abstractmethod
  def network_costs(self) -> NetworkCosts:
    """The part costs (computed once per model)."""

  @functools.cached_property
  def costs(self) -> NetworkCosts:
    return self.network_costs()

  def parts(self, genotype: Genotype) -> dict[str, float]:
    """{'fixed', 'cells', 'head'}: the genotype's exact cost by part."""
    return exact_parts(self.costs, genotype)

  def exact(self, genotype: Genotype) -> float:
    return float(sum(self.parts(genotype).values()))

  def expected(self, alpha, transitions):
    """The expectation under the relaxation (module docstring), a differentiable float32 scalar;
    `transitions` [L, levels, 3] (`Supernet.transition_probabilities`)."""
    return expected_cost(self.costs, alpha, transitions, self.num_blocks)


class MultiplyAdds(CostModel):
  """The retrain cells' multiply-adds in closed form (module docstring): no fixed part, no head
  (the cost term has always counted the cells only)."""
  key = 'multiply_adds'

  def __init__(self, filter_multiplier: int, height: int, width: int,
               num_blocks: int = space.NUM_BLOCKS, num_levels: int = space.NUM_LEVELS):
    self.filter_multiplier, self.height, self.width = filter_multiplier, height, width
    self.num_blocks, self.num_levels = num_blocks, num_levels

  def network_costs(self) -> NetworkCosts:
    levels, blocks, multiplier = self.num_levels, self.num_blocks, self.filter_multiplier
    pixels = np.array(level_pixels(self.height, self.width, levels), np.float64)
    filters = multiplier * 2.0**np.arange(levels)
    cell = blocks * filters
    at = pixels[np.minimum.outer(np.arange(levels), np.arange(levels))]  # [k', k]
    projection = lambda channels: (channels != filters) * channels * filters  # -> [.., k]
    stem2, stem4 = float(STEM_FILTERS[-2]), float(STEM_FILTERS[-1])
    return NetworkCosts(
        fixed=0.0, ops=op_tables(multiplier, self.height, self.width, levels),
        prev_first=stem4 * filters * pixels[0],
        prev=cell[:, None] * filters[None, :] * at,
        prevprev_first=projection(stem2) * pixels[0],
        prevprev_second=projection(stem4)[None, :] * at,
        prevprev=projection(cell[:, None])[:, None, :] * at[None],
        combine=np.zeros(levels), head=np.zeros([2, levels]))


class Latency(CostModel):
  """Milliseconds of the whole network as `tools.export` writes it for one engine and setting,
  from a measured latency table (`search/latency_table.py`): a call's overhead, the stem, the
  cells, ASPP and the decoder."""
  key = 'latency_ms'

  def __init__(self, table: dict):
    self.table = table
    self.setting = table['measured_for']
    self.entries = table['entries_ms']
    self.num_blocks, self.num_levels = self.setting['num_blocks'], self.setting['num_levels']

  @classmethod
  def from_file(cls, path: str) -> 'Latency':
    return cls(latency_table.read(path))

  def network_costs(self) -> NetworkCosts:
    """Every measured part placed where the levels it joins say (`latency_table.parts`);
    combinations no network meets stay 0."""
    levels = self.num_levels
    ops = np.zeros([levels, 2, len(space.PRIMITIVES)])
    prev_first, prevprev_first = np.zeros(levels), np.zeros(levels)
    prev, second = np.zeros([levels, levels]), np.zeros([levels, levels])
    prevprev = np.zeros([levels, levels, levels])
    combine, aspp, decoder = np.zeros(levels), np.zeros(levels), np.zeros([2, levels])
    for part in latency_table.parts(levels, tuple(self.setting['primitives'])):
      value, k = self.entries[part.key], part.level
      if part.kind == 'op':
        ops[k, part.stride - 1, space.PRIMITIVES.index(part.op)] = value
      elif part.kind == 'prev' and part.source == 'stem':
        prev_first[k] = value
      elif part.kind == 'prev':
        prev[int(part.source), k] = value
      elif part.kind == 'prevprev' and part.source == 's2':
        prevprev_first[k] = value
      elif part.kind == 'prevprev' and part.source == 's4':
        for first in space.FIRST_LEVELS:  # H^{l-1} (layer 0) at `first`, read at min(first, k)
          if abs(first - k) <= 1 and min(first, k) == part.at:
            second[first, k] = value
      elif part.kind == 'prevprev':
        for previous in range(levels):  # H^{l-1}'s level, read at min(previous, k)
          if abs(previous - k) <= 1 and abs(previous - int(part.source)) <= 1 \
              and min(previous, k) == part.at:
            prevprev[int(part.source), previous, k] = value
      elif part.kind == 'combine':
        combine[k] = value
      elif part.kind == 'aspp':
        aspp[k] = value
      elif part.kind == 'decoder':
        decoder[0 if part.source == 'cell' else 1, k] = value
    return NetworkCosts(
        fixed=self.entries['invoke'] + self.entries['stem'], ops=ops, prev_first=prev_first,
        prev=prev, prevprev_first=prevprev_first, prevprev_second=second, prevprev=prevprev,
        combine=combine, head=decoder + aspp[None])

  def breakdown(self, genotype: Genotype) -> dict[str, float]:
    """{'invoke', 'stem', 'cells', 'aspp', 'decoder'} in milliseconds; they sum to `exact`."""
    parts = self.parts(genotype)
    aspp = self.entries[f'aspp:L{genotype.path[-1]}']
    return {'invoke': self.entries['invoke'], 'stem': self.entries['stem'],
            'cells': parts['cells'], 'aspp': aspp, 'decoder': parts['head'] - aspp}


def exact_parts(costs: NetworkCosts, genotype: Genotype) -> dict[str, float]:
  """A genotype's cost by part, walking its path through the tables."""
  path = genotype.path
  cells = 0.0
  for layer, level in enumerate(path):
    previous = path[layer - 1] if layer else 0
    if layer == 0:
      cells += costs.prev_first[level] + costs.prevprev_first[level]
    elif layer == 1:
      cells += costs.prev[previous, level] + costs.prevprev_second[previous, level]
    else:
      cells += costs.prev[previous, level] + costs.prevprev[path[layer - 2], previous, level]
    stride = 2 if level > previous else 1
    for block in genotype.cell:
      for index, op in block:
        cells += costs.ops[level, (stride if index < 2 else 1) - 1, space.PRIMITIVES.index(op)]
    cells += costs.combine[level]
  head = costs.head[0 if path[0] == 0 else 1, path[-1]]
  return {'fixed': float(costs.fixed), 'cells': float(cells), 'head': float(head)}


def expected_cost(costs: NetworkCosts, alpha, transitions, num_blocks: int):
  """The expected cost of the network the relaxation decodes to (module docstring), as a
  differentiable TensorFlow float32 scalar.

  Args:
    costs: the part costs.
    alpha: [edges, ops] raw cell weights.
    transitions: [L, levels, 3] transition probabilities (`Supernet.transition_probabilities`).
    num_blocks: B of the relaxed cell.
  """
  import tensorflow as tf
  transitions = tf.cast(transitions, tf.float32)
  num_layers, num_levels = transitions.shape[0], transitions.shape[1]
  if num_levels != costs.num_levels:
    raise ValueError(f'{num_levels} levels; the costs have {costs.num_levels}')
  constant = lambda value: tf.constant(value, tf.float32)
  weights = tf.nn.softmax(tf.cast(alpha, tf.float32), axis=-1)
  zero = space.PRIMITIVES.index('zero')
  tables = constant(costs.ops)
  # Expected op cost per (level, stride) of one whole cell: sum over blocks and their edges.
  per_cell = 0.0
  for b in range(num_blocks):
    rows = [space.edge_index(b, j) for j in range(space.num_block_inputs(b))]
    block = tf.gather(weights, rows)
    kept = 2.0 / tf.reduce_sum(1.0 - block[:, zero])
    for j in range(space.num_block_inputs(b)):
      op_costs = tables if j < 2 else tf.repeat(tables[:, :1], 2, axis=1)  # blocks: stride 1
      per_cell += kept * tf.reduce_sum(op_costs * block[j], axis=-1)  # [levels, 2]
  rows, columns = np.meshgrid(range(num_levels), range(num_levels), indexing='ij')
  stride = (columns > rows).astype(np.int64)
  # [k', k]: one cell at level k entered from level k' (its ops' stride), plus its combine.
  cell_costs = (tf.gather_nd(per_cell, np.stack([columns, stride], -1))
                + constant(costs.combine)[None, :])
  # moves[l][k', k]: P(the path goes from level k' at layer l - 1 to level k at layer l).
  matrices = [_transition_matrix(transitions[l], num_levels) for l in range(num_layers)]
  total = constant(costs.fixed)
  marginal = tf.one_hot(0, num_levels)  # the stem: level 0
  previous_edges = None  # joint of (level at l - 2, level at l - 1)
  for layer in range(num_layers):
    edges = marginal[:, None] * matrices[layer]  # [k', k]
    if layer == 0:
      total += tf.reduce_sum(edges[0] * constant(costs.prev_first + costs.prevprev_first))
    elif layer == 1:
      total += tf.reduce_sum(edges * constant(costs.prev + costs.prevprev_second))
    else:
      triples = previous_edges[:, :, None] * matrices[layer][None]
      total += (tf.reduce_sum(edges * constant(costs.prev))
                + tf.reduce_sum(triples * constant(costs.prevprev)))
    total += tf.reduce_sum(edges * cell_costs)
    previous_edges, marginal = edges, tf.reduce_sum(edges, axis=0)
  # The head: the last level, and whether the path started at level 0 (the decoder's input).
  for first in range(min(2, num_levels)):
    last = tf.one_hot(first, num_levels)
    for layer in range(1, num_layers):
      last = tf.linalg.matvec(matrices[layer], last, transpose_a=True)
    total += matrices[0][0, first] * tf.reduce_sum(last * constant(costs.head[first]))
  return total


def expected_cells(alpha, transitions, num_blocks: int, filter_multiplier: int, height: int,
                   width: int):
  """`MultiplyAdds(...).expected`: the expected cells' multiply-adds."""
  model = MultiplyAdds(filter_multiplier, height, width, num_blocks, transitions.shape[1])
  return model.expected(alpha, transitions)


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
