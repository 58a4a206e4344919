"""From architecture parameters to a discrete `Genotype` (paper sec. 4.3). Pure NumPy.

* Cell: for each block keep the 2 strongest inputs, the strength of input j being the largest
  softmax(alpha) weight of a non-zero op on the edge j -> block, then take the argmax non-zero op
  on each kept edge.
* Network: betas normalised over each node's outgoing edges are transition probabilities between
  levels; the Viterbi algorithm finds the maximum-probability path from the stride-4 stem through
  the L layers (so the first layer is at stride 4 or 8).
"""
from __future__ import annotations

import numpy as np

from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype

_ZERO = space.PRIMITIVES.index(space.ZERO)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def transition_probabilities(beta: np.ndarray) -> np.ndarray:
  """Raw beta [L, levels, 3] -> softmax over each node's existing outgoing edges (0 elsewhere)."""
  beta = np.asarray(beta, np.float64)
  mask = space.transition_mask(beta.shape[0], beta.shape[1])
  logits = np.where(mask, beta, -np.inf)
  with np.errstate(invalid='ignore'):
    probs = softmax(np.where(mask.any(-1, keepdims=True), logits, 0.0))
  return np.where(mask, probs, 0.0)


def decode_cell(alpha: np.ndarray, num_blocks: int = space.NUM_BLOCKS):
  """Raw alpha [num_edges, num_ops] -> the genotype's cell: ((input, op), (input, op)) per block."""
  weights = softmax(alpha)
  if weights.shape != (space.num_edges(num_blocks), len(space.PRIMITIVES)):
    raise ValueError(f'alpha has shape {weights.shape}, expected '
                     f'{(space.num_edges(num_blocks), len(space.PRIMITIVES))}')
  non_zero = np.delete(np.arange(weights.shape[1]), _ZERO)
  cell = []
  for b in range(num_blocks):
    rows = weights[[space.edge_index(b, j) for j in range(space.num_block_inputs(b))]]
    strength = rows[:, non_zero].max(axis=1)
    kept = sorted(np.argsort(-strength, kind='stable')[:2])  # stable: ties -> lower input index
    cell.append(tuple((int(j), space.PRIMITIVES[int(non_zero[rows[j, non_zero].argmax()])])
                      for j in kept))
  return tuple(cell)


def viterbi(transitions: np.ndarray) -> tuple[tuple[int, ...], float]:
  """Maximum-probability path through the trellis.

  Args:
    transitions: [L, levels, 3] transition probabilities (`transition_probabilities`).

  Returns:
    (one level per layer, the path's probability).
  """
  num_layers, num_levels, _ = transitions.shape
  with np.errstate(divide='ignore'):
    log_t = np.log(transitions)
  score = np.full(num_levels, -np.inf)
  score[0] = 0.0  # the stem, at stride 4
  back = np.zeros([num_layers, num_levels], int)
  for layer in range(num_layers):
    new = np.full(num_levels, -np.inf)
    for level in range(num_levels):
      for d in range(3):
        source = level - d + 1
        if 0 <= source < num_levels and score[source] + log_t[layer, source, d] > new[level]:
          new[level] = score[source] + log_t[layer, source, d]
          back[layer, level] = source
    score = new
  path = [int(np.argmax(score))]
  for layer in range(num_layers - 1, 0, -1):
    path.append(int(back[layer, path[-1]]))
  return tuple(reversed(path)), float(np.exp(score.max()))


def decode(alpha: np.ndarray, beta: np.ndarray, num_blocks: int = space.NUM_BLOCKS) -> Genotype:
  """Raw alpha and beta (as the supernet stores them) -> Genotype."""
  path, _ = viterbi(transition_probabilities(beta))
  return Genotype(cell=decode_cell(alpha, num_blocks), path=path)
