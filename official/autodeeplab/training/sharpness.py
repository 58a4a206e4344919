"""How sharp the architecture loss is: the dominant eigenvalue of the Hessian of the trainB loss
with respect to alpha and beta (`search_config.track_sharpness`).

Why: Zela et al. ("Understanding and robustifying differentiable architecture search", ICLR
2020) found that DARTS-style searches degenerate (towards parameter-free ops, and architectures
that retrain poorly) when this eigenvalue grows during the search, and that stopping early on its
growth avoids that. The Hessian is never formed: a Hessian-vector product is the gradient of
(gradient . v), by differentiating twice (double back-propagation), and power iteration on it
finds the largest-magnitude eigenvalue; when that is negative, a second power iteration on
H - lambda I finds the largest algebraic one (the curvature of the sharpest ascent direction).
The batch is fixed (the first trainB batch), so measurements at different steps differ only by
alpha, beta and the weights.
"""
from __future__ import annotations

import time
import typing

import numpy as np
import tensorflow as tf

from official.autodeeplab.data.input_pipeline import IGNORE_LABEL
from official.autodeeplab.modeling import batch_norm
from official.autodeeplab.modeling import ops


def twice_differentiable_loss(labels, logits) -> tf.Tensor:
  """The search's loss (`losses.segmentation_loss`: mean pixel cross-entropy, ignored pixels
  excluded) from log-softmax: TensorFlow's fused sparse cross-entropy refuses a second
  derivative."""
  labels = tf.cast(labels, tf.int32)
  valid = tf.cast(tf.not_equal(labels, IGNORE_LABEL), tf.float32)
  safe = tf.where(labels == IGNORE_LABEL, 0, labels)
  log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32))
  picked = tf.gather(log_p, safe, axis=-1, batch_dims=3)
  return -tf.reduce_sum(picked * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def hessian_vector_product(loss_fn, variables, vectors) -> list[tf.Tensor]:
  """H v for the Hessian of `loss_fn()` with respect to `variables` (double back-propagation);
  `vectors` has one tensor per variable, of its shape."""
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      loss = loss_fn()
    grads = inner.gradient(loss, variables)
    dot = tf.add_n([tf.reduce_sum(g * tf.cast(v, g.dtype)) for g, v in zip(grads, vectors)])
  return outer.gradient(dot, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def power_iteration(hvp, shapes, iterations: int, seed: int = 0, shift: float = 0.0) -> float:
  """The largest-magnitude eigenvalue of H - shift I (+ shift), `hvp` computing H v for a list
  of arrays of `shapes`: `iterations` steps from a seeded random start."""
  rng = np.random.default_rng(seed)
  v = [rng.standard_normal(shape) for shape in shapes]
  norm = np.sqrt(sum(np.sum(x * x) for x in v))
  v = [x / norm for x in v]
  eigenvalue = 0.0
  for _ in range(iterations):
    w = [np.asarray(h, np.float64) - shift * x for h, x in zip(hvp(v), v)]
    eigenvalue = float(sum(np.sum(a * b) for a, b in zip(v, w)))
    norm = np.sqrt(sum(np.sum(x * x) for x in w))
    if norm == 0:  # v is in the null space: H - shift I has eigenvalue 0 there
      break
    v = [x / norm for x in w]
  return eigenvalue + shift


def dominant_eigenvalue(hvp, shapes, iterations: int, seed: int = 0) -> float:
  """The largest (algebraic) eigenvalue of H: power iteration, shifted when the
  largest-magnitude eigenvalue is negative."""
  first = power_iteration(hvp, shapes, iterations, seed)
  if first >= 0:
    return first
  return power_iteration(hvp, shapes, iterations, seed + 1, shift=first)


class Measurement(typing.NamedTuple):
  eigenvalue: float
  seconds: float


class Probe:
  """The supernet's architecture-Hessian eigenvalue on one fixed batch, measured on demand.

  The supernet runs in training mode (as in the search: batch moments), and the moving averages
  that mode updates in its stem and heads are put back after each measurement, so tracking
  changes nothing the search computes.
  """

  def __init__(self, model, images, labels, iterations: int, seed: int = 0):
    self.model, self.iterations, self.seed = model, iterations, seed
    self.images, self.labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
    variables = model.arch_variables
    self._shapes = [tuple(v.shape) for v in variables]

    def loss_fn():
      return twice_differentiable_loss(self.labels, self.model(self.images, training=True,
                                                                  unrolled=True))

    def hvp(vectors):
      # TensorFlow marks the fused batch norm's and the bilinear resize's gradients as not
      # differentiable: both are built from plain ops here (the resize as matrix products).
      with batch_norm.twice_differentiable(), ops.xla_safe_resize():
        return hessian_vector_product(loss_fn, variables, vectors)

    self._hvp = tf.function(hvp)

  def measure(self) -> Measurement:
    start = time.perf_counter()
    kept = [v.numpy() for v in self.model.non_trainable_variables]
    try:
      value = dominant_eigenvalue(
          lambda v: [h.numpy() for h in self._hvp([tf.constant(x, tf.float32) for x in v])],
          self._shapes, self.iterations, self.seed)
    finally:
      for variable, value_before in zip(self.model.non_trainable_variables, kept):
        variable.assign(value_before)
    return Measurement(value, time.perf_counter() - start)
