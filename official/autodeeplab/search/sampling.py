"""Genotypes drawn uniformly from the search space: the random baseline a search is compared with
(tools/baseline.py; Li & Talwalkar 2019, Yang et al. 2020).

Cells: for every block, two distinct inputs among the states it may read (uniform over the
pairs) and, for each, one of the non-zero ops (uniform). Paths: uniform over the paths
`space.num_paths` counts, by the same dynamic programme run backwards: the number of ways to
finish from each (layer, level) weighs every step, so each complete path has the same chance.
"""
from __future__ import annotations

import itertools

import numpy as np

from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype

NON_ZERO_OPS = tuple(op for op in space.PRIMITIVES if op != 'zero')


def random_cell(rng: np.random.Generator, num_blocks: int = space.NUM_BLOCKS) -> tuple:
  cell = []
  for b in range(num_blocks):
    pairs = list(itertools.combinations(range(space.num_block_inputs(b)), 2))
    inputs = pairs[rng.integers(len(pairs))]
    cell.append(tuple((int(j), NON_ZERO_OPS[rng.integers(len(NON_ZERO_OPS))]) for j in inputs))
  return tuple(cell)


def completions(num_layers: int, num_levels: int = space.NUM_LEVELS) -> np.ndarray:
  """[L, levels]: how many ways a path at (layer, level) can go on to the last layer."""
  ways = np.zeros([num_layers, num_levels], np.float64)
  ways[-1] = 1
  for layer in range(num_layers - 2, -1, -1):
    for level in range(num_levels):
      ways[layer, level] = sum(ways[layer + 1, k] for k in (level - 1, level, level + 1)
                               if 0 <= k < num_levels)
  return ways


def random_path(rng: np.random.Generator, num_layers: int,
                first_levels: tuple[int, ...] = (0,),
                num_levels: int = space.NUM_LEVELS) -> tuple[int, ...]:
  ways = completions(num_layers, num_levels)

  def draw(candidates, layer):
    weights = np.array([ways[layer, k] for k in candidates])
    return candidates[rng.choice(len(candidates), p=weights / weights.sum())]

  path = [draw([k for k in first_levels if k < num_levels], 0)]
  for layer in range(1, num_layers):
    path.append(draw([k for k in (path[-1] - 1, path[-1], path[-1] + 1)
                      if 0 <= k < num_levels], layer))
  return tuple(int(k) for k in path)


def random_genotype(rng: np.random.Generator, num_layers: int = space.NUM_LAYERS,
                    num_blocks: int = space.NUM_BLOCKS,
                    first_levels: tuple[int, ...] = (0,)) -> Genotype:
  return Genotype(cell=random_cell(rng, num_blocks),
                  path=random_path(rng, num_layers, first_levels))
