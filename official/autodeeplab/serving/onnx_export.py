"""ONNX export for onnxruntime and TensorRT users, and running an ONNX model with onnxruntime.

The converter (`tf2onnx`) gets one frozen, inlined function: the Keras layers' nested functions
would otherwise stay `StatefulPartitionedCall` nodes, which onnxruntime refuses ("No Op
registered for StatefulPartitionedCall"), so every variable is folded into a constant first
(`convert_variables_to_constants_v2`, as the LiteRT export does). The converter always sees
dynamic height and width, and a fixed `--input_size` is set on the ONNX input afterwards: given
static shapes, tf2onnx 1.17 turns each resize into float32 scales (17/33 of 33 pixels floors to
16), so the cells' inputs would no longer meet; given dynamic ones it keeps TensorFlow's target
sizes.

The ONNX model takes `image`, float32 [N, H, W, channels] of raw values (0-255; 0-65535 for a
16-bit dataset), H and W fixed by `--input_size` or dynamic (any size from 32 px), the
normalisation inside as in training, and gives `logits` float32 [N, H, W, classes] and
`semantic` int32 [N, H, W] (their argmax). `model.json` beside it says so (opset, names, dtypes,
layout). TensorRT builds an engine from it with its own `trtexec --onnx=FILE` (not run here).
"""
from __future__ import annotations

import numpy as np

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.serving import tflite

OPSET = 17
INPUT = 'image'
OUTPUTS = ('logits', 'semantic')


def file_name(model_name: str, size: tuple[int, int] | None) -> str:
  """`{model_name}_{H}x{W}.onnx`, or `{model_name}.onnx` with dynamic height and width."""
  return f'{model_name}_{size[0]}x{size[1]}.onnx' if size else f'{model_name}.onnx'


def convert(model, image, size: tuple[int, int] | None = None) -> bytes:
  """The ONNX bytes of `model` (images of `image`, a `datasets.ImageSpec`) at `size` (None:
  dynamic height and width)."""
  try:
    import tf2onnx
  except ImportError:
    raise UserInputError('--format=onnx needs the tf2onnx converter: pip install tf2onnx '
                         '(requirements.txt pins it)') from None
  import tensorflow as tf
  from tensorflow.python.framework import convert_to_constants
  from official.autodeeplab.data import datasets
  signature = tf.TensorSpec([None, None, None, image.channels], tf.float32, name=INPUT)

  @tf.function(input_signature=[signature])
  def segment(pixels):
    logits = model(datasets.normalize(pixels, image), training=False)
    return {'logits': tf.identity(logits, name='logits'),
            'semantic': tf.identity(tf.argmax(logits, -1, output_type=tf.int32),
                                    name='semantic')}

  frozen = convert_to_constants.convert_variables_to_constants_v2(segment.get_concrete_function())
  try:
    proto, _ = tf2onnx.convert.from_function(
        tf.function(frozen), input_signature=[signature], opset=OPSET,
        output_path=None)
  except Exception as e:  # noqa: BLE001 (the converter raises many kinds)
    raise UserInputError(f'the ONNX converter (tf2onnx {tf2onnx.__version__}) failed: '
                         f'{" ".join(str(e).split())[:300]}') from None
  proto = _named_outputs(proto)
  if size:
    _fix_size(proto, size)
  return proto.SerializeToString()


def _fix_size(proto, size: tuple[int, int]) -> None:
  """Sets the input's height and width (and drops the converter's shape guesses, which
  onnxruntime infers again from the fixed input)."""
  dims = proto.graph.input[0].type.tensor_type.shape.dim
  for dim, value in zip(dims[1:3], size):
    dim.Clear()
    dim.dim_value = value
  del proto.graph.value_info[:]


def _named_outputs(proto):
  """The graph's outputs renamed `logits` and `semantic` (the converter keeps TensorFlow's
  tensor names, which say nothing)."""
  graph = proto.graph
  renames = {}
  for output, name in zip(sorted(graph.output, key=lambda o: len(o.type.tensor_type.shape.dim),
                                 reverse=True), OUTPUTS):
    renames[output.name] = name
  for node in graph.node:
    node.output[:] = [renames.get(o, o) for o in node.output]
    node.input[:] = [renames.get(i, i) for i in node.input]
  for output in graph.output:
    output.name = renames.get(output.name, output.name)
  return proto


