"""Decoding: planted alpha/beta give back the planted genotype; Viterbi equals brute force."""
import itertools

import numpy as np
import pytest

from official.autodeeplab.search import decode
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import PAPER_GENOTYPE


def plant_alpha(cell, rng):
  alpha = rng.normal(scale=0.1, size=[space.num_edges(len(cell)), len(space.PRIMITIVES)])
  alpha[:, space.PRIMITIVES.index('zero')] = 5.0  # zero is never chosen, however strong
  for b, block in enumerate(cell):
    for j, op in block:
      alpha[space.edge_index(b, j), space.PRIMITIVES.index(op)] = 3.0
  return alpha


def plant_beta(path, num_levels=4):
  beta = np.zeros([len(path), num_levels, 3])
  previous = 0
  for layer, level in enumerate(path):
    beta[layer, previous, level - previous + 1] = 6.0
    previous = level
  return beta


def test_planted_paper_genotype_is_decoded():
  rng = np.random.default_rng(0)
  genotype = decode.decode(plant_alpha(PAPER_GENOTYPE.cell, rng), plant_beta(PAPER_GENOTYPE.path))
  assert genotype.path == PAPER_GENOTYPE.path
  assert [sorted(b) for b in genotype.cell] == [sorted(b) for b in PAPER_GENOTYPE.cell]


def test_transition_probabilities_sum_to_one_over_existing_edges():
  rng = np.random.default_rng(1)
  probs = decode.transition_probabilities(rng.normal(size=[6, 4, 3]))
  mask = space.transition_mask(6)
  np.testing.assert_allclose(probs.sum(-1), mask.any(-1).astype(float), atol=1e-12)
  assert (probs[~mask] == 0).all()
  assert mask[3, 0].tolist() == [False, True, True] and mask[3, 3].tolist() == [True, True, False]
  assert mask[0].any(-1).tolist() == [True, False, False, False]  # only the stem at layer -1


def brute_force(probs):
  num_layers, num_levels, _ = probs.shape
  best, best_path = -1.0, None
  for path in itertools.product(range(num_levels), repeat=num_layers):
    p, previous = 1.0, 0
    for layer, level in enumerate(path):
      d = level - previous + 1
      p *= probs[layer, previous, d] if 0 <= d < 3 else 0.0
      previous = level
    if p > best:
      best, best_path = p, path
  return best_path, best


@pytest.mark.parametrize('num_layers', [1, 2, 3, 4, 6])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_viterbi_equals_brute_force(num_layers, seed):
  probs = decode.transition_probabilities(
      np.random.default_rng(seed).normal(scale=2.0, size=[num_layers, 4, 3]))
  path, p = decode.viterbi(probs)
  expected_path, expected_p = brute_force(probs)
  assert path == expected_path and p == pytest.approx(expected_p)
  assert path[0] in (0, 1)


def test_decode_cell_takes_two_strongest_inputs_and_ignores_zero():
  alpha = np.zeros([space.num_edges(2), 8])
  alpha[space.edge_index(1, 2), space.PRIMITIVES.index('skip')] = 4.0
  alpha[space.edge_index(1, 0), space.PRIMITIVES.index('atrous_3x3')] = 2.0
  alpha[space.edge_index(1, 1), space.PRIMITIVES.index('zero')] = 9.0
  cell = decode.decode_cell(alpha, num_blocks=2)
  assert cell[1] == ((0, 'atrous_3x3'), (2, 'skip'))
  with pytest.raises(ValueError, match='alpha has shape'):
    decode.decode_cell(np.zeros([3, 8]), num_blocks=2)
