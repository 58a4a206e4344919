"""On-device export: the segmenter as a LiteRT (TFLite) model, and running one with LiteRT.

The SavedModel serves any image size; a LiteRT model has one fixed input, uint8 [1, H, W, 3] RGB,
with the normalisation inside, and one output: the per-class scores (logits) float32
[1, H, W, classes], as MediaPipe's ImageSegmenter reads them (its category mask is their argmax,
its confidence masks their softmax; `tflite_metadata.py` writes what it needs to know). A model of
other images (`datasets.ImageSpec`) takes [1, H, W, channels]: uint8 for 8-bit data, float32 raw
values (0-65535) for 16-bit data. Three forms:

* `none`: float32 weights and arithmetic;
* `float16`: weights stored in float16 (half the file), computed in float32;
* `int8`: full-integer post-training quantization, calibrated on representative images of the
  model's input size: weights and activations int8, the input uint8 as given.

The converter gets a concrete `tf.function` whose variables are all frozen into constants
(`convert_variables_to_constants_v2`): a variable the converter keeps (the drop-path layers' step
and progress) becomes a READ_VARIABLE op that the interpreter runs uninitialised, and full-integer
quantization cannot lower it at all.

`letterbox` / `unletterbox` fit an image of any size to the model's input: a larger image is
scaled down (bilinear, keeping its aspect ratio) until it fits, then padded at the bottom and the
right with mid-grey (the normalised mean, so padding reads as "nothing"); the prediction is
cropped back to the content and, for a scaled image, resized to the original size by nearest
neighbour. `LiteRTModel` runs a `.tflite` file with LiteRT's interpreter (XNNPACK on CPU).
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from official.autodeeplab.errors import UserInputError
from official.autodeeplab import files

QUANTIZATIONS = ('none', 'float16', 'int8')
PAD_VALUE = 128  # uint8 mid-grey: 0 after normalisation, the training padding (8-bit RGB)
_FLATBUFFER_ID = b'TFL3'  # a LiteRT model's file identifier (bytes 4..8)


def model_file_name(model_name: str, height: int, width: int, quantize: str = 'none') -> str:
  """`{model_name}_{H}x{W}[_{quantize}].tflite`."""
  suffix = '' if quantize == 'none' else f'_{quantize}'
  return f'{model_name}_{height}x{width}{suffix}.tflite'


def pad_value(image) -> float:
  """The letterbox's padding for images of `image` (a `datasets.ImageSpec`): the middle of its
  value range, 0 after normalisation like the training padding (128 for 8-bit data)."""
  if image.bit_depth == 8 and tuple(image.value_range) == (0.0, 255.0):
    return PAD_VALUE
  return round(sum(image.value_range) / 2)


def frozen_function(model, height: int, width: int, quantize: str = 'none', image=None):
  """The inference graph with every variable a constant, for the converter.

  Float forms take uint8 (8-bit data) and cast it in the graph; the int8 form takes the same
  pixel values as float32 and the converter makes its input uint8 (`inference_input_type`), so
  the cast is not a float op inside an integer graph. 16-bit data is taken as float32 values.
  """
  import tensorflow as tf
  # The public converter has no freezing step of its own for a concrete function.
  from tensorflow.python.framework import convert_to_constants
  from official.autodeeplab.data import datasets
  image = image or datasets.RGB8
  dtype = tf.float32 if quantize == 'int8' or image.bit_depth == 16 else tf.uint8

  @tf.function(input_signature=[tf.TensorSpec([1, height, width, image.channels], dtype,
                                              name='image')])
  def segment(pixels):
    return {'scores': model(datasets.normalize(tf.cast(pixels, tf.float32), image),
                            training=False)}

  return convert_to_constants.convert_variables_to_constants_v2(segment.get_concrete_function())


def convert(model, height: int, width: int, quantize: str = 'none',
            calibration: Iterable[np.ndarray] | None = None, image=None) -> bytes:
  """The LiteRT flatbuffer of `model` at input size (height, width).

  Args:
    model: the trained segmenter (images in [-1, 1] -> logits).
    height, width: the fixed input size.
    quantize: 'none', 'float16' or 'int8'.
    calibration: for int8, [height, width, channels] images (a few dozen to a hundred).
    image: what the model's images are (`datasets.ImageSpec`; default 8-bit RGB).
  """
  import tensorflow as tf
  if quantize not in QUANTIZATIONS:
    raise UserInputError(f'quantize={quantize}: expected one of {", ".join(QUANTIZATIONS)}')
  images = None
  if quantize == 'int8':
    images = [np.asarray(image, np.float32)[np.newaxis] for image in (calibration or [])]
    if not images:
      raise UserInputError('quantize=int8: needs calibration images (--tfrecord_dir with '
                           '--calibration_split)')
  function = frozen_function(model, height, width, quantize, image)
  # 16-bit values stay float32; 8-bit pixels enter an int8 model as uint8.
  input_type = tf.uint8 if quantize == 'int8' and (image is None or image.bit_depth == 8) else None
  return convert_function(function, quantize, lambda: ([x] for x in images), input_type)


def convert_function(function, quantize: str = 'none', representative=None,
                     input_type=None, output_type=None) -> bytes:
  """The flatbuffer of a frozen concrete function with `quantize`'s converter options (the export
  and the latency table's parts are converted alike). `representative`: for int8, a callable
  yielding lists of input arrays; `input_type` / `output_type`: an int8 model's edge types.

  The converter's trackable object is an empty `tf.Module`: given the Keras model, it first
  saves the whole model as a SavedModel, which made a conversion about ten times slower
  (docs/performance.md), and a frozen function has no variables to save; given none, it takes
  TensorFlow's deprecated conversion path, which ran for minutes on some networks."""
  import tensorflow as tf
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
  if quantize == 'float16':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == 'int8':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if input_type is not None:
      converter.inference_input_type = input_type
    if output_type is not None:
      converter.inference_output_type = output_type
  try:
    return converter.convert()
  except Exception as e:  # noqa: BLE001 (the converter raises ConverterError and others)
    raise UserInputError(_conversion_error(str(e), quantize)) from None


