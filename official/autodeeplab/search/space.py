"""The Auto-DeepLab search space in one place, and exact counts of its size.

Cell level (paper sec. 3.1): a cell has `NUM_BLOCKS` blocks; block i reads two of the i + 2 states
{H^{l-1}, H^{l-2}, block 0 .. block i-1}, applies one of the `PRIMITIVES` to each and adds them; the
cell output is the concatenation of its blocks.

Network level (sec. 3.2): after a stem that reaches stride 4 there are `NUM_LAYERS` layers, each at
one of `NUM_LEVELS` resolutions (level = log2(stride) - 2: 0 -> stride 4 ... 3 -> stride 32); the
level changes by at most one between consecutive layers, so the first layer is at level 0 or 1.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np



@dataclasses.dataclass(frozen=True)
class OpSpec:
  """One candidate operation, described once; every use of the op set derives from `OP_SPECS`.

  Attributes:
    name: the name in genotypes, plots and alpha's columns.
    kind: how it is built: 'zero' (no connection), 'pool', 'skip' (identity), 'separable'
      (stages of ReLU, depthwise-separable conv, BN) or 'atrous' (ReLU, dilated conv, BN).
    kernel: KxK window of the pool or conv (0: none).
    dilation: the conv's rate (atrous: 2).
    stages: (ReLU, conv, BN) stages of a conv op; 0 for the weight-free ops.
    pool: 'max' or 'avg' for a pool.
  """
  name: str
  kind: str
  kernel: int = 0
  dilation: int = 1
  stages: int = 0
  pool: str = ''

  @property
  def has_weights(self) -> bool:
    return self.stages > 0


# The 8 candidate operations, in the order of the architecture parameter alpha's last axis.
# Shared by the search supernet, the retrain network, the plots and the genotype format.
OP_SPECS = (
    OpSpec('zero', 'zero'),                          # no connection (search only)
    OpSpec('max_pool_3x3', 'pool', 3, pool='max'),   # stride 1
    OpSpec('avg_pool_3x3', 'pool', 3, pool='avg'),   # stride 1, padding not counted
    OpSpec('skip', 'skip'),                          # identity
    OpSpec('separable_3x3_2', 'separable', 3, stages=2),
    OpSpec('separable_5x5_2', 'separable', 5, stages=2),
    OpSpec('atrous_3x3', 'atrous', 3, dilation=2, stages=1),
    OpSpec('atrous_5x5', 'atrous', 5, dilation=2, stages=1),
)
PRIMITIVES = tuple(op.name for op in OP_SPECS)
OP_BY_NAME = {op.name: op for op in OP_SPECS}
ZERO = 'zero'
NUM_BLOCKS = 5      # B: blocks per cell
NUM_LAYERS = 12     # L: searched layers after the stem
NUM_LEVELS = 4      # resolutions: strides 4, 8, 16, 32
FIRST_LEVELS = (0, 1)  # the first layer after the stride-4 stem: same level, or one coarser
# The three transitions between consecutive layers, one name each across the project: to the
# finer level (level - 1, stride / 2), the same level, the coarser level (level + 1, stride x 2).
# Also the index of beta's last axis.
FINER, SAME, COARSER = 0, 1, 2
TRANSITIONS = ('finer', 'same', 'coarser')
SEARCH_FILTER_MULTIPLIER = 8  # F during the search
# The stem's three 3x3 convs before the first searched layer (strides 2, 1, 2; paper sec. 5.2):
# stride 4, level 0. The search stem ends with a level-0 node's width (B x F) instead of the last.
STEM_FILTERS = (64, 64, 128)
STEM_STRIDES = (2, 1, 2)


def level_stride(level: int) -> int:
  """Output stride of a level: 4 * 2**level."""
  return 4 * 2**level


def level_sizes(size, num_levels: int = NUM_LEVELS) -> list:
  """Spatial size at each level from the level-0 (stride-4) size: each level halves it, rounding
  up (as a stride-2 'SAME' conv does). Works on ints and on integer tensors alike."""
  sizes = [size]
  for _ in range(1, num_levels):
    sizes.append((sizes[-1] + 1) // 2)
  return sizes


def num_block_inputs(block: int) -> int:
  """States block `block` may read: H^{l-1}, H^{l-2} and the `block` earlier blocks."""
  return block + 2


def num_edges(num_blocks: int = NUM_BLOCKS) -> int:
  """Edges (input state -> block) of the relaxed cell: one alpha row each."""
  return sum(num_block_inputs(b) for b in range(num_blocks))


def edge_index(block: int, source: int) -> int:
  """Row of alpha for the edge from state `source` to block `block` (DARTS order)."""
  return sum(num_block_inputs(b) for b in range(block)) + source


def num_cells(num_blocks: int = NUM_BLOCKS, num_ops: int = len(PRIMITIVES)) -> int:
  """Distinct cells as the paper counts them: ordered input pairs and ops per block.

  prod over blocks of inputs^2 * ops^2; 5.6e14 for B=5 and the 8 ops (the paper's figure).
  """
  total = 1
  for b in range(num_blocks):
    total *= num_block_inputs(b)**2 * num_ops**2
  return total


def num_paths(num_layers: int = NUM_LAYERS, num_levels: int = NUM_LEVELS,
              first_levels: tuple[int, ...] = FIRST_LEVELS) -> int:
  """Network-level paths through the trellis, by dynamic programming over layers.

  A path is one level per layer, starting at one of `first_levels` and moving by at most one
  level per layer. For L=12: 28,657 with first_levels=(0,) (the paper's 2.9e4) and 75,025 with (0, 1).
  """
  if num_layers < 1:
    return 0
  ways = [1 if level in first_levels else 0 for level in range(num_levels)]
  for _ in range(num_layers - 1):
    ways = [sum(ways[src] for src in (level - 1, level, level + 1) if 0 <= src < num_levels)
            for level in range(num_levels)]
  return sum(ways)


def levels_at_layer(layer: int, num_levels: int = NUM_LEVELS) -> tuple[int, ...]:
  """Levels that exist at `layer` (0-based) of the trellis: at most `layer + 1` (the stem is level 0)."""
  return tuple(range(min(layer + 2, num_levels)))


def transition_mask(num_layers: int = NUM_LAYERS, num_levels: int = NUM_LEVELS):
  """[L, levels, 3] bool NumPy array: which network-level edges (betas) exist.

  Entry [l, k, d] is the edge from node (l - 1, k) to node (l, k + d - 1), d = FINER (to level
  k - 1), SAME, COARSER (to level k + 1); layer -1 is the stem, which is only at level 0.
  Border levels have two outgoing edges; nodes that do not exist yet have none.
  """
  mask = np.zeros([num_layers, num_levels, 3], bool)
  for layer in range(num_layers):
    sources = (0,) if layer == 0 else levels_at_layer(layer - 1, num_levels)
    for level in sources:
      for d in range(3):
        mask[layer, level, d] = 0 <= level + d - 1 < num_levels
  return mask


@functools.lru_cache(maxsize=None)
def describe_space(num_layers: int = NUM_LAYERS, num_blocks: int = NUM_BLOCKS,
                   num_ops: int = len(PRIMITIVES), num_levels: int = NUM_LEVELS) -> dict:
  """The counts `tools/describe --space` prints, as a JSON-ready dict."""
  cells = num_cells(num_blocks, num_ops)
  paths_stride4 = num_paths(num_layers, num_levels, (0,))
  paths_any = num_paths(num_layers, num_levels, FIRST_LEVELS)
  return {
      'num_layers': num_layers,
      'num_blocks': num_blocks,
      'num_ops': num_ops,
      'num_levels': num_levels,
      'primitives': list(PRIMITIVES[:num_ops]) if num_ops <= len(PRIMITIVES) else None,
      'num_edges_per_cell': num_edges(num_blocks),
      'num_cells': cells,
      'num_paths_first_stride4': paths_stride4,
      'num_paths_first_stride4_or_8': paths_any,
      'joint_space_first_stride4': cells * paths_stride4,
  }
