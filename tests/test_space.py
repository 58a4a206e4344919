"""Search-space counts against brute-force enumeration and the paper's figures."""
import itertools

import pytest

from official.autodeeplab.search import space


def brute_force_paths(num_layers, num_levels, first_levels):
  count = 0
  for path in itertools.product(range(num_levels), repeat=num_layers):
    if path[0] in first_levels and all(abs(a - b) <= 1 for a, b in zip(path, path[1:])):
      count += 1
  return count


def brute_force_cells(num_blocks, num_ops):
  """Enumerates every block's ordered (input, op) pairs: the paper's way of counting."""
  count = 1
  for b in range(num_blocks):
    choices = list(itertools.product(range(b + 2), range(num_ops)))
    count *= sum(1 for _ in itertools.product(choices, choices))
  return count


@pytest.mark.parametrize('num_layers', [1, 2, 3, 5, 7])
@pytest.mark.parametrize('num_levels', [1, 2, 3, 4])
@pytest.mark.parametrize('first_levels', [(0,), (0, 1)])
def test_paths_match_brute_force(num_layers, num_levels, first_levels):
  assert space.num_paths(num_layers, num_levels, first_levels) == brute_force_paths(
      num_layers, num_levels, first_levels)


@pytest.mark.parametrize('num_blocks,num_ops', [(1, 2), (2, 3), (3, 2), (2, 8)])
def test_cells_match_brute_force(num_blocks, num_ops):
  assert space.num_cells(num_blocks, num_ops) == brute_force_cells(num_blocks, num_ops)


def test_paper_figures():
  assert round(space.num_cells(5, 8) / 1e14, 1) == 5.6
  assert space.num_paths(12, 4, (0,)) == 28657
  assert space.num_paths(12, 4, (0, 1)) == 75025
  counts = space.describe_space()
  assert 1e19 <= counts['joint_space_first_stride4'] < 1e20  # "in the order of 10^19"


def test_edges_are_numbered_block_by_block():
  indices = [space.edge_index(b, s) for b in range(5) for s in range(b + 2)]
  assert indices == list(range(space.num_edges(5))) and space.num_edges(5) == 20


def test_levels_at_layer():
  assert space.levels_at_layer(0) == (0, 1)
  assert space.levels_at_layer(1) == (0, 1, 2)
  assert space.levels_at_layer(5) == (0, 1, 2, 3)


def test_every_list_of_ops_agrees_with_the_primitives():
  # The op table, the fused cell's split into weighted / weight-free ops and the plot's colours
  # all derive from the op table, space.OP_SPECS.
  from official.autodeeplab.modeling import fused_cell
  from official.autodeeplab.modeling import ops
  from official.autodeeplab.training import plots
  assert tuple(ops.OPS) == space.PRIMITIVES
  assert sorted([op.name for op in fused_cell._MIXED_OPS] + ['zero']) == sorted(space.PRIMITIVES)
  assert all(op.has_weights for op in fused_cell._CONV_OPS)
  kinds = {op: plots.op_kind(op) for op in space.PRIMITIVES if op != 'zero'}
  assert set(kinds.values()) == set(plots.OP_KIND_COLOURS)
  assert kinds['max_pool_3x3'] == 'pool' and kinds['separable_5x5_2'] == 'separable'


def test_transition_names():
  assert space.TRANSITIONS[space.FINER] == 'finer' and space.TRANSITIONS[space.COARSER] == 'coarser'
  mask = space.transition_mask(3)
  assert not mask[1, 0, space.FINER] and not mask[2, space.NUM_LEVELS - 1, space.COARSER]
