"""The fast search cell equals the readable reference (search_cell.Cell): outputs and gradients."""
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.modeling import fused_cell
from official.autodeeplab.modeling import search_cell
from official.autodeeplab.search import space


@pytest.mark.parametrize('channels,num_blocks,num_paths', [(4, 5, 3), (3, 2, 2), (2, 3, 1)])
def test_fused_cell_matches_reference(channels, num_blocks, num_paths):
  rng = np.random.default_rng(channels)
  batch, size = 2, 9
  cell = search_cell.Cell(channels, num_blocks)
  h_prev = tf.constant(rng.normal(size=[num_paths * batch, size, size, channels]), tf.float32)
  h_prev_prev = tf.constant(rng.normal(size=[batch, size, size, channels]), tf.float32)
  alpha = tf.Variable(rng.normal(size=[space.num_edges(num_blocks), 8]), dtype=tf.float32)
  cotangent = None

  def reference():
    w = tf.nn.softmax(alpha)
    return tf.concat([cell(h_prev[p * batch:(p + 1) * batch], h_prev_prev, w)
                      for p in range(num_paths)], 0)

  reference()  # builds the Keras layers
  layout = fused_cell.cell_layout(channels, num_blocks)
  flat = tf.Variable(fused_cell.pack_reference_cell(cell, layout))
  assert flat.shape == (layout.size,)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([h_prev, h_prev_prev])
    mixing = fused_cell.mixing_weights(tf.nn.softmax(alpha), num_blocks)
    fast = fused_cell.fused_cell(h_prev, h_prev_prev, mixing, layout.unpack(flat), num_paths,
                                 num_blocks)
    slow = reference()
    cotangent = tf.constant(rng.normal(size=fast.shape), tf.float32)
    fast_loss, slow_loss = tf.reduce_sum(fast * cotangent), tf.reduce_sum(slow * cotangent)
  assert fast.shape == (num_paths * batch, size, size, num_blocks * channels)
  np.testing.assert_allclose(fast, slow, atol=1e-4)
  inputs = [h_prev, h_prev_prev, alpha]
  for a, b in zip(tape.gradient(fast_loss, inputs), tape.gradient(slow_loss, inputs)):
    np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)
  # Kernel gradients: write the reference's gradients into its variables and pack them.
  kernel_vars = [v for v in cell.trainable_variables]
  slow_kernel_grads = tape.gradient(slow_loss, kernel_vars)
  for v, g in zip(kernel_vars, slow_kernel_grads):
    v.assign(g)
  np.testing.assert_allclose(tape.gradient(fast_loss, flat),
                             fused_cell.pack_reference_cell(cell, layout), atol=2e-4, rtol=1e-4)


def test_readers_are_suffixes_of_blocks():
  assert list(fused_cell.readers(0, 5)) == [0, 1, 2, 3, 4]
  assert list(fused_cell.readers(1, 5)) == [0, 1, 2, 3, 4]
  assert list(fused_cell.readers(2, 5)) == [1, 2, 3, 4]
  assert list(fused_cell.readers(6, 5)) == []


@pytest.mark.parametrize('groups', [1, 3])
def test_batch_norm_gradient_matches_automatic_differentiation(groups):
  rng = np.random.default_rng(groups)
  x = tf.constant(rng.normal(2.0, 3.0, size=[groups * 2, 5, 4, 3, 6]), tf.float32)
  cotangent = tf.constant(rng.normal(size=x.shape), tf.float32)

  def plain(x):
    grouped = tf.reshape(x, [groups, -1, *x.shape[1:]])
    mean, variance = tf.nn.moments(grouped, [1, 2, 3], keepdims=True)
    return tf.reshape((grouped - mean) * tf.math.rsqrt(variance + 1e-5), x.shape)

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    fast = tf.reshape(fused_cell.batch_norm(tf.reshape(x, [groups, -1, *x.shape[1:]]),
                                            [1, 2, 3], 1e-5), x.shape)
    slow = plain(x)
    fast_loss, slow_loss = tf.reduce_sum(fast * cotangent), tf.reduce_sum(slow * cotangent)
  np.testing.assert_allclose(fast, slow, atol=1e-5)
  np.testing.assert_allclose(tape.gradient(fast_loss, x), tape.gradient(slow_loss, x), atol=1e-4,
                             rtol=1e-4)
