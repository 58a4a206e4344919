"""Search evidence: the ranking statistics and the bootstrap on hand-made tables, architectures
set one-hot inside a supernet (unchosen kernels get no gradient), the architecture Hessian's
products against finite differences, power iteration, the sharpness stop, and its bad input."""
import math

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import fused_cell
from official.autodeeplab.modeling import supernet as supernet_lib
from official.autodeeplab.search import evidence
from official.autodeeplab.search import sampling
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.training import arch_history
from official.autodeeplab.training import configs
from official.autodeeplab.training import sharpness
from official.autodeeplab.training import supernet_ranking


# -- statistics on hand-made tables --------------------------------------------------------------
def test_percentile_and_rank_count_ties_half():
  random = [0.5, 0.6, 0.7, 0.8]
  assert evidence.percentile(0.9, random) == 100 and evidence.rank(0.9, random) == 1
  assert evidence.percentile(0.7, random) == 62.5 and evidence.rank(0.7, random) == 2
  assert evidence.percentile(0.1, random) == 0 and evidence.rank(0.1, random) == 5


def test_bootstrap_interval_is_degenerate_when_nothing_is_uncertain():
  random = [[0.5, 0.5], [0.6, 0.6], [0.7, 0.7]]
  assert evidence.bootstrap_percentile([0.9, 0.9], random, 300) == (100.0, 100.0)
  assert evidence.bootstrap_percentile([0.1, 0.1], random, 300) == (0.0, 0.0)


def test_bootstrap_interval_widens_with_seed_noise_and_covers_the_estimate():
  rng = np.random.default_rng(0)
  random = np.linspace(0.5, 0.8, 16)[:, None] + 0.001 * rng.standard_normal((16, 3))
  steady, noisy = [0.7, 0.7, 0.7], [0.55, 0.7, 0.85]  # the same mean, other seed spreads
  point = evidence.percentile(0.7, random.mean(1))
  low_s, high_s = evidence.bootstrap_percentile(steady, random, 1000, seed=1)
  low_n, high_n = evidence.bootstrap_percentile(noisy, random, 1000, seed=1)
  assert low_s <= point <= high_s and low_n <= point <= high_n
  assert high_n - low_n > high_s - low_s > 0  # random draws alone give some width
  assert evidence.bootstrap_percentile(steady, random, 1000, seed=1) == (low_s, high_s)  # seeded
  with pytest.raises(ValueError):
    evidence.bootstrap_percentile([0.7], random, 10)


def test_seed_spread_is_the_pooled_standard_deviation():
  scores = [[1.0, 3.0], [5.0, 5.0], [2.0, 6.0]]  # variances (ddof 1): 2, 0, 8
  assert evidence.seed_spread(scores) == pytest.approx(math.sqrt(10 / 3))
  assert evidence.seed_spread([[1.0], [2.0]]) is None


def test_ranking_agreement_by_hand():
  same = evidence.ranking_agreement([1, 2, 3, 4], [10, 20, 30, 40])
  assert same == {'kendall_tau': 1.0, 'spearman': 1.0}
  reverse = evidence.ranking_agreement([1, 2, 3, 4], [40, 30, 20, 10])
  assert reverse == {'kendall_tau': -1.0, 'spearman': -1.0}
  # One discordant pair of six: tau = (5 - 1) / 6; d = (0, 1, 1, 0): rho = 1 - 6 * 2 / 60.
  swapped = evidence.ranking_agreement([1, 2, 3, 4], [1, 3, 2, 4])
  assert swapped['kendall_tau'] == pytest.approx(4 / 6)
  assert swapped['spearman'] == pytest.approx(0.8)
  assert evidence.ranking_agreement([1, 1, 1], [1, 2, 3])['kendall_tau'] is None


# -- one architecture set exactly inside the supernet --------------------------------------------
def test_one_hot_sets_each_chosen_edge_and_one_transition_per_layer():
  cell = ((0, 'skip'), (1, 'atrous_3x3')), ((0, 'max_pool_3x3'), (0, 'max_pool_3x3'))
  ops, transitions = supernet_ranking.one_hot(Genotype(cell=cell, path=(1, 2, 2, 1)))
  assert ops.shape == (space.num_edges(2), len(space.PRIMITIVES))
  assert ops[space.edge_index(0, 0), space.PRIMITIVES.index('skip')] == 1
  assert ops[space.edge_index(0, 1), space.PRIMITIVES.index('atrous_3x3')] == 1
  assert ops[space.edge_index(1, 0), space.PRIMITIVES.index('max_pool_3x3')] == 2
  assert ops.sum() == 4  # every other edge all zero: the zero op
  assert transitions.sum(axis=(1, 2)).tolist() == [1, 1, 1, 1]
  assert transitions[0, 0, space.COARSER] == transitions[1, 1, space.COARSER] == 1
  assert transitions[2, 2, space.SAME] == transitions[3, 2, space.FINER] == 1


