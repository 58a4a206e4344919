"""The search cell's fast path: the same function as `search_cell.Cell`, in a few large ops.

Why: a supernet built from one Keras layer per op per edge has thousands of small layers in
every cell; TensorFlow then spends minutes building and optimising the graph and its gradient before
the first step. This module computes a relaxed cell with ops grouped by *source state*:

* every MixedOp that reads state j (its "readers", blocks max(0, j-1)..B-1, always a suffix of the
  blocks) runs as one set of ops: a depthwise conv with channel multiplier = number of readers and
  the per-edge 1x1 convs as one matmul with a block-diagonal kernel;
* the weight-free ops (pool + BN, skip) are computed once per state and shared by readers;
* a node's up-to-three incoming paths (from s/2, s, 2s) share the cell, so they run as one call
  stacked on the batch axis, with BN moments kept per path (`num_paths`); H^{l-2} is the same for
  all paths, so its edges run once on the unstacked batch and are broadcast.

Kernels of one cell live in one flat vector (`CellLayout`), so the supernet keeps few, large
variables (fast optimiser updates, small graphs). `pack_reference_cell` maps a `search_cell.Cell`'s
Keras weights into that layout; tests assert both paths give the same outputs and gradients.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import batch_norm as bn_kernels
from official.autodeeplab.search import space

# The ops the fused path computes, from the op table: ops with weights run grouped by source
# state (depthwise kernel with one column per reader, block-diagonal 1x1); weight-free ones ('pool'
# + BN, 'skip') run once per state and are shared by its readers; 'zero' is not computed.
_CONV_OPS = tuple(op for op in space.OP_SPECS if op.has_weights)
_FREE_OPS = tuple(op for op in space.OP_SPECS if op.kind in ('pool', 'skip'))
_MIXED_OPS = _CONV_OPS + _FREE_OPS  # the order of `mixing_weights`' first axis
assert {op.kind for op in _CONV_OPS} <= {'separable', 'atrous'}, (
    'an op with weights needs its kernel in fused_cell._state_edges')
assert len(_MIXED_OPS) + 1 == len(space.OP_SPECS), 'every op but zero is computed'


def readers(state: int, num_blocks: int) -> range:
  """Blocks that read `state` (0 = H^{l-1}, 1 = H^{l-2}, 2 + b = block b)."""
  return range(max(0, state - 1), num_blocks)


def _kernel_shapes(channels: int, num_blocks: int) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for state in range(num_blocks + 1):
    r, c = len(readers(state, num_blocks)), channels
    for op in _CONV_OPS:
      k = op.kernel
      shapes[f's{state}/{op.name}/dw0'] = (k, k, c, r)
      shapes[f's{state}/{op.name}/pw0'] = (r, c, c)
      for stage in range(1, op.stages):
        shapes[f's{state}/{op.name}/dw{stage}'] = (k, k, r * c, 1)
        shapes[f's{state}/{op.name}/pw{stage}'] = (r, c, c)
  return shapes


def _fan_in(name: str, shape: tuple[int, ...]) -> int:
  return shape[0] * shape[1] if '/dw' in name else shape[-2]


@dataclasses.dataclass(frozen=True)
class KernelLayout:
  """Named kernels packed one after the other into a flat vector.

  Attributes:
    shapes: kernel name -> shape, in packing order.
  """
  shapes: dict[str, tuple[int, ...]]

  @property
  def sizes(self) -> list[int]:
    return [math.prod(shape) for shape in self.shapes.values()]

  @property
  def size(self) -> int:
    return sum(self.sizes)

  def unpack(self, flat: tf.Tensor) -> dict[str, tf.Tensor]:
    """Flat vector -> {name: kernel}; tf.split keeps the gradient one concat."""
    pieces = tf.split(flat, self.sizes)
    return {name: tf.reshape(piece, shape)
            for (name, shape), piece in zip(self.shapes.items(), pieces)}

  def pack(self, kernels: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(kernels[name], np.float32).reshape(-1)
                           for name in self.shapes])

  def initial_value(self, rng: np.random.Generator) -> np.ndarray:
    """Variance scaling (1/3, fan-in, uniform) per kernel, which is also PyTorch's conv default."""
    parts = []
    for name, shape in self.shapes.items():
      limit = math.sqrt(1.0 / _fan_in(name, shape))
      parts.append(rng.uniform(-limit, limit, size=math.prod(shape)).astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros([0], np.float32)


def cell_layout(channels: int, num_blocks: int = space.NUM_BLOCKS) -> KernelLayout:
  """Kernels of one relaxed cell with `channels` channels per block."""
  return KernelLayout(_kernel_shapes(channels, num_blocks))


def static_shape(x: tf.Tensor) -> list:
  """x's shape as Python ints where they are known, else scalar tensors.

  Reshapes to a known shape cost one constant in the graph instead of a Shape/StridedSlice/Concat
  chain (and the while loop's gradient then needs no accumulator for the shape): during a search
  the crop size is fixed, so every shape in the trellis is known when the step is traced.
  """
  static = x.shape.as_list()
  if None not in static:
    return static
  dynamic = tf.shape(x)
  return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def batch_norm(x: tf.Tensor, axes: list[int], epsilon: float) -> tf.Tensor:
  """Non-affine BN: x normalised by its mean and variance over `axes` (the other axes keep
  separate moments: channels, and in the cell the incoming path and the reader).

  The gradient is written out (dx = (dy - mean(dy) - y * mean(dy * y)) / std over `axes`):
  automatic differentiation of the moments gives several times the graph nodes, and the supernet
  runs hundreds of these per layer. The cell keeps its tensors as [paths, pixels, readers, channels]
  (`_state_edges`), so per-path moments need no reshapes here.

  In reduced precision the moments and both passes' arithmetic are float32 (the casts are no-ops
  for float32 inputs); input, output and gradient keep x's type. There, a constant input (zero
  variance: the zero tensors standing for nodes that do not exist yet) passes no gradient: its
  exact gradient is dy / sqrt(epsilon), ~316 dy, which a float16 loss scale turns into inf, and
  the zero tensors it flows to are constants anyway.
  """
  constant_gain = 0.99 / math.sqrt(epsilon)  # inv_std above this: variance below epsilon / 50
  if bn_kernels.twice_differentiable_now():  # the moments differentiated too (Hessians)
    centered = x - tf.reduce_mean(x, axes, keepdims=True)
    return centered * tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axes, keepdims=True)
                                    + epsilon)

  @tf.custom_gradient
  def normalize(x):
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    reduced = tf.constant(axes, tf.int32)  # one constant for both reductions
    centered = x - tf.reduce_mean(x, reduced, keepdims=True)
    inv_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), reduced, keepdims=True) + epsilon)
    y = tf.cast(centered * inv_std, dtype)

    def grad(dy):
      reduced = tf.constant(axes, tf.int32)
      dy, y32 = tf.cast(dy, tf.float32), tf.cast(y, tf.float32)
      dx = inv_std * (dy - tf.reduce_mean(dy, reduced, keepdims=True)
                      - y32 * tf.reduce_mean(dy * y32, reduced, keepdims=True))
      if dtype != tf.float32:
        dx = tf.where(inv_std < constant_gain, dx, 0.0)
      return tf.cast(dx, dtype)
    return y, grad
  return normalize(x)


