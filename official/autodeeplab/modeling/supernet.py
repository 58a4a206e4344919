"""The Auto-DeepLab search supernet: the L-layer, 4-level trellis of eq. (6), as one Keras model.

Structure (paper sec. 4.1.2 and 5.1):
* stem: 3x3 convs 64 (stride 2), 64, B*F (stride 2), each BN + ReLU; its output is node (-1, 0):
  the trellis starts at stride 4 with the width of a level-0 node;
* node (l, s) = sum over its inputs at layer l-1 from s/2, s, 2s of
  beta(input -> node) * Cell(preprocessed input, H^{l-2}_s; alpha), where the input reaches the
  node's resolution and F*s/4 channels by ReLU + stride-2 3x3 conv + BN (from s/2), ReLU + 1x1 conv
  + BN (from s) or ReLU + 1x1 conv + bilinear x2 + BN (from 2s; a 1x1 conv commutes with the
  resize, so it runs at the lower resolution), and H^{l-2}_s by ReLU + 1x1 conv + BN; a node has
  B * F * s/4 channels;
* beta is normalised over each node's *outgoing* edges (eq. 7, sec. 4.3): a softmax over the edges
  to s/2, s, 2s that exist (two at the border levels), so betas are transition probabilities;
* heads: at each level of the last layer an ASPP (1x1 conv, 3x3 conv with rate 96/s, image
  pooling; B*F*s/4 filters each) and a 1x1 classifier; logits are upsampled and summed.

How it runs fast: all L layers run in one `tf.foldl` whose body is one layer of the full trellis
(every level, every incoming path). Nodes that do not exist yet (levels above l+1 at layer l, and
H^{l-2} above the levels of layer l-2) are zero tensors: a zero input contributes exactly nothing
through ReLU, conv and batch-moment BN, and the betas of edges leaving a missing node are 0, so
the function is exactly the trellis, while graph size does not grow with depth. (A missing
H^{l-2}, e.g. at layer 0 or for level 3 at layer 3, thus means a cell without the edges from
H^{l-2}, as in the PyTorch reimplementation.) The price is compute spent on those zero nodes in
layers 0-2 (about a tenth of the total at L=12). Each level's
weights for all layers are one variable [L, n] (`level_layouts`), sliced per layer by the loop;
the cell itself is `fused_cell.fused_cell`. With `recompute=True` the layers run in
`layer_loop.run_layers`, whose written-out backward loop recomputes each layer from its stored
input states: memory then grows with one layer, not L, and no weight-sized copy is kept for the
backward pass (what differentiating the foldl costs).
Graph size is what start-up time and memory follow on CPU, so shapes are
passed as Python ints wherever the input size is static (a search trains on a fixed crop) and the
per-state mixing weights are arranged once per step, outside the loop.
BN in the search always normalises with batch moments, per incoming path.
"""
from __future__ import annotations

import typing

import keras
import numpy as np
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import fused_cell
from official.autodeeplab.modeling import layer_loop
from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking
from official.autodeeplab.search import space

_EPSILON = ops.SEARCH_SETTINGS.batch_norm_epsilon


class LayerParams(typing.NamedTuple):
  """What one trellis layer reads besides the states (rows of the [L, ...] tensors).

  Attributes:
    betas: [levels, 3] transition probabilities into this layer (`transition_probabilities`).
    kernels: per level, this layer's flat kernel vector (`level_layout`).
  """
  betas: tf.Tensor
  kernels: tuple


def normalize_beta(beta: tf.Tensor, mask: np.ndarray) -> tf.Tensor:
  """Softmax over each node's existing outgoing edges; 0 on edges that do not exist. Computed
  in float32 whatever beta's type; masked edges get the type's lowest finite value (a fixed -1e9
  is -inf in float16, and a row of -inf is NaN after the softmax)."""
  beta = tf.cast(beta, tf.float32)
  logits = tf.where(mask, beta, tf.constant(np.finfo(np.float32).min, tf.float32))
  return tf.nn.softmax(logits, axis=-1) * mask.astype(np.float32)


