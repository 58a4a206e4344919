"""The fast supernet (one foldl over a full layer, zero nodes, fused cells) computes eq. (6) as the
plain node-by-node loop of trellis_reference does: same logits, same gradients, shared weights."""
import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import supernet
from official.autodeeplab.modeling import trellis_reference
from official.autodeeplab.search import space


def close(a, b, name):
  """Equal up to float32 accumulation: 1e-3 of the largest magnitude (stem gradients reach 1e2)."""
  b = np.asarray(b)
  np.testing.assert_allclose(np.asarray(a), b, rtol=1e-3, atol=1e-3 * np.abs(b).max() + 1e-6,
                             err_msg=name)


def test_supernet_is_eq6_at_three_layers():
  """Three layers: layer 2 reaches every level, so each kind of trellis edge is checked."""
  keras.utils.set_random_seed(1)
  rng = np.random.default_rng(1)
  model = supernet.Supernet(3, num_layers=3, num_blocks=2, filter_multiplier=2)
  model.build((None, None, None, 3))
  # Well separated architecture weights, so a swapped beta or alpha row would show.
  model.alpha.assign(rng.normal(size=model.alpha.shape))
  model.beta.assign(rng.normal(size=model.beta.shape))
  images = tf.constant(rng.normal(size=[2, 33, 33, 3]), tf.float32)
  cells = trellis_reference.node_cells(model)
  assert sorted(cells) == [(l, k) for l in range(3) for k in space.levels_at_layer(l)]
  trellis_reference.share_cell_weights(model, cells, images)
  cotangent = tf.constant(rng.normal(size=[2, 33, 33, 3]), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    fast = model(images, training=True)
    slow = trellis_reference.reference_logits(model, cells, images)
    fast_loss, slow_loss = tf.reduce_sum(fast * cotangent), tf.reduce_sum(slow * cotangent)
  np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)
  shared = [model.alpha, model.beta] + [
      v for v in model.trainable_variables
      if not any(v is w for w in model.level_weights + [model.alpha, model.beta])]
  for v, a, b in zip(shared, tape.gradient(fast_loss, shared), tape.gradient(slow_loss, shared)):
    close(a, b, v.path)
  # Per-level weight rows: the preprocessing slices' gradients come through the rows in both;
  # the reference's cell kernels are Keras variables, packed back into the rows' layout.
  cell_rows = trellis_reference.cell_gradients_as_rows(model, cells, tape, slow_loss)
  for level, (v, fast_grad, pre_grad) in enumerate(zip(
      model.level_weights, tape.gradient(fast_loss, model.level_weights),
      tape.gradient(slow_loss, model.level_weights))):
    reference = cell_rows[level] + (0 if pre_grad is None else tf.convert_to_tensor(pre_grad))
    close(tf.convert_to_tensor(fast_grad), reference, f'level {level}')
