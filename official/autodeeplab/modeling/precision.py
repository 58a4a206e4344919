"""Mixed precision: the Keras dtype policy the models are built under, and the device check.

A model built under 'mixed_bfloat16' or 'mixed_float16' keeps float32 variables and computes its
activations in the reduced type: Keras casts inputs and kernels where they enter a Keras layer.
Raw TensorFlow ops are not reached by that cast, so the modeling code keeps them in the
activations' type itself (`ops.resize_bilinear` casts back after `tf.image.resize`, which returns
float32; zeros are made in the states' type), and keeps in float32 what loses too much in 8 or 11
bits of mantissa: batch-norm moments (`batch_norm.BatchNormalization`, `fused_cell.batch_norm`),
alpha, beta and their softmaxes (`autocast=False`), logits, losses and metrics.

`policy(name)` is a context manager (the policy is process-global in Keras; tests build models of
several precisions in one process). `check_kernels` runs a tiny forward and backward pass of every
kind of op the models use, eagerly, in the asked type: a device without a kernel for one of them
is found at start-up, as one line, instead of at the first traced step.
"""
from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.utils import runtime as runtime_lib


@contextlib.contextmanager
def policy(name: str):
  """Builds (and calls) models under the Keras dtype policy `name` ('float32',
  'mixed_bfloat16', 'mixed_float16' or a `Runtime.policy`), restoring the previous one after."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def set_policy(runtime: runtime_lib.Runtime) -> None:
  """Sets the process's Keras policy from the runtime's precision (what `launch.py` does)."""
  keras.mixed_precision.set_global_policy(runtime.policy)


def _kernel_checks(dtype: tf.DType):
  """(what, function of a [2, 9, 9, 8] `dtype` tensor) for each kind of op the models run."""
  kernel = lambda *shape: tf.cast(tf.random.stateless_uniform(shape, [1, 2]), dtype)
  ones, zeros = tf.ones([8]), tf.zeros([8])
  conv = keras.layers.Conv2D(8, 3, dilation_rate=2, padding='same', dtype=dtype.name)
  return [
      ('Conv2D', lambda x: tf.nn.conv2d(x, kernel(3, 3, 8, 8), 2, 'SAME')),
      ('atrous Conv2D', conv),
      ('DepthwiseConv2dNative', lambda x: tf.nn.depthwise_conv2d(
          x, kernel(5, 5, 8, 2), [1, 1, 1, 1], 'SAME', dilations=[2, 2])),
      ('MatMul', lambda x: tf.matmul(tf.reshape(x, [-1, 8]), kernel(8, 8))),
      ('MaxPool', lambda x: tf.nn.max_pool2d(x, 3, 1, 'SAME')),
      ('AvgPool', lambda x: tf.nn.avg_pool2d(x, 3, 1, 'SAME')),
      ('ResizeBilinear', lambda x: tf.image.resize(x, [17, 17])),
      ('FusedBatchNormV3', lambda x: tf.compat.v1.nn.fused_batch_norm(
          x, ones, zeros, mean=zeros, variance=ones, is_training=True)[0]),
      ('FusedBatchNormV3 (inference)', lambda x: tf.compat.v1.nn.fused_batch_norm(
          x, ones, zeros, mean=zeros, variance=ones, is_training=False)[0]),
      ('Softmax', tf.nn.softmax),
  ]


def check_kernels(precision: str, device: str = 'cpu') -> None:
  """Raises a one-line UserInputError when the device has no `precision` kernel (forward or
  backward) for an op the models need; nothing to check for float32."""
  if precision == 'float32':
    return
  dtype = tf.as_dtype(precision)
  x = tf.cast(tf.random.stateless_uniform([2, 9, 9, 8], [3, 4]), dtype)
  for what, fn in _kernel_checks(dtype):
    try:
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
      tape.gradient(y, x)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
            tf.errors.UnimplementedError) as e:
      first = str(getattr(e, 'message', e)).strip().splitlines()[0][:160]
      raise UserInputError(
          f'precision={precision}: this {device.upper()} has no {precision} kernel for {what} '
          f'({first}); choices: {", ".join(runtime_lib.PRECISIONS)}') from None