def level_layout(level: int, filter_multiplier: int, num_blocks: int,
                 num_levels: int = space.NUM_LEVELS) -> fused_cell.KernelLayout:
  """Kernels of one node of `level` (preprocessing + cell), flattened in one vector."""
  c = filter_multiplier * 2**level
  shapes = {'pre/prev_prev': (1, 1, num_blocks * c, c), 'pre/from_same': (1, 1, num_blocks * c, c)}
  if level > 0:
    shapes['pre/from_finer'] = (3, 3, num_blocks * c // 2, c)
  if level < num_levels - 1:
    shapes['pre/from_coarser'] = (1, 1, num_blocks * c * 2, c)
  return fused_cell.KernelLayout({**shapes, **fused_cell.cell_layout(c, num_blocks).shapes})


def _flat_initializer(layout, num_layers, seed):
  def init(shape, dtype=None):
    rng = np.random.default_rng(seed)
    value = np.stack([layout.initial_value(rng) for _ in range(num_layers)])
    assert value.shape == tuple(shape)
    return tf.constant(value, dtype or tf.float32)
  return init


def _relu_conv(x, kernel, stride=1):
  return tf.nn.conv2d(tf.nn.relu(x), kernel, stride, 'SAME')


ASPP_RATE_TIMES_STRIDE = 96  # the search head's atrous rate is 96 / stride (paper sec. 5.1)
_DESCRIPTION_KEYS = ('num_classes', 'num_layers', 'num_blocks', 'filter_multiplier',
                     'input_channels')


@keras.saving.register_keras_serializable('autodeeplab')
class SearchASPP(keras.layers.Layer):
  """The search head at one level: 1x1, 3x3 rate 96/s and image-pooling branches + classifier."""

  def __init__(self, filters: int, rate: int, num_classes: int,
               settings: ops.LayerSettings = ops.LayerSettings(), **kwargs):
    super().__init__(**kwargs)
    self.filters, self.rate, self.num_classes = filters, rate, num_classes
    self.conv1x1 = settings.conv(filters, 1)
    self.bn1x1 = settings.batch_norm()
    self.atrous = settings.conv(filters, 3, dilation_rate=rate)
    self.bn_atrous = settings.batch_norm()
    self.pool_conv = settings.conv(filters, 1)
    self.bn_pool = settings.batch_norm()
    self.classifier = settings.conv(num_classes, 1, use_bias=True)

  def build(self, input_shape):
    for conv, bn in ((self.conv1x1, self.bn1x1), (self.atrous, self.bn_atrous),
                     (self.pool_conv, self.bn_pool)):
      conv.build((None, None, None, input_shape[-1]))
      bn.build((None, None, None, self.filters))
    self.classifier.build((None, None, None, 3 * self.filters))
    self.built = True

  def call(self, x, training=True):
    a = tf.nn.relu(self.bn1x1(self.conv1x1(x), training=training))
    b = tf.nn.relu(self.bn_atrous(self.atrous(x), training=training))
    pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    c = tf.nn.relu(self.bn_pool(self.pool_conv(pooled), training=training))
    c = tf.broadcast_to(c, tf.shape(a))
    return self.classifier(tf.concat([a, b, c], -1))

  def get_config(self):
    return {**super().get_config(), 'filters': self.filters, 'rate': self.rate,
            'num_classes': self.num_classes}


@keras.saving.register_keras_serializable('autodeeplab')
class Supernet(tracking.CheckpointLists, keras.Model):
  """The relaxed hierarchical search space as a segmentation model: images -> logits.

  Args:
    num_classes: classes of the segmentation task.
    num_layers: L, layers of the trellis (paper: 12).
    num_blocks: B, blocks per cell (paper: 5).
    filter_multiplier: F; a level-k node has B * F * 2**k channels (paper: 8 in the search).
    recompute: recompute each layer's activations in the backward pass (memory of one layer,
      for a second forward pass per layer).
    seed: seed of the flat per-level weight initialisation.
    float32_batch_norm: the stem's and heads' reduced-precision BN through the float32 kernel
      (`ops.LayerSettings`; a runtime choice, not part of `description()`).
    input_channels: the images' channels (`datasets.ImageSpec.channels`).
  """

  def __init__(self, num_classes: int, num_layers: int = space.NUM_LAYERS,
               num_blocks: int = space.NUM_BLOCKS,
               filter_multiplier: int = space.SEARCH_FILTER_MULTIPLIER, recompute: bool = False,
               seed: int = 0, float32_batch_norm: bool = True, input_channels: int = 3,
               **kwargs):
    super().__init__(**kwargs)
    self.num_classes, self.num_layers, self.num_blocks = num_classes, num_layers, num_blocks
    self.filter_multiplier, self.recompute, self.seed = filter_multiplier, recompute, seed
    self.input_channels = input_channels
    self.num_levels = space.NUM_LEVELS
    settings = ops.LayerSettings(batch_norm_momentum=0.9, float32_batch_norm=float32_batch_norm)
    self.stem = []
    for filters, stride in zip((*space.STEM_FILTERS[:-1], num_blocks * filter_multiplier),
                               space.STEM_STRIDES):
      self.stem += [settings.conv(filters, 3, strides=stride), settings.batch_norm()]
    self.layouts = [level_layout(k, filter_multiplier, num_blocks) for k in range(self.num_levels)]
    self._beta_mask = space.transition_mask(num_layers, self.num_levels)
    rng = np.random.default_rng(seed)
    self.alpha = self.add_weight(
        shape=(space.num_edges(num_blocks), len(space.PRIMITIVES)), name='alpha', autocast=False,
        initializer=keras.initializers.Constant(1e-3 * rng.standard_normal(
            (space.num_edges(num_blocks), len(space.PRIMITIVES)))))
    self.beta = self.add_weight(
        shape=(num_layers, self.num_levels, 3), name='beta', autocast=False,
        initializer=keras.initializers.Constant(
            1e-3 * rng.standard_normal((num_layers, self.num_levels, 3))))
    self.level_weights = [
        self.add_weight(shape=(num_layers, layout.size), name=f'level{k}_kernels',
                        initializer=_flat_initializer(layout, num_layers, seed + 1 + k))
        for k, layout in enumerate(self.layouts)]
    self.heads = [SearchASPP(self.node_channels(k), ASPP_RATE_TIMES_STRIDE // space.level_stride(k),
                             num_classes, settings) for k in range(self.num_levels)]

  def build(self, input_shape):
    """Creates every variable up front, so optimisers can build their slots before tracing."""
    channels = input_shape[-1]
    for i in range(0, len(self.stem), 2):
      self.stem[i].build((None, None, None, channels))
      channels = self.stem[i].filters
      self.stem[i + 1].build((None, None, None, channels))
    for k, head in enumerate(self.heads):
      head.build((None, None, None, self.node_channels(k)))
    self.built = True

  def node_channels(self, level: int) -> int:
    """Channels of a node at `level`: B * F * 2**level."""
    return self.num_blocks * self.filter_multiplier * 2**level

  def description(self) -> dict:
    """What `supernet.json` holds: enough to rebuild the supernet (`from_description`)."""
    return {key: getattr(self, key) for key in _DESCRIPTION_KEYS}

  @classmethod
  def from_description(cls, description: dict, source: str = 'supernet.json') -> 'Supernet':
    try:  # written before images had channels: RGB
      return cls(**{key: int(description.get(key, 3) if key == 'input_channels' else
                              description[key]) for key in _DESCRIPTION_KEYS})
    except (KeyError, TypeError, ValueError) as e:
      raise UserInputError(f'{source}: unreadable ({type(e).__name__}: {e})') from None

  @property
  def arch_variables(self) -> list[tf.Variable]:
    """alpha and beta, selected by identity (a BN offset is also called 'beta')."""
    return [self.alpha, self.beta]

  @property
  def weight_variables(self) -> list[tf.Variable]:
    arch = {id(v) for v in self.arch_variables}
    return [v for v in self.trainable_variables if id(v) not in arch]

  def op_weights(self) -> tf.Tensor:
    """softmax(alpha): [num_edges, num_ops]."""
    return tf.nn.softmax(self.alpha, axis=-1)

  def transition_probabilities(self) -> tf.Tensor:
    """Normalised beta: [L, levels, 3]; [l, k, d] = P(node (l-1, k) -> node (l, k + d - 1))."""
    return normalize_beta(self.beta, self._beta_mask)

  def _layer(self, prev: tuple, prev_prev: tuple, params: LayerParams, mixing: list) -> tuple:
    """One trellis layer: H^{l-1} and H^{l-2} (one tensor per level) -> H^l per level.

    mixing: `fused_cell.mixing_weights`, one tensor per source state (computed once per step).
    betas and mixing stay float32 (`fused_cell.weighted` applies them), so that their gradients
    are summed in float32."""
    levels, betas = self.num_levels, params.betas
    nodes = []
    for k in range(levels):
      kernels = self.layouts[k].unpack(params.kernels[k])
      size = fused_cell.static_shape(prev[k])[1:3]
      paths, path_betas = [], []
      if k > 0:  # from the finer level k - 1: its COARSER transition, a stride-2 conv
        paths.append(_relu_conv(prev[k - 1], kernels['pre/from_finer'], 2))
        path_betas.append(betas[k - 1, space.COARSER])
      paths.append(_relu_conv(prev[k], kernels['pre/from_same']))
      path_betas.append(betas[k, space.SAME])
      if k < levels - 1:  # from the coarser level k + 1: its FINER transition, 1x1 conv + x2
        from_coarser = _relu_conv(prev[k + 1], kernels['pre/from_coarser'])
        paths.append(ops.resize_bilinear(from_coarser, size))
        path_betas.append(betas[k + 1, space.FINER])
      # One BN for all paths (moments per path), then stacked on the batch axis for the cell.
      h_prev = fused_cell.batch_norm(tf.stack(paths), [1, 2, 3], _EPSILON)
      h_prev = tf.reshape(h_prev, [-1, *fused_cell.static_shape(h_prev)[2:]])
      h_prev_prev = fused_cell.batch_norm(_relu_conv(prev_prev[k], kernels['pre/prev_prev']),
                                          [0, 1, 2], _EPSILON)
      cells = fused_cell.fused_cell(h_prev, h_prev_prev, mixing, kernels, len(paths),
                                    self.num_blocks, _EPSILON)
      cells = tf.reshape(cells, [len(paths), -1, *fused_cell.static_shape(cells)[1:]])
      if cells.dtype == tf.float32:
        nodes.append(tf.tensordot(tf.stack(path_betas), cells, 1))
      else:  # the betas' gradient summed in float32
        nodes.append(tf.reduce_sum(fused_cell.weighted(
            cells, tf.reshape(tf.stack(path_betas), [-1, 1, 1, 1, 1])), 0))
    return tuple(nodes)

  def stem_features(self, images, training=True):
    x = images
    for i in range(0, len(self.stem), 2):
      x = tf.nn.relu(self.stem[i + 1](self.stem[i](x), training=training))
    return x

  def call(self, images, training=True, architecture=None, unrolled=False):
    """Logits of `images`; `architecture`: (op weights [edges, ops], transition probabilities
    [L, levels, 3]) used instead of softmax(alpha) and normalised beta (one architecture set
    exactly inside the supernet: `training/supernet_ranking.py`). `unrolled`: the layers as a
    Python loop instead of one loop op, for second derivatives (`training/sharpness.py`), whose
    graph through a loop op takes minutes to build."""
    op_weights, transitions = (architecture if architecture is not None else
                               (self.op_weights(), self.transition_probabilities()))
    stem = self.stem_features(images, training)
    batch = tf.shape(stem)[0]
    level_sizes = space.level_sizes(tf.shape(stem)[1:3], self.num_levels)
    zeros = [tf.zeros(tf.concat([[batch], level_sizes[k], [self.node_channels(k)]], 0), stem.dtype)
             for k in range(self.num_levels)]
    prev = (stem,) + tuple(zeros[1:])
    prev_prev = tuple(zeros)
    mixing = fused_cell.mixing_weights(op_weights, self.num_blocks)
    params = LayerParams(transitions,
                         tuple(tf.convert_to_tensor(w) for w in self.level_weights))
    if unrolled:
      last, prev_prev_now = prev, prev_prev
      for layer in range(self.num_layers):
        nodes = self._layer(last, prev_prev_now, tf.nest.map_structure(lambda t: t[layer], params),
                            mixing)
        last, prev_prev_now = nodes, last
    elif self.recompute:
      last = layer_loop.run_layers(self._layer, prev, prev_prev, params, mixing)
    else:
      def body(carry, params):
        prev, prev_prev = carry
        nodes = self._layer(prev, prev_prev, params, mixing)
        for node, z in zip(nodes, zeros):
          node.set_shape(z.shape)
        return tuple(nodes), prev

      last, _ = tf.foldl(body, params, initializer=(prev, prev_prev))
    image_size = ops.spatial_size(images)
    # Logits in float32 in every precision.
    logits = [ops.resize_bilinear(tf.cast(head(node, training=training), tf.float32), image_size)
              for head, node in zip(self.heads, last)]
    return tf.add_n(logits)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'num_layers': self.num_layers, 'num_blocks': self.num_blocks,
            'filter_multiplier': self.filter_multiplier, 'recompute': self.recompute,
            'seed': self.seed}