def _conversion_error(message: str, quantize: str) -> str:
  """The converter's many-line MLIR error as one line naming the ops it could not lower."""
  ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)))
  ops += sorted(set(re.findall(r"'tfl\.(\w+)' op .*?(?:int8|quantiz)", message)) - set(ops))
  what = (f'op{"s" if len(ops) > 1 else ""} {", ".join(ops)}' if ops
          else ' '.join(message.split())[:200])
  if quantize == 'int8':
    hint = 'full-integer quantization needs every op in int8: --quantize=float16 or none avoids it'
  else:
    hint = ('not a LiteRT builtin op; the model would need TensorFlow ops in the runtime (Select '
            'TF ops), which this export does not bundle')
  return f'the LiteRT converter cannot lower {what} ({hint})'



def write_model(data: bytes, path: str) -> str:
  """Writes the flatbuffer atomically, a failure as one line (`files.write_bytes`)."""
  return files.write_bytes(path, data)


def calibration_images(files: list[str], height: int, width: int, count: int,
                       image=None) -> list[np.ndarray]:
  """Up to `count` images of the TFRecord shards `files` (of `image`, a `datasets.ImageSpec`),
  letterboxed to (height, width)."""
  import tensorflow as tf
  from official.autodeeplab.data import example
  from official.autodeeplab.data import datasets
  image = image or datasets.RGB8
  parse = lambda serialized: example.parse(serialized, image)
  return [letterbox(features['image'].numpy(), height, width, pad_value(image))[0]
          for features in tf.data.TFRecordDataset(files).map(parse).take(count)]


