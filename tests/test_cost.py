"""search/cost.py: the closed-form count equals utils/complexity's count of the built network,
the relaxation's expectation equals it when one-hot, and its gradient lowers it."""
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search import cost
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.training import experiment
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.utils import complexity


def one_hot(genotype):
  """Raw alpha and transition probabilities whose relaxation is exactly `genotype`."""
  alpha = np.full([space.num_edges(genotype.num_blocks), len(space.PRIMITIVES)], -50.0)
  alpha[:, space.PRIMITIVES.index('zero')] = 50.0
  for b, block in enumerate(genotype.cell):
    for j, op in block:
      alpha[space.edge_index(b, j)] = -50.0
      alpha[space.edge_index(b, j), space.PRIMITIVES.index(op)] = 50.0
  transitions = np.zeros([genotype.num_layers, space.NUM_LEVELS, 3], np.float32)
  previous = 0
  for layer, level in enumerate(genotype.path):
    transitions[layer, previous, level - previous + 1] = 1.0
    previous = level
  return alpha, transitions


@pytest.mark.parametrize('path', [(0, 1, 1, 2), (1, 2, 1, 0), (0, 0, 1, 2, 3, 2)])
def test_closed_form_equals_the_counted_graph_and_the_one_hot_expectation(path):
  genotype = Genotype(cell=PAPER_GENOTYPE.cell, path=path)
  exact = cost.cells_multiply_adds(genotype, 4, 65, 97)
  model = segmenter.build_segmenter(genotype, 5, filter_multiplier=4)
  assert complexity.multiply_adds(model, 65, 97)['cells'] == exact
  alpha, transitions = one_hot(genotype)
  expected = cost.expected_cells(alpha, tf.constant(transitions), genotype.num_blocks, 4, 65, 97)
  assert float(expected) == pytest.approx(exact, rel=1e-6)


@pytest.mark.slow  # the full 12-layer supernet built and run: the slow tier
def test_the_paper_network_at_full_size():
  """Auto-DeepLab-S's cells at 1024x2048, against the built network's count."""
  exact = cost.cells_multiply_adds(PAPER_GENOTYPE, 20, 1024, 2048)
  alpha, transitions = one_hot(PAPER_GENOTYPE)
  expected = cost.expected_cells(alpha, tf.constant(transitions), 5, 20, 1024, 2048)
  assert float(expected) == pytest.approx(exact, rel=1e-5)
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 19, filter_multiplier=20)
  assert complexity.multiply_adds(model, 1024, 2048)['cells'] == exact


def test_its_gradient_lowers_the_expectation():
  rng = np.random.default_rng(0)
  alpha = tf.Variable(rng.normal(0, 0.5, [space.num_edges(5), len(space.PRIMITIVES)]),
                      dtype=tf.float32)
  mask = space.transition_mask(6, space.NUM_LEVELS)
  beta = tf.Variable(rng.normal(0, 0.5, mask.shape), dtype=tf.float32)

  def expected():
    logits = tf.where(mask, beta, -1e9)
    transitions = tf.nn.softmax(logits, -1) * mask.astype(np.float32)
    return cost.expected_cells(alpha, transitions, 5, 20, 129, 129)

  before = float(expected())
  for _ in range(5):
    with tf.GradientTape() as tape:
      value = tf.math.log(expected())
    for variable, gradient in zip((alpha, beta), tape.gradient(value, (alpha, beta))):
      variable.assign_sub(20.0 * gradient)
  assert float(expected()) < 0.8 * before


def test_a_cost_weight_needs_a_target():
  with pytest.raises(UserInputError, match='cost_weight=0.5 needs search_config.cost_target'):
    experiment.SearchConfig(cost_weight=0.5).validate()
  with pytest.raises(UserInputError, match='stop_when_stable=-1'):
    experiment.SearchConfig(stop_when_stable=-1).validate()
  experiment.SearchConfig(cost_weight=0.5, cost_target=1e9).validate()