def _tiny_supernet(num_layers=3, num_blocks=5):
  model = supernet_lib.Supernet(3, num_layers=num_layers, num_blocks=num_blocks,
                                filter_multiplier=2)
  model.build((None, None, None, 3))
  return model


def _batch(size=33):
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(-1, 1, (2, size, size, 3)), tf.float32)
  labels = tf.constant(rng.integers(0, 3, (2, size, size)), tf.int32)
  return images, labels


def test_unchosen_ops_and_edges_get_zero_gradient_and_alpha_beta_are_bypassed():
  model = _tiny_supernet()
  genotype = Genotype(cell=sampling.random_cell(np.random.default_rng(3)), path=(1, 1, 0))
  architecture = tuple(tf.constant(a) for a in supernet_ranking.one_hot(genotype))
  images, labels = _batch()
  with tf.GradientTape() as tape:
    logits = model(images, training=True, architecture=architecture)
    loss = sharpness.twice_differentiable_loss(labels, logits)
  grads = tape.gradient(loss, model.level_weights)
  model.alpha.assign(tf.random.normal(model.alpha.shape, stddev=3.0))
  model.beta.assign(tf.random.normal(model.beta.shape, stddev=3.0))
  again = model(images, training=True, architecture=architecture)
  np.testing.assert_allclose(again.numpy(), logits.numpy(), atol=1e-5)  # softmax bypassed
  chosen = {(b, j, op) for b, pairs in enumerate(genotype.cell) for j, op in pairs}
  conv_ops = [op for op in space.OP_SPECS if op.has_weights]
  nonzero_chosen = 0
  for layer, on_path in enumerate(genotype.path):
    for level in range(model.num_levels):
      kernels = {k: v.numpy() for k, v in model.layouts[level].unpack(grads[level][layer]).items()}
      for state in range(model.num_blocks + 1):
        for r, block in enumerate(fused_cell.readers(state, model.num_blocks)):
          for op in conv_ops:
            parts = [kernels[f's{state}/{op.name}/dw0'][..., r],
                     kernels[f's{state}/{op.name}/pw0'][r]] + [
                kernels[f's{state}/{op.name}/pw{stage}'][r] for stage in range(1, op.stages)]
            used = level == on_path and (block, state, op.name) in chosen
            if not used:
              assert all(not np.any(p) for p in parts), (layer, level, state, block, op.name)
            elif state == 0:  # H^{l-1} is never a zero node on the path
              nonzero_chosen += all(np.any(p) for p in parts)
      if level != on_path:
        assert not np.any(grads[level][layer].numpy()), (layer, level)
  assert nonzero_chosen > 0  # the check above is not vacuous


def test_score_ranks_architectures_on_train_b(tmp_path):
  from official.autodeeplab.data import convert
  convert.convert('synthetic', str(tmp_path), 'train', 1, num_examples=6, image_size=40,
                  num_classes=3, progress=False)
  model = _tiny_supernet()
  supernet = supernet_ranking.Supernet(model, str(tmp_path), 0)
  rng = np.random.default_rng(0)
  genotypes = [Genotype(cell=sampling.random_cell(rng), path=p) for p in ((0, 0, 1), (1, 2, 3))]
  scores = supernet_ranking.score(supernet, genotypes, str(tmp_path))
  assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
  wrong = supernet_ranking.Supernet(supernet_lib.Supernet(4, num_layers=3), str(tmp_path), 0)
  with pytest.raises(UserInputError, match='3 classes, the supernet 4'):
    supernet_ranking.score(wrong, genotypes, str(tmp_path))
  with pytest.raises(UserInputError, match='L=3 B=5, the genotypes L=2'):
    supernet_ranking.check_space(supernet, Genotype(cell=genotypes[0].cell, path=(0, 1)), 'x')


def test_a_workdir_without_a_supernet_checkpoint_is_refused(tmp_path):
  with pytest.raises(UserInputError, match='--search_workdir=.*no supernet checkpoint'):
    supernet_ranking.load(str(tmp_path))