def weighted(x: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
  """x * weight (float32, broadcast to x), in x's type; weight's gradient summed in float32.

  In reduced precision the automatic gradient of the product would sum dy * x over every pixel
  in x's type: a sum of 10^5 terms in bfloat16 loses most of its bits, and in float16, scaled
  by the loss scale, it overflows. Here the sum runs on float32 copies; a float32 x takes the
  plain product.
  """
  if x.dtype == tf.float32:
    return x * weight
  out = tf.broadcast_static_shape(x.shape, weight.shape).as_list()
  padded = lambda shape: [1] * (len(out) - len(shape)) + shape
  # The axes each operand was broadcast along: its gradient is summed over them.
  summed = lambda shape: [i for i, (s, o) in enumerate(zip(padded(shape), out)) if s == 1 != o]
  x_shape, weight_shape = x.shape.as_list(), weight.shape.as_list()

  @tf.custom_gradient
  def product(x, weight):
    def grad(dy):
      d_x = dy * tf.cast(weight, dy.dtype)
      if summed(x_shape):
        d_x = tf.reshape(tf.reduce_sum(d_x, summed(x_shape), keepdims=True), x_shape)
      d_weight = tf.reduce_sum(tf.cast(dy, tf.float32) * tf.cast(x, tf.float32),
                               summed(weight_shape), keepdims=True)
      return d_x, tf.reshape(d_weight, weight_shape)
    return x * tf.cast(weight, x.dtype), grad
  return product(x, weight)


def _depthwise(x, kernel, dilation):
  if dilation == 1:  # the kernel op itself: tf.nn's wrapper adds shape and rate constants
    return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=kernel, strides=[1, 1, 1, 1],
                                            padding='SAME')
  return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME', dilations=[dilation, dilation])


