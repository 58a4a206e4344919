"""SavedModel export in TF Serving's layout, with preprocessing in the graph.

`{export_dir}/{model_name}/{version}/` holds `saved_model.pb`, `variables/` and `assets.extra/`
(`labels.json`: class names, palette, ignore label; `model.json`: the genotype, F and the export
options; `tf_serving_warmup_requests`: PredictionLog records TF Serving replays on load). The version
is written under a hidden temporary name and renamed when complete, so a model server watching the
directory never loads a half-written version.

Signatures:
* `serving_default`: `image_bytes` (tf.string [N]: encoded PNG / JPEG (GIF, BMP also decode)) ->
  `semantic` (int32 [N, H, W], class ids) and `confidence` (float32 [N, H, W], the winning class's
  probability). Each image is decoded, converted to RGB (grayscale replicated, alpha dropped) and
  segmented at its own size, one image at a time, so its result does not depend on the other images
  of the batch; H, W are the batch's largest height and width, and pixels beyond an image's own
  size are -1 in `semantic` and 0 in `confidence`. `image_size` (int32 [N, 2]) gives each size.
* `predict_tensor`: `images` (float32 [N, H, W, 3], RGB in [0, 255], any H, W) -> `logits`
  (float32 [N, H, W, C]) and `semantic` (int32 [N, H, W]). With multi-scale / flip inference,
  `logits` are the log of the averaged probabilities.
A model of other images (`datasets.ImageSpec`: grey, N bands, 16 bits) takes what they are:
`serving_default` decodes PNG (8 or 16-bit; 8-bit scaled to 16 bits for a 16-bit model) and JPEG
to its channel count (1, 3 or 4; other counts only through `predict_tensor`), and
`predict_tensor` takes float32 [N, H, W, channels] of raw values (0-255 or 0-65535); both
normalise by the dataset's value range, as training did. The export's `model.json` says so
(`input`).

Input policy: images are normalised to [-1, 1] as in training and never resized (the network is
fully convolutional; multi-scale inference resizes internally and averages at the input size);
sides below 32 px are padded with the mean and the result cropped back. What a request may cost is
bounded before anything is decoded (`image_limits`): each image's header gives its size, and a side
above `max_side` (4096), an image decoding to more than `max_pixels` (4096 x 4096; frames x pixels
for an animated GIF) or a request above `max_request_pixels` (4 x 4096 x 4096) is refused. Bad
requests (bytes that are no image, a truncated PNG or JPEG, an empty batch, an image above the
limits, a tensor without 3 channels) fail with InvalidArgument naming the image's index and what
was expected; the decoder's own errors keep TensorFlow's message.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Sequence

import numpy as np
import tensorflow as tf

from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
from official.autodeeplab import errors
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes
from official.autodeeplab.serving import image_limits
from official.autodeeplab.training import evaluation

DECODABLE_CHANNELS = (1, 3, 4)
MAX_SIDE = sizes.MAX_IMAGE_SIDE
MIN_SIDE = sizes.MIN_IMAGE_SIZE
SERVING_DEFAULT = 'serving_default'
PREDICT_TENSOR = 'predict_tensor'
WARMUP_FILE = 'tf_serving_warmup_requests'


class SegmentationServer(tf.Module):
  """The exported module: the Keras segmenter plus preprocessing, in two signatures.

  Args:
    model: images in [-1, 1] -> logits at the input size.
    scales: inference scales (1.0: single scale), averaged as in evaluation.
    flip: also average left-right flipped predictions.
    limits: the largest side and the decoded pixels accepted per image and per request.
  """

  def __init__(self, model, scales: Sequence[float] = (1.0,), flip: bool = False,
               limits: image_limits.Limits = image_limits.Limits(),
               image: datasets.ImageSpec = datasets.RGB8):
    super().__init__(name='autodeeplab')
    self.model, self.limits, self.image = model, limits, image
    self.scales, self.flip = tuple(float(s) for s in scales), bool(flip)

  def _probabilities(self, images):
    """float32 [N, H, W, C] raw values -> probabilities [N, H, W, classes]; small sides
    padded."""
    size = tf.shape(images)[1:3]
    padded = tf.maximum(size, MIN_SIDE)
    normalised = datasets.normalize(images, self.image)
    normalised = tf.pad(normalised, [[0, 0], [0, padded[0] - size[0]],
                                     [0, padded[1] - size[1]], [0, 0]])
    probabilities = evaluation.predict_probabilities(self.model, normalised, self.scales,
                                                     self.flip)
    return probabilities[:, :size[0], :size[1]]

  def _single_scale(self) -> bool:
    return self.scales == (1.0,) and not self.flip

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32,
                                              name='images')])
  def predict_tensor(self, images):
    shape = tf.shape(images)
    pixels = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
    limits = self.limits
    channels = self.image.channels
    checks = [
        tf.debugging.assert_equal(shape[3], channels, message=(
            'images: expected RGB, [N, H, W, 3]' if channels == 3 else
            f'images: expected [N, H, W, {channels}] (the model\'s {channels} channel(s))')),
        tf.debugging.assert_positive(shape[0], message='images: empty batch'),
        tf.debugging.assert_less_equal(
            tf.reduce_max(shape[1:3]), limits.max_side,
            message=f'images: height and width must be at most {limits.max_side}'),
        tf.debugging.assert_positive(tf.reduce_min(shape[1:3]),
                                     message='images: height and width must be positive'),
        tf.debugging.assert_less_equal(
            pixels, tf.constant(limits.max_pixels, tf.int64),
            message=f'images: at most {limits.max_pixels} pixels per image'),
        tf.debugging.assert_less_equal(
            pixels * tf.cast(shape[0], tf.int64), tf.constant(limits.max_request_pixels, tf.int64),
            message=f'images: at most {limits.max_request_pixels} pixels per request'),
    ]
    with tf.control_dependencies(checks):
      images = tf.identity(images)
    if self._single_scale():
      size = tf.shape(images)[1:3]
      padded = tf.maximum(size, MIN_SIDE)
      normalised = tf.pad(datasets.normalize(images, self.image),
                          [[0, 0], [0, padded[0] - size[0]], [0, padded[1] - size[1]], [0, 0]])
      logits = self.model(normalised, training=False)[:, :size[0], :size[1]]
    else:
      logits = tf.math.log(tf.maximum(self._probabilities(images), 1e-30))
    return {'logits': logits, 'semantic': tf.argmax(logits, -1, output_type=tf.int32)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_bytes')])
  def serve_image_bytes(self, image_bytes):
    count = tf.size(image_bytes)
    with tf.control_dependencies([tf.debugging.assert_positive(
        count, message='image_bytes: empty batch; send at least one encoded image')]):
      indices = tf.range(count)
    # Every header is read and bounded before anything is decoded (serving/image_limits).
    headers = tf.map_fn(
        lambda i: tf.stack(image_limits.checked_size(image_bytes[i], i, self.limits)), indices,
        fn_output_signature=tf.int64)
    with tf.control_dependencies([image_limits.check_request(headers[:, 2], self.limits)]):
      indices = tf.identity(indices)
    sizes_ = tf.cast(headers[:, :2], tf.int32)
    height, width = tf.reduce_max(sizes_[:, 0]), tf.reduce_max(sizes_[:, 1])

    def segment(i):
      image = tf.cast(self._decode(image_bytes[i]), tf.float32)
      probabilities = self._probabilities(image[tf.newaxis])[0]
      pad = [[0, height - tf.shape(image)[0]], [0, width - tf.shape(image)[1]]]
      semantic = tf.pad(tf.argmax(probabilities, -1, output_type=tf.int32), pad,
                        constant_values=-1)
      confidence = tf.pad(tf.reduce_max(probabilities, -1), pad)
      return semantic, confidence

    semantic, confidence = tf.map_fn(segment, indices,
                                     fn_output_signature=(tf.int32, tf.float32))
    return {'semantic': semantic, 'confidence': confidence, 'image_size': sizes_}

  def _decode(self, data):
    """One encoded image -> [H, W, channels] raw values (uint8, or uint16 for a 16-bit model);
    only called once its header passed the limits."""
    channels = self.image.channels
    if channels not in DECODABLE_CHANNELS:  # PNG and JPEG hold 1, 3 or 4 (RGBA) channels
      with tf.control_dependencies([tf.debugging.assert_equal(0, 1, message=(
          f'image_bytes: this model takes {channels}-band images, which PNG and JPEG cannot '
          'hold: send them to predict_tensor'))]):
        return tf.zeros([1, 1, channels], tf.uint8)
    dtype = tf.uint16 if self.image.bit_depth == 16 else tf.uint8
    return tf.ensure_shape(tf.io.decode_image(data, channels=channels, dtype=dtype,
                                              expand_animations=False), [None, None, channels])


def error_text(message: str) -> str:
  """What a client shows for a refused request: the assertion's own words (`image_bytes[i]:
  ...`), or the decoder's error line as TensorFlow states it, without node names and graph
  tracebacks."""
  lines = [line.strip() for line in message.strip().splitlines()
           if line.strip() and not line.strip().startswith('[[')]
  line = re.sub(r'^\{\{function_node [^}]*\}\}\s*', '', lines[-1] if lines else message)
  found = re.fullmatch(r'assertion failed: \[(.*)\]', line)
  return found.group(1) if found else f'the decoder refused it: {line}'


def next_version(model_dir: str) -> int:
  """1 + the largest integer version in model_dir (1 if none)."""
  versions = [int(name) for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
              if re.fullmatch(r'\d+', name)]
  return max(versions, default=0) + 1


def warmup_requests(model_name: str, path: str,
                    image: datasets.ImageSpec = datasets.RGB8) -> int:
  """Writes TF Serving warm-up records (PredictionLog) asking `serving_default` for two images
  of different sizes (and, for RGB, colour formats); returns the number of records (none for a
  model of images PNG cannot hold)."""
  from tensorflow_serving.apis import model_pb2
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_log_pb2
  rng = np.random.default_rng(0)
  if image.channels not in DECODABLE_CHANNELS:
    tf.io.gfile.GFile(path, 'wb').close()
    return 0
  dtype = np.uint16 if image.bit_depth == 16 else np.uint8
  png = lambda height, width: tf.io.encode_png(rng.integers(
      0, image.max_value + 1, [height, width, image.channels], dtype=dtype)).numpy()
  batches = [[png(64, 96)], [png(40, 40), png(48, 56)]]
  if image.channels == 3:  # a grey PNG to an RGB model: replicated
    batches[1][0] = example.png_bytes(rng.integers(0, 256, [40, 40], dtype=np.uint8))
  with tf.io.TFRecordWriter(path) as writer:
    for batch in batches:
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SERVING_DEFAULT))
      request.inputs['image_bytes'].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return len(batches)


def labels_document(num_classes: int, class_names: Sequence[str] | None = None,
                    palette: np.ndarray | None = None,
                    dataset_ids: Sequence[int] | None = None) -> dict:
  """What an export's `labels.json` holds: class names, palette, the ignore label, the
  `semantic` value of pixels beyond an image's own size, and `dataset_ids` (the dataset's own
  label value of each class, `datasets.dataset_ids`; null when unknown or not invertible)."""
  names = list(class_names) if class_names is not None else [
      f'class_{i}' for i in range(int(num_classes))]
  return {'class_names': names, 'ignore_label': datasets.IGNORE_LABEL, 'semantic_padding': -1,
          'palette': None if palette is None else np.asarray(palette).tolist(),
          'dataset_ids': None if dataset_ids is None else [int(i) for i in dataset_ids]}


def export(model, export_dir: str, model_name: str = 'autodeeplab', version: int | None = None,
           class_names: Sequence[str] | None = None, palette: np.ndarray | None = None,
           scales: Sequence[float] = (1.0,), flip: bool = False,
           description: dict | None = None, dataset_ids: Sequence[int] | None = None,
           limits: image_limits.Limits = image_limits.Limits(),
           image: datasets.ImageSpec = datasets.RGB8) -> str:
  """Writes `{export_dir}/{model_name}/{version}` (default: the next version); returns its path.

  Args:
    model: the trained segmenter.
    export_dir: the model server's base path.
    model_name: TF Serving's model name (a directory of versions).
    version: integer version; an existing one is refused.
    class_names: names of the classes, for `assets.extra/labels.json`.
    palette: [num_classes, 3] colours for `labels.json`.
    scales: inference scales in the graph.
    flip: left-right flip averaging in the graph.
    description: what the model is (`run_description.model_description`), for `model.json`.
    dataset_ids: the dataset's own label value per class, for `labels.json`.
    limits: what a request may cost (`image_limits.Limits`), checked from the image headers.
    image: what the model's images are (channels, bit depth, value range).
  """
  if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.-]*', model_name):
    raise UserInputError(f'model_name={model_name}: expected letters, digits, _ . -')
  model_dir = os.path.join(export_dir, model_name)
  version = next_version(model_dir) if version is None else int(version)
  if version < 1:
    raise UserInputError(f'version={version}: TF Serving versions are positive integers')
  target = os.path.join(model_dir, str(version))
  if os.path.exists(target):
    raise UserInputError(f'{target}: version {version} already exists; pass another --version '
                         'or leave it out for the next one')
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as e:
    raise UserInputError(f'{model_dir}: cannot create it ({e.strerror})') from None
  tmp = os.path.join(model_dir, f'.tmp-{version}-{os.getpid()}')
  shutil.rmtree(tmp, ignore_errors=True)
  server = SegmentationServer(model, scales, flip, limits, image)
  try:
    tf.saved_model.save(server, tmp, signatures={
        SERVING_DEFAULT: server.serve_image_bytes.get_concrete_function(),
        PREDICT_TENSOR: server.predict_tensor.get_concrete_function()})
    extra = os.path.join(tmp, 'assets.extra')
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, 'labels.json'), 'w') as f:
      json.dump(labels_document(model.num_classes, class_names, palette, dataset_ids), f,
                indent=1)
    with open(os.path.join(extra, 'model.json'), 'w') as f:
      json.dump({**(description or {}), 'scales': list(server.scales), 'flip': server.flip,
                 'max_side': limits.max_side, 'max_pixels': limits.max_pixels,
                 'max_request_pixels': limits.max_request_pixels, 'min_side_padded_to': MIN_SIDE,
                 'signatures': [SERVING_DEFAULT, PREDICT_TENSOR],
                 'image': image.to_dict(), 'input': input_contract(image)}, f, indent=1)
    warmup_requests(model_name, os.path.join(extra, WARMUP_FILE), image)
    os.rename(tmp, target)
  except (OSError, tf.errors.OpError) as e:  # a full disk, an unwritable export_dir
    raise UserInputError(f'{target}: cannot write the export ({errors.reason(e, 500)}); '
                         'nothing of it was left behind') from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


def input_contract(image: datasets.ImageSpec) -> dict:
  """What each signature takes, for the export's model.json."""
  low, high = image.value_range
  return {
      SERVING_DEFAULT: ('not available: PNG and JPEG cannot hold '
                        f'{image.channels} channels; use {PREDICT_TENSOR}'
                        if image.channels not in DECODABLE_CHANNELS else
                        f'encoded PNG ({"8 or 16" if image.bit_depth == 16 else "8"}-bit) or JPEG, '
                        f'decoded to {image.channels} channel(s)'
                        + (' (8-bit scaled to 16 bits)' if image.bit_depth == 16 else '')),
      PREDICT_TENSOR: (f'float32 [N, H, W, {image.channels}], raw {image.bit_depth}-bit values '
                       f'(0-{image.max_value})'),
      'normalisation': f'(x - {low:g}) / ({high:g} - {low:g}) * 2 - 1, as in training',
  }


def resolve_saved_model(path: str) -> str:
  """A version directory: `path` itself if it holds saved_model.pb, else its latest version."""
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return path
  if os.path.isdir(path):
    versions = [n for n in os.listdir(path) if re.fullmatch(r'\d+', n) and
                os.path.isfile(os.path.join(path, n, 'saved_model.pb'))]
    if versions:
      return os.path.join(path, max(versions, key=int))
  raise UserInputError(f'saved_model={path}: no saved_model.pb there nor in a version '
                       'directory under it (expected EXPORT_DIR/MODEL_NAME[/VERSION])')