# -- sharpness ------------------------------------------------------------------------------------
@pytest.mark.slow  # the second-order graph takes about a minute to build on 2 cores
def test_hessian_vector_products_match_finite_differences(monkeypatch):
  """The Probe's products (double back-propagation, batch norm and resizes built to differentiate
  twice) against central differences of the gradient. ReLU and max-pool are smoothed (softplus,
  average) for both: at their kinks the gradient jumps, which differences of it count and a
  Hessian does not."""
  monkeypatch.setattr(tf.nn, 'relu', tf.nn.softplus)
  monkeypatch.setattr(tf.nn, 'max_pool2d', tf.nn.avg_pool2d)
  model = _tiny_supernet(num_layers=2, num_blocks=2)
  model.alpha.assign(tf.random.normal(model.alpha.shape, stddev=0.5, seed=1))
  model.beta.assign(tf.random.normal(model.beta.shape, stddev=0.5, seed=2))
  images, labels = _batch(17)
  probe = sharpness.Probe(model, images, labels, iterations=3)
  rng = np.random.default_rng(0)
  variables = model.arch_variables
  vectors = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
  flat = lambda arrays: np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
  exact = flat(probe._hvp([tf.constant(v) for v in vectors]))

  @tf.function
  def gradient():
    with tf.GradientTape() as tape:
      loss = sharpness.twice_differentiable_loss(labels, model(images, training=True))
    return tape.gradient(loss, variables)

  def gradient_at(step):
    for variable, v in zip(variables, vectors):
      variable.assign_add(step * v)
    try:
      return flat(gradient())
    finally:
      for variable, v in zip(variables, vectors):
        variable.assign_sub(step * v)

  estimate = (gradient_at(1e-3) - gradient_at(-1e-3)) / 2e-3
  assert np.linalg.norm(exact) > 1e-3
  assert np.linalg.norm(exact - estimate) < 0.02 * np.linalg.norm(exact), (exact[:6], estimate[:6])
  assert np.isfinite(probe.measure().eigenvalue)


@pytest.mark.parametrize('eigenvalues,largest', [
    ([3.0, 1.0, -0.5, 0.0, 0.2], 3.0),     # the largest magnitude is the largest
    ([-4.0, 1.5, 0.2, 0.0, -1.0], 1.5),    # the largest magnitude is negative: shifted
    ([-4.0, -2.0, -1.0, -3.0, -2.5], -1.0),  # all negative
])
def test_dominant_eigenvalue_is_the_largest_algebraic_one(eigenvalues, largest):
  basis, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))
  matrix = basis @ np.diag(eigenvalues) @ basis.T
  # Two blocks of shapes (2,) and (3,): the products see a list of arrays, as alpha and beta.
  hvp = lambda v: np.split(matrix @ np.concatenate(v), [2])
  assert sharpness.dominant_eigenvalue(hvp, [(2,), (3,)], 300) == pytest.approx(largest, rel=1e-3)


def _records(values, start=10):
  genotype = Genotype(cell=sampling.random_cell(np.random.default_rng(0)), path=(0, 0)).to_dict()
  return [{'step': start + 10 * i, 'genotype': genotype, 'dominant_eigenvalue': v}
          for i, v in enumerate(values)]


def test_sharpness_stop_as_zela_et_al_define_it():
  flat = _records([1.0, 1.1, 1.0, 1.2, 1.1, 1.2])
  assert arch_history.sharpness_stop(flat, 0, 3) is None  # ratio 1.03 / 1.17 > 0.75
  growing = _records([1.0, 1.0, 1.0, 1.5, 1.6, 1.7])
  reason, kept = arch_history.sharpness_stop(growing, 0, 3)
  assert 'grew from a mean of 1 to 1.6' in reason and kept['step'] == 30  # a window back
  assert arch_history.sharpness_stop(growing, 0, 0) is None  # off
  assert arch_history.sharpness_stop(growing, 0, 4) is None  # not two windows yet
  assert arch_history.sharpness_stop(growing, 30, 3) is None  # only after arch_start_step


def test_bad_sharpness_settings_are_one_line_errors():
  with pytest.raises(UserInputError, match='stop_on_sharpness=3 needs .*track_sharpness'):
    configs.search_config(stop_on_sharpness=3).validate()
  with pytest.raises(UserInputError, match='track_sharpness = 1: expected a bool'):
    configs.search_config(track_sharpness=1)
  with pytest.raises(UserInputError, match='sharpness_iterations=0'):
    configs.search_config(track_sharpness=True, sharpness_iterations=0).validate()