def _per_reader_pointwise(y, kernel, reader_major: bool, groups: int):
  """Each reader's 1x1 conv: y [G*N, H, W, C*R] -> [G, N*H*W, R, D], kernel [R, C, D].

  One dense matmul with a block-diagonal kernel [C*R, R*D] (reader r's block maps its C channels
  to its D outputs): R times the multiply-adds of R separate 1x1 convs, but much faster than the
  equivalent einsum ('...cr,rcd->...rd') at these small widths, where the einsum dominated the
  search step (docs/performance.md). `reader_major`: y's channels are ordered (r, c), else (c, r).
  """
  readers, channels, outputs = kernel.shape
  mask = tf.constant(np.eye(readers)[:, np.newaxis, :, np.newaxis], kernel.dtype)  # [r, 1, s, 1]
  blocks = tf.expand_dims(kernel, 2) * mask                                 # [r, c, s, d]
  if not reader_major:
    blocks = tf.transpose(blocks, [1, 0, 2, 3])                             # [c, r, s, d]
  blocks = tf.reshape(blocks, [channels * readers, readers * outputs])
  flat = tf.reshape(y, [-1, channels * readers])
  return tf.reshape(tf.matmul(flat, blocks), [groups, -1, readers, outputs])


def mixing_weights(op_weights: tf.Tensor, num_blocks: int = space.NUM_BLOCKS) -> list[tf.Tensor]:
  """softmax(alpha) [num_edges, num_ops] rearranged per source state, as the cell consumes it.

  Element `state` is [len(_MIXED_OPS), R, 1]: the weights of the ops with weights then the
  weight-free ones (`_MIXED_OPS` order) for the R edges reading that state. The supernet computes
  this once per step, outside its loop over layers.
  """
  order = [space.PRIMITIVES.index(op.name) for op in _MIXED_OPS]
  per_state = []
  for state in range(num_blocks + 1):
    rows = [space.edge_index(b, state) for b in readers(state, num_blocks)]
    weights = tf.gather(tf.gather(op_weights, rows), order, axis=1)          # [R, ops]
    per_state.append(tf.transpose(weights)[:, :, tf.newaxis])
  return per_state


def _state_edges(x, kernels, prefix, mixing, groups, epsilon):
  """All MixedOps reading state x: [G*N, H, W, C] -> [G, N*H*W, R, C] (one slice per reader).

  Op outputs stay in the [groups, pixels, readers, channels] layout in which BN takes per-group
  moments over one axis; only the depthwise convs and pools need images.
  mixing: [len(_MIXED_OPS), R, 1], this state's `mixing_weights`.
  """
  n, h, w, channels = static_shape(x)
  num_readers = mixing.shape[1]
  weights = tf.unstack(mixing)
  relu = tf.nn.relu(x)
  mixed = []
  for op in _CONV_OPS:
    name = f'{prefix}/{op.name}'
    y = _depthwise(relu, kernels[f'{name}/dw0'], op.dilation)                # channels (c, r)
    y = _per_reader_pointwise(y, kernels[f'{name}/pw0'], False, groups)
    y = batch_norm(y, [1], epsilon)                                          # [g, nhw, r, c]
    for stage in range(1, op.stages):
      y = tf.reshape(tf.nn.relu(y), [n, h, w, num_readers * channels])        # channels (r, c)
      y = _depthwise(y, kernels[f'{name}/dw{stage}'], 1)
      y = _per_reader_pointwise(y, kernels[f'{name}/pw{stage}'], True, groups)
      y = batch_norm(y, [1], epsilon)
    mixed.append(y)
  as_rows = lambda image: tf.reshape(image, [groups, -1, 1, channels])
  pools = {'max': tf.nn.max_pool2d, 'avg': tf.nn.avg_pool2d}
  for op in _FREE_OPS:  # pool + non-affine BN, or the identity
    if op.kind == 'pool':
      mixed.append(batch_norm(as_rows(pools[op.pool](x, op.kernel, 1, 'SAME')), [1], epsilon))
    else:
      mixed.append(as_rows(x))
  # sum over ops of softmax(alpha)[edge, op] * op output, per reader (the einsum form of these
  # weighted sums ran slower on oneDNN than the broadcast multiply-adds).
  return tf.add_n([weighted(y, weight) for y, weight in zip(mixed, weights)])