def describe(image, size: tuple[int, int] | None) -> dict:
  """What `model.json` says of the ONNX model's interface."""
  height, width = size or ('H', 'W')
  return {'format': 'onnx', 'opset': OPSET, 'layout': 'NHWC',
          'inputs': {INPUT: {'dtype': 'float32',
                             'shape': ['N', height, width, image.channels],
                             'values': f'raw {image.bit_depth}-bit (0-{image.max_value}), '
                                       'normalised inside'}},
          'outputs': {'logits': {'dtype': 'float32', 'shape': ['N', height, width, 'classes']},
                      'semantic': {'dtype': 'int32', 'shape': ['N', height, width]}}}


class OnnxModel:
  """An ONNX segmenter (this export) run by onnxruntime on the CPU.

  Args:
    path: the `.onnx` file.
    num_threads: onnxruntime's intra-op threads (None: its default).
    image: what the model's images are (`datasets.ImageSpec`; its `model.json` says), for the
      channel check and the letterbox padding of a fixed-size model.
  """

  def __init__(self, path: str, num_threads: int | None = None, image=None):
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise UserInputError(f'onnx={path}: cannot read it ({e.strerror})') from None
    try:
      import onnxruntime
    except ImportError:
      raise UserInputError('--onnx needs onnxruntime: pip install onnxruntime (requirements.txt '
                           'pins it)') from None
    options = onnxruntime.SessionOptions()
    if num_threads:
      options.intra_op_num_threads = num_threads
    try:
      self._session = onnxruntime.InferenceSession(data, options,
                                                   providers=['CPUExecutionProvider'])
    except Exception as e:  # noqa: BLE001 (onnxruntime raises its own kinds)
      raise UserInputError(f'onnx={path}: not an ONNX model onnxruntime can load '
                           f'({" ".join(str(e).split())[:200]})') from None
    inputs = self._session.get_inputs()
    outputs = [o.name for o in self._session.get_outputs()]
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or 'semantic' not in outputs:
      raise UserInputError(f'onnx={path}: not a segmenter of this project (expected one '
                           f'[N, H, W, channels] input and a `semantic` output, got '
                           f'{[i.name for i in inputs]} -> {outputs})')
    self._input = inputs[0].name
    shape = inputs[0].shape
    self.size = tuple(shape[1:3]) if all(isinstance(d, int) for d in shape[1:3]) else None
    self.channels = shape[3]
    classes = next(o.shape[-1] for o in self._session.get_outputs() if o.name == 'logits')
    self.num_classes = classes if isinstance(classes, int) else None
    if image is not None and image.channels != self.channels:
      raise UserInputError(f'onnx={path}: takes {self.channels}-channel images, but the '
                           f'model.json beside it says {image.channels}: they do not belong '
                           'together (export again)')
    self._pad = tflite.PAD_VALUE if image is None else tflite.pad_value(image)

  def predict(self, image: np.ndarray, with_logits: bool = False):
    """[h, w, channels] raw values -> int32 class ids [h, w] (and the logits). A fixed-size
    model gets the image letterboxed to its size, as LiteRT's does; a dynamic one takes it as
    it is."""
    if image.ndim == 2:
      image = image[..., np.newaxis]
    if image.shape[-1] != self.channels:
      raise ValueError(f'{image.shape[-1]} channel(s); the model takes {self.channels}')
    content = image.shape[:2]
    boxed = image
    if self.size is not None:
      boxed, content = tflite.letterbox(image, *self.size, self._pad)
    logits, semantic = self._session.run(
        ['logits', 'semantic'], {self._input: boxed[np.newaxis].astype(np.float32)})
    semantic = tflite.unletterbox(semantic[0], content, image.shape[:2])
    return (semantic, logits[0]) if with_logits else semantic