def letterbox(image: np.ndarray, height: int, width: int,
              pad: float = PAD_VALUE) -> tuple[np.ndarray, tuple[int, int]]:
  """[h, w, C] (uint8 or uint16) -> ([height, width, C] of its type, (content height, content
  width)); the padding `pad` (the middle of the value range)."""
  from PIL import Image
  h, w = image.shape[:2]
  scale = min(1.0, height / h, width / w)
  if scale < 1.0:
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.dtype == np.uint8 and image.shape[-1] == 3:
      image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    else:  # band by band in floating point (grey, N bands, 16 bits)
      bands = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), 'F').resize(
          size, Image.BILINEAR)) for c in range(image.shape[-1])]
      image = np.clip(np.round(np.stack(bands, -1)), 0,
                      np.iinfo(image.dtype).max).astype(image.dtype)
  content = image.shape[:2]
  boxed = np.full([height, width, image.shape[-1]], pad, image.dtype)
  boxed[:content[0], :content[1]] = image
  return boxed, content


def unletterbox(semantic: np.ndarray, content: tuple[int, int],
                original: tuple[int, int]) -> np.ndarray:
  """The model's [height, width] class ids -> the original image's [h, w]."""
  from PIL import Image
  cropped = semantic[:content[0], :content[1]]
  if tuple(content) == tuple(original):
    return cropped
  resized = Image.fromarray(cropped.astype(np.int32)).resize(
      (original[1], original[0]), Image.NEAREST)
  return np.asarray(resized).astype(semantic.dtype)


class LiteRTModel:
  """A `.tflite` segmenter run by LiteRT's interpreter (`ai-edge-litert`).

  Args:
    path: the model file.
    num_threads: CPU threads of the interpreter (XNNPACK).
  """

  def __init__(self, path: str, num_threads: int | None = None, image=None):
    try:
      with open(path, 'rb') as f:
        header = f.read(8)
    except OSError as e:
      raise UserInputError(f'tflite={path}: cannot read it ({e.strerror})') from None
    if header[4:8] != _FLATBUFFER_ID:
      raise UserInputError(f'tflite={path}: not a LiteRT model (no TFL3 flatbuffer identifier)')
    from ai_edge_litert import interpreter as litert
    try:
      self._interpreter = litert.Interpreter(model_path=path, num_threads=num_threads)
      self._runner = self._interpreter.get_signature_runner()
    except (ValueError, RuntimeError) as e:
      raise UserInputError(f'tflite={path}: LiteRT cannot load it ({e})') from None
    (name, detail), = self._runner.get_input_details().items()
    self._input_name, self._input_dtype = name, detail['dtype']
    self.height, self.width = (int(x) for x in detail['shape'][1:3])
    self.channels = int(detail['shape'][3])
    self._pad = PAD_VALUE if image is None else pad_value(image)
    # The scores (float [1, H, W, classes]); exports of before also had int32 class ids.
    outputs = self._runner.get_output_details()
    self._semantic = next((n for n, d in outputs.items() if d['dtype'] == np.int32), None)
    self._logits = next((n for n, d in outputs.items() if d['dtype'] != np.int32
                         and len(d['shape']) == 4), None)
    if self._semantic is None and self._logits is None:
      raise UserInputError(f'tflite={path}: no [1, H, W, classes] scores output (expected a model '
                           'written by tools.export --format=tflite)')
    self.num_classes = (int(outputs[self._logits]['shape'][-1]) if self._logits is not None
                        else None)

  def predict(self, image: np.ndarray, with_logits: bool = False):
    """[h, w, channels] (uint8, or uint16 for a 16-bit model) of any size -> int32 class ids
    [h, w] (letterboxed through the model); with `with_logits`, also the model's logits
    [height, width, classes] (float32)."""
    if image.ndim == 2:
      image = image[..., np.newaxis]
    if image.shape[-1] != self.channels:
      raise ValueError(f'{image.shape[-1]} channel(s); the model takes {self.channels}')
    boxed, content = letterbox(image, self.height, self.width, self._pad)
    outputs = self._runner(**{self._input_name: boxed[np.newaxis].astype(self._input_dtype)})
    logits = None if self._logits is None else np.asarray(outputs[self._logits][0], np.float32)
    ids = (np.argmax(logits, -1).astype(np.int32) if self._semantic is None
           else outputs[self._semantic][0])
    semantic = unletterbox(ids, content, image.shape[:2])
    if not with_logits:
      return semantic
    return semantic, logits
