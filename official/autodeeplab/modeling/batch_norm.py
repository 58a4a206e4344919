"""Keras BatchNormalization computed by TensorFlow's fused batch-norm kernel.

Keras 3's BatchNormalization builds batch norm from ~15 small ops (moments, moving-average
updates, the normalisation) and as many again in the backward pass; TensorFlow has one fused kernel
for each direction (FusedBatchNormV3 / FusedBatchNormGradV3), which also updates the moving
averages itself. The retrain network has a BN after nearly every conv, so the fused form makes its
train step's graph markedly smaller and faster (`benchmarks/train_step.py`, docs/performance.md).

Same variables, same configuration, same checkpoints as the Keras layer; the differences:
* the moving variance is updated with the unbiased (Bessel-corrected) batch variance, as TF-slim's
  fused batch norm did in Google's DeepLab code (Keras uses the biased one);
* cross-replica (`synchronized=True`), masked, non-NHWC or renorm uses go to the Keras path.

Under a mixed-precision policy the kernel takes bfloat16 / float16 inputs and returns outputs of
that type, while its scale, offset, moments and moving averages stay float32 (the variables are
not autocast), which is what Keras' own layer does in more ops. On a CPU, oneDNN's bfloat16 batch
norm ran slower than its float32 one (forward and gradient, docs/performance.md), so there the
input is cast to float32 for the kernel and the output cast back: the layer's `float32_kernel`,
which the model builders take from the runtime (`Runtime.float32_batch_norm`, through
`ops.LayerSettings`).

Second derivatives: the fused kernel's gradient ignores what flows back into its batch moments,
which is exact for one derivative but drops terms of a second one. Inside `twice_differentiable()`
(while a Hessian-vector product is traced: `training/sharpness.py`) this layer and the search
cell's batch norm (`fused_cell.batch_norm`) are built from plain ops that differentiate twice.
"""
from __future__ import annotations

import contextlib
import contextvars

import keras
import tensorflow as tf


_FUSED_TYPES = (tf.float32, tf.bfloat16, tf.float16)  # inputs; statistics are float32
_TWICE_DIFFERENTIABLE = contextvars.ContextVar('twice_differentiable', default=False)


@contextlib.contextmanager
def twice_differentiable():
  """While tracing inside it, batch norm is built from ops that differentiate twice."""
  token = _TWICE_DIFFERENTIABLE.set(True)
  try:
    yield
  finally:
    _TWICE_DIFFERENTIABLE.reset(token)


def twice_differentiable_now() -> bool:
  return _TWICE_DIFFERENTIABLE.get()


@keras.saving.register_keras_serializable('autodeeplab')
class BatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` on the fused kernel (NHWC, channels last).

  Args:
    float32_kernel: bfloat16 / float16 inputs go through the float32 kernel (the CPU's faster
      choice) instead of the kernel of their own type (GPUs, TPUs).
    **kwargs: Keras' BatchNormalization arguments.
  """

  def __init__(self, float32_kernel: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.float32_kernel = bool(float32_kernel)

  def get_config(self):
    return {**super().get_config(), 'float32_kernel': self.float32_kernel}

  def _fusable(self, inputs, mask) -> bool:
    return (not self.synchronized and not self.renorm and mask is None and
            inputs.shape.rank == 4 and self.axis in (3, -1) and
            inputs.dtype in _FUSED_TYPES)

  def call(self, inputs, training=None, mask=None):
    inputs = tf.convert_to_tensor(inputs)
    if not self._fusable(inputs, mask) or twice_differentiable_now():
      return super().call(inputs, training=training, mask=mask)
    if inputs.dtype != tf.float32 and self.float32_kernel:
      return tf.cast(self._fused(tf.cast(inputs, tf.float32), training), inputs.dtype)
    return self._fused(inputs, training)

  def _fused(self, inputs, training):
    channels = inputs.shape[-1]
    scale = self.gamma if self.scale else tf.ones([channels], tf.float32)
    offset = self.beta if self.center else tf.zeros([channels], tf.float32)
    if training and self.trainable:
      outputs, moving_mean, moving_variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, scale, offset, mean=self.moving_mean, variance=self.moving_variance,
          epsilon=self.epsilon, is_training=True, exponential_avg_factor=1.0 - self.momentum)
      self.moving_mean.assign(moving_mean)
      self.moving_variance.assign(moving_variance)
      return outputs
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale, offset, mean=self.moving_mean, variance=self.moving_variance,
        epsilon=self.epsilon, is_training=False)
    return outputs