def fused_cell(h_prev: tf.Tensor, h_prev_prev: tf.Tensor, mixing: list[tf.Tensor],
               kernels: dict[str, tf.Tensor], num_paths: int, num_blocks: int = space.NUM_BLOCKS,
               epsilon: float = 1e-5) -> tf.Tensor:
  """The relaxed cell on `num_paths` stacked H^{l-1} inputs sharing one H^{l-2}.

  Args:
    h_prev: [num_paths * N, H, W, C], the paths stacked on the batch axis (path-major).
    h_prev_prev: [N, H, W, C].
    mixing: `mixing_weights(softmax(alpha), num_blocks)`.
    kernels: `cell_layout(C, num_blocks).unpack(flat)`.
    num_paths: P; BN moments are computed per path.
    num_blocks: B.
    epsilon: BN epsilon.

  Returns:
    [num_paths * N, H, W, B * C]: for each path, exactly `search_cell.Cell(h_prev[p], h_prev_prev)`.
  """
  image_shape = static_shape(h_prev)                                         # [P*N, H, W, C]
  # Edges of H^{l-2}: identical for every path, computed once and broadcast over the paths.
  from_prev_prev = _state_edges(h_prev_prev, kernels, 's1', mixing[1], 1, epsilon)
  from_prev = _state_edges(h_prev, kernels, 's0', mixing[0], num_paths, epsilon)
  incoming = [[edge] for edge in tf.unstack(from_prev + from_prev_prev, axis=2)]  # per block
  blocks = []
  for b in range(num_blocks):
    block = tf.add_n(incoming[b]) if len(incoming[b]) > 1 else incoming[b][0]  # [P, NHW, C]
    blocks.append(block)
    if b + 1 < num_blocks:
      edges = _state_edges(tf.reshape(block, image_shape), kernels, f's{b + 2}', mixing[b + 2],
                           num_paths, epsilon)
      for reader, edge in zip(readers(b + 2, num_blocks), tf.unstack(edges, axis=2)):
        incoming[reader].append(edge)
  return tf.reshape(tf.concat(blocks, axis=-1), [*image_shape[:3], num_blocks * image_shape[3]])


def pack_reference_cell(cell, layout: KernelLayout | None = None) -> np.ndarray:
  """A `search_cell.Cell`'s Keras weights as the flat vector `fused_cell` unpacks."""
  channels, num_blocks = cell.channels, cell.num_blocks
  layout = layout or cell_layout(channels, num_blocks)
  kernels = {}
  for state in range(num_blocks + 1):
    edges = [cell.mixed_ops[space.edge_index(b, state)] for b in readers(state, num_blocks)]
    for op in _CONV_OPS:
      k = space.PRIMITIVES.index(op.name)
      convs = [[layer for layer in edge.candidates[k].layers if hasattr(layer, 'depthwise_kernel')]
               for edge in edges]
      for stage in range(op.stages):
        depthwise = [np.asarray(c[stage].depthwise_kernel) for c in convs]   # [k, k, C, 1]
        pointwise = [np.asarray(c[stage].pointwise_kernel)[0, 0] for c in convs]  # [C, C]
        if stage == 0:
          kernels[f's{state}/{op.name}/dw0'] = np.concatenate(depthwise, axis=-1)
        else:
          kernels[f's{state}/{op.name}/dw{stage}'] = np.concatenate(
              [d[:, :, :, 0] for d in depthwise], axis=-1)[..., np.newaxis]
        kernels[f's{state}/{op.name}/pw{stage}'] = np.stack(pointwise)
  return layout.pack(kernels)
