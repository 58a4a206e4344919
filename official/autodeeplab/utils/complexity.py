"""Parameter and multiply-add counts of a Keras model, by component.

Convention (the one under which the paper's Table 2 is reproduced):
* params: trainable parameters: conv kernels and biases and BN scale/offset (BN moving averages are
  not parameters);
* multiply-adds: those of the convolutions and matrix products, for one image of the given size in
  inference mode, read off the traced graph: a KxK conv producing H_out x W_out x C_out from C_in
  channels (C_in per group) counts K*K*C_in*C_out*H_out*W_out; a depthwise conv
  K*K*C_out*H_out*W_out. BN (foldable into the convs), ReLU, additions, pooling and bilinear
  resizing are not counted.
"""
from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf

COMPONENTS = ('stem', 'cells', 'aspp', 'decoder')


def count_parameters(model) -> int:
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _component(op_name: str) -> str:
  if '/cell_' in op_name:
    return 'cells'
  for key, component in (('/aspp', 'aspp'), ('/decoder', 'decoder'), ('/backbone', 'stem')):
    if key in op_name:
      return component
  return 'other'


def _logical_output_shape(op) -> list[int]:
  """TensorFlow runs an atrous conv as SpaceToBatch, conv, BatchToSpace (rate**2 padded
  'images'); the conv's logical output is the BatchToSpace result."""
  for consumer in op.outputs[0].consumers():
    if consumer.type == 'BatchToSpaceND':
      return consumer.outputs[0].shape.as_list()
  return op.outputs[0].shape.as_list()


def _op_multiply_adds(op) -> int:
  if op.type == 'Conv2D':
    kh, kw, c_in, c_out = op.inputs[1].shape.as_list()
    return kh * kw * c_in * c_out * math.prod(_logical_output_shape(op)[:-1])
  if op.type == 'DepthwiseConv2dNative':
    kh, kw, _, _ = op.inputs[1].shape.as_list()
    return kh * kw * math.prod(_logical_output_shape(op))
  if op.type in ('MatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
    a = op.inputs[0].shape.as_list()
    transpose_a = op.get_attr('transpose_a') if op.type == 'MatMul' else op.get_attr('adj_x')
    k = a[-2] if transpose_a else a[-1]
    return k * math.prod(op.outputs[0].shape.as_list())
  return 0


def multiply_adds(model, height: int, width: int) -> dict[str, int]:
  """{component: multiply-adds} for one height x width image, plus 'total'."""
  fn = tf.function(lambda images: model(images, training=False))
  graph = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
  counts = collections.Counter()
  for op in graph.get_operations():
    counts[_component(op.name)] += _op_multiply_adds(op)
  result = {c: int(counts[c]) for c in COMPONENTS}
  if counts['other']:
    result['other'] = int(counts['other'])
  result['total'] = int(sum(counts.values()))
  return result


def tf_profiler_multiply_adds(model, height: int, width: int) -> int:
  """Half the float ops TensorFlow's own profiler reports for the inference graph.

  This is how TensorFlow model code of the paper's time reported Multi-Adds; it differs from
  `multiply_adds` in counting the padded SpaceToBatch shapes of atrous convs and in not counting
  depthwise convs.
  """
  fn = tf.function(lambda images: model(images, training=False))
  graph = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops // 2)


def parameters_by_component(model) -> dict[str, int]:
  counts = collections.Counter()
  for v in model.trainable_variables:
    counts[_component('/' + v.path)] += int(np.prod(v.shape))
  return {c: counts[c] for c in COMPONENTS if counts[c]} | (
      {'other': counts['other']} if counts['other'] else {})
