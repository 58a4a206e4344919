"""The search supernet on a tiny trellis: shapes, gradients, beta normalisation, variable sets."""
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.modeling import supernet
from official.autodeeplab.search import decode
from official.autodeeplab.search import space

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('supernet')

NUM_CLASSES, SIZE, LAYERS = 5, 33, 3  # layer 2 reaches the 4th level


@pytest.fixture(scope='session')
def model_and_grads():
  model = supernet.Supernet(NUM_CLASSES, num_layers=LAYERS, filter_multiplier=2)
  model.build((None, None, None, 3))
  rng = np.random.default_rng(0)
  images = tf.constant(rng.normal(size=[2, SIZE, SIZE, 3]), tf.float32)
  labels = tf.constant(rng.integers(0, NUM_CLASSES, [2, SIZE, SIZE]), tf.int32)

  @tf.function
  def grads(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return logits, tape.gradient(loss, model.trainable_variables)

  logits, g = grads(images, labels)
  return (model, logits, dict(zip([id(v) for v in model.trainable_variables], g)),
          (images, labels, grads))


def test_output_shape(model_and_grads):
  _, logits, _, _ = model_and_grads
  assert logits.shape == (2, SIZE, SIZE, NUM_CLASSES)
  assert np.isfinite(logits.numpy()).all()


def test_gradients_reach_every_alpha_beta_and_weight(model_and_grads):
  model, _, grads, _ = model_and_grads
  alpha_grad = grads[id(model.alpha)].numpy()
  zero = space.PRIMITIVES.index('zero')
  # 'zero' contributes nothing, yet its alpha gets a gradient through the softmax.
  assert (alpha_grad != 0).all(), 'every alpha entry gets a gradient'
  beta_grad = grads[id(model.beta)].numpy()
  mask = space.transition_mask(LAYERS)
  assert (beta_grad[mask] != 0).all() and (beta_grad[~mask] == 0).all()
  for v in model.weight_variables:
    g = grads[id(v)]
    assert g is not None and np.abs(g.numpy()).max() > 0, v.path
  del zero


def test_level_kernels_get_gradients_in_every_layer_where_used(model_and_grads):
  model, _, grads, _ = model_and_grads
  for k, v in enumerate(model.level_weights):
    per_layer = np.abs(grads[id(v)].numpy()).max(axis=1)
    # level k exists from layer k - 1 on (layer 0 has levels 0 and 1)
    first = max(0, k - 1)
    assert (per_layer[first:] > 0).all(), (k, per_layer)


def test_outgoing_betas_sum_to_one(model_and_grads):
  model, _, _, _ = model_and_grads
  model.beta.assign(np.random.default_rng(3).normal(size=model.beta.shape))
  probs = model.transition_probabilities().numpy()
  mask = space.transition_mask(LAYERS)
  np.testing.assert_allclose(probs.sum(-1), mask.any(-1), atol=1e-6)
  assert (probs[~mask] == 0).all()
  # the NumPy normalisation decoding uses is the same function
  np.testing.assert_allclose(probs, decode.transition_probabilities(model.beta.numpy()),
                             atol=1e-6)


def test_arch_and_weight_variables_are_disjoint_and_complete(model_and_grads):
  model = model_and_grads[0]
  arch = {id(v) for v in model.arch_variables}
  weights = {id(v) for v in model.weight_variables}
  assert arch == {id(model.alpha), id(model.beta)}
  assert not arch & weights
  assert arch | weights == {id(v) for v in model.trainable_variables}
  # BN offsets are also named 'beta': selection is by identity, not by name.
  assert any(v.name == 'beta' for v in model.weight_variables)


def test_checkpoint_holds_every_variable(model_and_grads, tmp_path):
  model = model_and_grads[0]
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
  saved = {name for name, _ in tf.train.list_variables(path)}
  saved_values = sum(1 for name in saved if name.endswith('.ATTRIBUTES/VARIABLE_VALUE'))
  assert saved_values == len(model.variables)


@pytest.mark.slow
def test_recompute_gives_the_same_gradients(model_and_grads):
  model, _, _, (images, labels, grads_fn) = model_and_grads
  model_grads = grads_fn(images, labels)[1]
  twin = supernet.Supernet(NUM_CLASSES, num_layers=LAYERS, filter_multiplier=2, recompute=True)
  twin.build((None, None, None, 3))
  for a, b in zip(twin.variables, model.variables):
    a.assign(b)

  def twin_grads():  # the written-out recomputing backward (modeling/layer_loop.py)
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, twin(images)))
    return tape.gradient(loss, twin.trainable_variables)

  for grads in (twin_grads(), tf.function(twin_grads)()):  # eager, then traced
    for v, a, b in zip(model.trainable_variables, grads, model_grads):
      np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-3, err_msg=v.path)
