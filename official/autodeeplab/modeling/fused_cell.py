"""The search cell's fast path: the same function as `search_cell.Cell`, in a few large ops.

Why: a supernet built from one Keras layer per op per edge has ~20 x 8 small layers per cell and
~50 cells; TensorFlow then spends minutes building and optimising the graph and its gradient before
the first step. This module computes a relaxed cell with ops grouped by *source state*:

* every MixedOp that reads state j (its "readers", blocks max(0, j-1)..B-1, always a suffix of the
  blocks) runs as one set of ops: a depthwise conv with channel multiplier = number of readers and
  the per-edge 1x1 convs as one matmul with a block-diagonal kernel;
* the weight-free ops (max/avg pool + BN, skip) are computed once per state and shared by readers;
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

from official.autodeeplab.search import space

# Weighted op name -> (kernel size, dilation, number of (ReLU, sep-conv, BN) stages).
_CONV_OPS = {
    'separable_3x3_2': (3, 1, 2),
    'separable_5x5_2': (5, 1, 2),
    'atrous_3x3': (3, 2, 1),
    'atrous_5x5': (5, 2, 1),
}
_FREE_OPS = ('max_pool_3x3', 'avg_pool_3x3', 'skip')
assert sorted((*_CONV_OPS, *_FREE_OPS, 'zero')) == sorted(space.PRIMITIVES), (
    'the fused cell must cover exactly the primitives of search/space.py')
_CONV_INDEX = [space.PRIMITIVES.index(name) for name in _CONV_OPS]
_FREE_INDEX = [space.PRIMITIVES.index(name) for name in _FREE_OPS]


def readers(state: int, num_blocks: int) -> range:
  """Blocks that read `state` (0 = H^{l-1}, 1 = H^{l-2}, 2 + b = block b)."""
  return range(max(0, state - 1), num_blocks)


def _kernel_shapes(channels: int, num_blocks: int) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for state in range(num_blocks + 1):
    r, c = len(readers(state, num_blocks)), channels
    for op, (k, _, stages) in _CONV_OPS.items():
      shapes[f's{state}/{op}/dw0'] = (k, k, c, r)
      shapes[f's{state}/{op}/pw0'] = (r, c, c)
      if stages == 2:
        shapes[f's{state}/{op}/dw1'] = (k, k, r * c, 1)
        shapes[f's{state}/{op}/pw1'] = (r, c, c)
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


def batch_norm(x: tf.Tensor, groups: int, epsilon: float) -> tf.Tensor:
  """Non-affine BN with the batch moments of each of `groups` equal slices of the batch axis."""
  shape = tf.shape(x)
  grouped = tf.reshape(x, tf.concat([[groups, -1], shape[1:]], 0))
  axes = [1, 2, 3]
  mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
  return tf.reshape((grouped - mean) * tf.math.rsqrt(variance + epsilon), shape)


def _depthwise(x, kernel, dilation):
  return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME', dilations=[dilation, dilation])


def _per_reader_pointwise(y, kernel, reader_major: bool):
  """Each reader's 1x1 conv: y [..., C*R channels] -> [..., R, D], kernel [R, C, D].

  One dense matmul with a block-diagonal kernel [C*R, R*D] (reader r's block maps its C channels
  to its D outputs): R times the multiply-adds of R separate 1x1 convs, but on oneDNN it ran 3-4x
  faster than the equivalent einsum ('...cr,rcd->...rd') at these small widths, which took two
  thirds of a search step. `reader_major`: y's channels are ordered (r, c), else (c, r).
  """
  readers, channels, outputs = kernel.shape
  mask = tf.eye(readers)[:, tf.newaxis, :, tf.newaxis]            # [r, 1, s, 1]
  blocks = kernel[:, :, tf.newaxis, :] * mask                       # [r, c, s, d]
  if not reader_major:
    blocks = tf.transpose(blocks, [1, 0, 2, 3])                     # [c, r, s, d]
  blocks = tf.reshape(blocks, [channels * readers, readers * outputs])
  shape = tf.shape(y)
  flat = tf.reshape(y, [-1, channels * readers])
  return tf.reshape(tf.matmul(flat, blocks),
                    tf.concat([shape[:3], [readers, outputs]], 0))


def _state_edges(x, kernels, prefix, edge_weights, groups, epsilon):
  """All MixedOps reading state x: [G*N, H, W, C] -> [G*N, H, W, R, C] (one slice per reader).

  edge_weights: [R, num_ops] softmax(alpha) rows of those edges.
  """
  shape = tf.shape(x)
  n, h, w = shape[0], shape[1], shape[2]
  channels = x.shape[-1]
  num_readers = edge_weights.shape[0]
  relu = tf.nn.relu(x)
  mixed = []
  for op, (_, dilation, stages) in _CONV_OPS.items():
    y = _depthwise(relu, kernels[f'{prefix}/{op}/dw0'], dilation)            # channels (c, r)
    y = _per_reader_pointwise(y, kernels[f'{prefix}/{op}/pw0'], reader_major=False)
    y = batch_norm(y, groups, epsilon)                                       # [n, h, w, r, c]
    if stages == 2:
      y = tf.reshape(tf.nn.relu(y), [n, h, w, num_readers * channels])        # channels (r, c)
      y = _depthwise(y, kernels[f'{prefix}/{op}/dw1'], 1)
      y = _per_reader_pointwise(y, kernels[f'{prefix}/{op}/pw1'], reader_major=True)
      y = batch_norm(y, groups, epsilon)
    mixed.append(y)
  # sum over ops of softmax(alpha)[edge, op] * op output, per reader (the einsum form of these
  # weighted sums ran slower on oneDNN than the broadcast multiply-adds).
  conv_weights = tf.gather(edge_weights, _CONV_INDEX, axis=1)               # [r, ops]
  free_weights = tf.gather(edge_weights, _FREE_INDEX, axis=1)
  free = [
      batch_norm(tf.nn.max_pool2d(x, 3, 1, 'SAME'), groups, epsilon),
      batch_norm(tf.nn.avg_pool2d(x, 3, 1, 'SAME'), groups, epsilon),
      x,
  ]
  return tf.add_n([y * conv_weights[:, k, tf.newaxis] for k, y in enumerate(mixed)] +
                  [y[:, :, :, tf.newaxis, :] * free_weights[:, k, tf.newaxis]
                   for k, y in enumerate(free)])


def fused_cell(h_prev: tf.Tensor, h_prev_prev: tf.Tensor, op_weights: tf.Tensor,
               kernels: dict[str, tf.Tensor], num_paths: int, num_blocks: int = space.NUM_BLOCKS,
               epsilon: float = 1e-5) -> tf.Tensor:
  """The relaxed cell on `num_paths` stacked H^{l-1} inputs sharing one H^{l-2}.

  Args:
    h_prev: [num_paths * N, H, W, C], the paths stacked on the batch axis (path-major).
    h_prev_prev: [N, H, W, C].
    op_weights: [num_edges, num_ops], softmax(alpha).
    kernels: `cell_layout(C, num_blocks).unpack(flat)`.
    num_paths: P; BN moments are computed per path.
    num_blocks: B.
    epsilon: BN epsilon.

  Returns:
    [num_paths * N, H, W, B * C]: for each path, exactly `search_cell.Cell(h_prev[p], h_prev_prev)`.
  """
  def rows(state):
    return tf.gather(op_weights, [space.edge_index(b, state) for b in readers(state, num_blocks)])

  # Edges of H^{l-2}: identical for every path, computed once and broadcast over the paths.
  from_prev_prev = _state_edges(h_prev_prev, kernels, 's1', rows(1), 1, epsilon)
  pending = _state_edges(h_prev, kernels, 's0', rows(0), num_paths, epsilon)
  shape = tf.shape(pending)
  pending = tf.reshape(tf.reshape(pending, tf.concat([[num_paths, -1], shape[1:]], 0))
                       + from_prev_prev[tf.newaxis], shape)
  blocks = []
  for b in range(num_blocks):
    block = pending[:, :, :, 0, :]
    blocks.append(block)
    if b + 1 < num_blocks:
      pending = pending[:, :, :, 1:, :] + _state_edges(block, kernels, f's{b + 2}', rows(b + 2),
                                                       num_paths, epsilon)
  return tf.concat(blocks, axis=-1)


def pack_reference_cell(cell, layout: KernelLayout | None = None) -> np.ndarray:
  """A `search_cell.Cell`'s Keras weights as the flat vector `fused_cell` unpacks."""
  channels, num_blocks = cell.channels, cell.num_blocks
  layout = layout or cell_layout(channels, num_blocks)
  kernels = {}
  for state in range(num_blocks + 1):
    edges = [cell.mixed_ops[space.edge_index(b, state)] for b in readers(state, num_blocks)]
    for op, (_, _, stages) in _CONV_OPS.items():
      k = space.PRIMITIVES.index(op)
      convs = [[layer for layer in edge.candidates[k].layers if 'separable' in layer.name]
               for edge in edges]
      for stage in range(stages):
        depthwise = [np.asarray(c[stage].depthwise_kernel) for c in convs]   # [k, k, C, 1]
        pointwise = [np.asarray(c[stage].pointwise_kernel)[0, 0] for c in convs]  # [C, C]
        if stage == 0:
          kernels[f's{state}/{op}/dw0'] = np.concatenate(depthwise, axis=-1)
        else:
          kernels[f's{state}/{op}/dw1'] = np.concatenate(
              [d[:, :, :, 0] for d in depthwise], axis=-1)[..., np.newaxis]
        kernels[f's{state}/{op}/pw{stage}'] = np.stack(pointwise)
  return layout.pack(kernels)
