"""ASPP and the DeepLabv3+ decoder of the retrain network (paper sec. 5.2)."""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
  """DeepLab's atrous rates: (6, 12, 18) at output stride 16, doubled at 8, halved at 32."""
  return tuple(int(r * 16 // output_stride) for r in (6, 12, 18))


@keras.saving.register_keras_serializable('autodeeplab')
class ASPP(ops.TypedConfig, tracking.CheckpointLists, keras.layers.Layer):
  """Atrous spatial pyramid pooling: 1x1, three 3x3 atrous convs, image pooling; 1x1 projection.

  Args:
    output_stride: stride of the features it reads (sets the rates).
    filters: filters of every branch and of the projection (256 in DeepLab).
    settings: conv/BN settings.
  """

  def __init__(self, output_stride: int, filters: int = 256,
               settings: ops.LayerSettings = ops.LayerSettings(), **kwargs):
    super().__init__(**kwargs)
    self.output_stride, self.filters = output_stride, filters
    self.settings = s = settings
    self.branches = [s.conv(filters, 1)] + [s.conv(filters, 3, dilation_rate=r)
                                            for r in aspp_rates(output_stride)]
    self.pool_conv = s.conv(filters, 1)
    self.norms = [s.batch_norm() for _ in range(5)]
    self.project, self.project_bn = s.conv(filters, 1), s.batch_norm()

  def build(self, input_shape):
    for conv in self.branches + [self.pool_conv]:
      conv.build(input_shape)
    for bn in self.norms + [self.project_bn]:
      bn.build((None, None, None, self.filters))
    self.project.build((None, None, None, 5 * self.filters))
    self.built = True

  def call(self, x, training=False):
    outputs = [tf.nn.relu(bn(conv(x), training=training))
               for conv, bn in zip(self.branches, self.norms)]
    pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    pooled = tf.nn.relu(self.norms[4](self.pool_conv(pooled), training=training))
    outputs.append(tf.broadcast_to(pooled, tf.shape(outputs[0])))
    return tf.nn.relu(self.project_bn(self.project(tf.concat(outputs, -1)), training=training))

  def get_config(self):
    return self.config_of(output_stride=self.output_stride, filters=self.filters,
                          settings=self.settings)


@keras.saving.register_keras_serializable('autodeeplab')
class Decoder(ops.TypedConfig, tracking.CheckpointLists, keras.layers.Layer):
  """DeepLabv3+ decoder: 48-channel projection of stride-4 features, two 3x3 convs of 256,
  1x1 classifier; logits at stride 4 (the segmenter upsamples them to the input size).

  Args:
    num_classes: output channels.
    low_level_filters: projection width of the low-level features (48).
    filters: width of the two 3x3 convs (256).
    settings: conv/BN settings.
  """

  def __init__(self, num_classes: int, low_level_filters: int = 48, filters: int = 256,
               settings: ops.LayerSettings = ops.LayerSettings(), **kwargs):
    super().__init__(**kwargs)
    self.num_classes, self.low_level_filters, self.filters = num_classes, low_level_filters, filters
    self.settings = s = settings
    self.low_conv, self.low_bn = s.conv(low_level_filters, 1), s.batch_norm()
    self.convs = [s.conv(filters, 3), s.conv(filters, 3)]
    self.norms = [s.batch_norm(), s.batch_norm()]
    self.classifier = s.conv(num_classes, 1, use_bias=True)

  def build(self, input_shapes):
    high_shape, low_shape = input_shapes
    self.low_conv.build(low_shape)
    self.low_bn.build((None, None, None, self.low_level_filters))
    channels = high_shape[-1] + self.low_level_filters
    for conv, bn in zip(self.convs, self.norms):
      conv.build((None, None, None, channels))
      bn.build((None, None, None, self.filters))
      channels = self.filters
    self.classifier.build((None, None, None, self.filters))
    self.built = True

  def call(self, inputs, training=False):
    high, low = inputs
    low = tf.nn.relu(self.low_bn(self.low_conv(low), training=training))
    x = tf.concat([ops.resize_bilinear(high, ops.spatial_size(low)), low], -1)
    for conv, bn in zip(self.convs, self.norms):
      x = tf.nn.relu(bn(conv(x), training=training))
    return self.classifier(x)

  def get_config(self):
    return self.config_of(num_classes=self.num_classes, low_level_filters=self.low_level_filters,
                          filters=self.filters, settings=self.settings)
