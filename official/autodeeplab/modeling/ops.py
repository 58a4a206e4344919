"""The 8 candidate operations as one table, and the conv / BN settings every layer receives.

`build_op(name, channels, stride, settings)` builds the op described by `space.OP_SPECS` as a Keras
layer taking one NHWC tensor with `channels` channels (stride 1) or halving its resolution (stride
2, retrain cells moving to a coarser level), one builder per kind of op. The same builders make the
search's MixedOp (`search_cell.py`) and the retrain cell (`cell.py`); the two uses differ only in
`LayerSettings`:

* search (`SEARCH_SETTINGS`): BN without scale/offset, always normalising with the batch moments
  (the relaxed supernet is never run in inference mode), atrous ops depthwise-separable as in the
  DARTS relaxation the paper reuses ([49]: ReLU, dilated depthwise conv, 1x1 conv, BN);
* retrain (`LayerSettings()`): affine BN with moving averages (Google's decay and epsilon), atrous
  ops as full KxK convolutions with rate 2, as in Google's released 'hnasnet' code.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import batch_norm
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import space


@dataclasses.dataclass(frozen=True)
class LayerSettings:
  """Conv and normalisation settings, passed once to every layer instead of one argument each.

  Attributes:
    batch_norm_momentum: moving-average decay of BN statistics (Keras `momentum`).
    batch_norm_epsilon: BN variance epsilon.
    batch_norm_affine: whether BN learns a scale and an offset.
    synchronized: cross-replica BN moments under a tf.distribute strategy.
    separable_atrous: atrous ops as depthwise-separable (search) or full (retrain) convolutions.
    weight_decay: L2 penalty on conv kernels (never on BN parameters), added to the loss, so it
      reaches the gradient as the paper's weight decay (Keras optimizers' own decay is decoupled).
    float32_batch_norm: reduced-precision BN inputs computed by the float32 kernel (a runtime
      choice: `Runtime.float32_batch_norm`; no effect in float32).
  """
  batch_norm_momentum: float = sizes.BATCH_NORM_MOMENTUM
  batch_norm_epsilon: float = sizes.BATCH_NORM_EPSILON
  batch_norm_affine: bool = True
  synchronized: bool = False
  separable_atrous: bool = False
  weight_decay: float = 0.0
  float32_batch_norm: bool = True

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: dict | None) -> 'LayerSettings':
    return cls(**(data or {}))

  def kernel_initializer(self):
    # Variance scaling (factor 1/3, fan-in, uniform), the initialisation of Google's NAS code.
    return keras.initializers.VarianceScaling(1.0 / 3, mode='fan_in', distribution='uniform')

  def kernel_regularizer(self):
    # weight_decay / 2 * sum(w^2), as TF-slim's l2_regularizer (scale * tf.nn.l2_loss) in Google's
    # code: its gradient is weight_decay * w, the paper's (and PyTorch SGD's) weight decay.
    # Keras' L2(l) is l * sum(w^2), so it gets half the decay.
    return keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None

  def conv(self, filters: int, kernel_size: int, strides: int = 1, dilation_rate: int = 1,
           name: str | None = None, use_bias: bool = False) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate, padding='same',
        use_bias=use_bias, kernel_initializer=self.kernel_initializer(),
        kernel_regularizer=self.kernel_regularizer(), name=name)

  def separable_conv(self, filters: int, kernel_size: int, strides: int = 1,
                     dilation_rate: int = 1, name: str | None = None):
    return keras.layers.SeparableConv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate, padding='same',
        use_bias=False, depthwise_initializer=self.kernel_initializer(),
        pointwise_initializer=self.kernel_initializer(),
        depthwise_regularizer=self.kernel_regularizer(),
        pointwise_regularizer=self.kernel_regularizer(), name=name)

  def batch_norm(self, name: str | None = None) -> keras.layers.BatchNormalization:
    return batch_norm.BatchNormalization(
        momentum=self.batch_norm_momentum, epsilon=self.batch_norm_epsilon,
        center=self.batch_norm_affine, scale=self.batch_norm_affine,
        synchronized=self.synchronized, float32_kernel=self.float32_batch_norm, name=name)


class TypedConfig:
  """Keras (de)serialisation for layers that hold typed objects (`LayerSettings`, a `Genotype`):
  `get_config` stores each as a dict, `from_config` rebuilds the object, so the layers themselves
  only ever see the objects. `CONFIG_OBJECTS`: constructor argument -> (to dict, from dict)."""
  CONFIG_OBJECTS = {'settings': (LayerSettings.to_dict, LayerSettings.from_dict)}

  def config_of(self, **arguments) -> dict:
    config = super().get_config()  # pytype: disable=attribute-error
    for name, value in arguments.items():
      config[name] = self.CONFIG_OBJECTS[name][0](value) if name in self.CONFIG_OBJECTS else value
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for name, (_, parse) in cls.CONFIG_OBJECTS.items():
      if name in config:
        config[name] = parse(config[name])
    return cls(**config)


_XLA_SAFE_RESIZE = contextvars.ContextVar('xla_safe_resize', default=False)


@contextlib.contextmanager
def xla_safe_resize():
  """Resizes traced inside run as two matrix products (`_interpolation_matrix`) where the sizes
  are static: XLA's own bilinear resize (TF 2.21, CPU) misplaces outputs when a side grows
  from an odd size (5 -> 9: the middle output is the input's 4th value, not its 3rd), which
  every finer move of this network does at crops like 33, 513 or 769."""
  token = _XLA_SAFE_RESIZE.set(True)
  try:
    yield
  finally:
    _XLA_SAFE_RESIZE.reset(token)


def _interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
  """[out, in] weights of TensorFlow's bilinear resize (half-pixel centres) along one axis."""
  matrix = np.zeros([out_size, in_size], np.float32)
  for i in range(out_size):
    position = (i + 0.5) * in_size / out_size - 0.5
    floor = math.floor(position)
    lower, upper = max(floor, 0), min(math.ceil(position), in_size - 1)
    matrix[i, lower] += 1.0 - (position - floor)
    matrix[i, upper] += position - floor
  return matrix


def spatial_size(x: tf.Tensor):
  """x's (height, width): a numpy pair where the shape is static (constants in the graph, which
  `xla_safe_resize` needs), else a tensor."""
  if None in x.shape[1:3]:
    return tf.shape(x)[1:3]
  return np.array(x.shape[1:3], np.int32)


def resize_bilinear(x: tf.Tensor, size) -> tf.Tensor:
  """Bilinear resize keeping x's type: `tf.image.resize` returns float32 whatever it is given,
  which under a mixed-precision policy would turn the rest of a raw-op chain into float32."""
  static = tf.get_static_value(tf.convert_to_tensor(size))
  if _XLA_SAFE_RESIZE.get() and static is not None and None not in x.shape[1:3]:
    rows = tf.constant(_interpolation_matrix(int(static[0]), x.shape[1]), x.dtype)
    columns = tf.constant(_interpolation_matrix(int(static[1]), x.shape[2]), x.dtype)
    return tf.einsum('ph,nhwc,qw->npqc', rows, x, columns)
  return tf.cast(tf.image.resize(x, size, method='bilinear'), x.dtype)


SEARCH_SETTINGS = LayerSettings(batch_norm_momentum=0.9, batch_norm_epsilon=1e-5,
                                batch_norm_affine=False, separable_atrous=True)


@keras.saving.register_keras_serializable('autodeeplab')
class HalfResize(keras.layers.Layer):
  """Bilinear resize to ceil(size / 2): how an atrous op reads an input one level finer."""

  def call(self, x):
    shape = tf.shape(x)
    return resize_bilinear(x, [(shape[1] + 1) // 2, (shape[2] + 1) // 2])


@keras.saving.register_keras_serializable('autodeeplab')
class Zero(keras.layers.Layer):
  """The 'no connection' op: zeros shaped like the (strided) input."""

  def __init__(self, stride: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.stride = stride

  def call(self, x):
    return tf.zeros_like(x[:, ::self.stride, ::self.stride, :])

  def get_config(self):
    return {**super().get_config(), 'stride': self.stride}


def _separable(spec: space.OpSpec, channels: int, stride: int,
               settings: LayerSettings) -> keras.layers.Layer:
  """`spec.stages` x (ReLU, depthwise-separable KxK conv, BN); the first conv carries the stride."""
  layers = []
  for stage in range(spec.stages):
    layers += [keras.layers.ReLU(),
               settings.separable_conv(channels, spec.kernel, strides=stride if stage == 0 else 1,
                                       dilation_rate=spec.dilation),
               settings.batch_norm()]
  return keras.Sequential(layers)


def _atrous(spec: space.OpSpec, channels: int, stride: int,
            settings: LayerSettings) -> keras.layers.Layer:
  """ReLU, KxK conv with the spec's rate, BN; into a coarser level, the input is halved and the
  rate is 1."""
  rate = spec.dilation if stride == 1 else 1
  conv = settings.separable_conv if settings.separable_atrous else settings.conv
  layers = [keras.layers.ReLU()]
  if stride == 2:
    layers.append(HalfResize())
  layers += [conv(channels, spec.kernel, dilation_rate=rate), settings.batch_norm()]
  return keras.Sequential(layers)


def _pool(spec: space.OpSpec, channels: int, stride: int,
          settings: LayerSettings) -> keras.layers.Layer:
  """KxK max or average pooling (average excludes padding); `channels` is unchanged."""
  del channels, settings
  layer = {'max': keras.layers.MaxPooling2D, 'avg': keras.layers.AveragePooling2D}[spec.pool]
  return layer(spec.kernel, strides=stride, padding='same')


def _skip(spec: space.OpSpec, channels: int, stride: int,
          settings: LayerSettings) -> keras.layers.Layer:
  """Identity; into a coarser level it becomes ReLU, 1x1 conv with stride 2, BN."""
  del spec
  if stride == 1:
    return keras.layers.Identity()
  return keras.Sequential([keras.layers.ReLU(), settings.conv(channels, 1, strides=2),
                           settings.batch_norm()])


def _zero(spec: space.OpSpec, channels: int, stride: int,
          settings: LayerSettings) -> keras.layers.Layer:
  del spec, channels, settings
  return Zero(stride)


# How each kind of `space.OpSpec` is built as a Keras layer.
_BUILDERS = {'zero': _zero, 'pool': _pool, 'skip': _skip, 'separable': _separable,
             'atrous': _atrous}


def build_op(name: str, channels: int, stride: int, settings: LayerSettings) -> keras.layers.Layer:
  """The candidate op `name` (a `space.OP_SPECS` entry) as a Keras layer."""
  spec = space.OP_BY_NAME[name]
  return _BUILDERS[spec.kind](spec, channels, stride, settings)


# The search space's operations: name -> constructor(channels, stride, settings).
OPS: dict[str, Callable[[int, int, LayerSettings], keras.layers.Layer]] = {
    name: functools.partial(build_op, name) for name in space.PRIMITIVES}
