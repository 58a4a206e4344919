r"""Segments image files with an exported SavedModel, a training workdir, a running TF Serving, a
LiteRT model or an ONNX model.

  python -m tools.predict --saved_model=runs/serving/autodeeplab --input=photos/ \
      --output_dir=predictions                       # latest version; or .../autodeeplab/3
  python -m tools.predict --workdir=runs/cityscapes_s --input=a.png,b.jpg --output_dir=out
  python -m tools.predict --server=localhost:8501 --model_name=autodeeplab --input=photos/ \
      --output_dir=out [--protocol=rest|grpc] [--dataset=cityscapes]
  python -m tools.predict --tflite=runs/tflite/autodeeplab/autodeeplab_513x513_int8.tflite \
      --input=photos/ --output_dir=out [--num_threads=2]
  python -m tools.predict --onnx=runs/onnx/autodeeplab/autodeeplab.onnx --input=photos/ \
      --output_dir=out                                 # onnxruntime

The first three send the files' own bytes to the `serving_default` signature (decoding and
preprocessing happen in the model), so they give the same masks; a TIFF, or any image of a model
whose channel count PNG cannot hold, is read here (`data/images.py`, its size from its header
first) and sent to `predict_tensor` instead (not to a --server). `--tflite` reads each image here
and fits it to the model's fixed input (`serving/tflite.letterbox`: a larger image is scaled
down to fit, keeping its aspect ratio; padding is the middle of the value range; the masks come
back at the image's size). For each image it writes
`{name}.png` (class ids), `{name}_colour.png` (the dataset's palette) and `{name}_overlay.png`.
REST uses TF Serving's `:predict` with base64 bytes (port 8501); gRPC its PredictionService
(port 8500) through tensorflow-serving-api.
"""
from __future__ import annotations

import base64
import json
import os
import sys

from absl import flags

from official.autodeeplab import launch
from . import common

FLAGS = flags.FLAGS
flags.DEFINE_list('input', None, 'Image files and/or directories of images.')
flags.DEFINE_string('output_dir', None, 'Where the masks and overlays are written.')
flags.DEFINE_string('saved_model', None, 'An export: MODEL_DIR (latest version) or a version dir.')
flags.DEFINE_string('server', None, 'host:port of a running TF Serving.')
flags.DEFINE_enum('protocol', 'rest', ['rest', 'grpc'], 'How to talk to --server.')
common.define_flags('workdir', 'model_name', 'dataset', 'prediction_ids')  # --workdir: latest
flags.DEFINE_float('timeout', 60.0, 'Seconds to wait for --server per image.')
flags.DEFINE_string('tflite', None, 'A LiteRT model (tools.export --format=tflite): images of '
                    'any size are letterboxed to its input size.')
flags.DEFINE_string('onnx', None, 'An ONNX model (tools.export --format=onnx), run by '
                    'onnxruntime: images of any size (letterboxed to a fixed-size model\'s).')
flags.DEFINE_integer('num_threads', None, 'CPU threads of the LiteRT interpreter (--tflite) or of '
                    'onnxruntime (--onnx).')
flags.mark_flags_as_required(['input', 'output_dir'])

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff')
TIFF = ('.tif', '.tiff')


def list_images(inputs: list[str]) -> list[str]:
  """Files as given, directories expanded to their image files, walked recursively (sorted)."""
  files = []
  for path in inputs:
    if os.path.isdir(path):
      found = sorted(os.path.join(root, n) for root, _, names in os.walk(path) for n in names
                     if n.lower().endswith(IMAGE_EXTENSIONS))
      if not found:
        raise common.UserInputError(f'--input={path}: no {"/".join(IMAGE_EXTENSIONS)} files')
      files += found
    elif os.path.isfile(path):
      files.append(path)
    else:
      raise common.UserInputError(f'--input={path}: no such file or directory')
  return files


class LocalModel:
  """`serving_default` of a SavedModel, or of a workdir's model wrapped the same way; its
  `predict_tensor` for images read here (TIFF, or channel counts PNG cannot hold)."""

  def __init__(self, saved_model: str | None, workdir: str | None):
    import tensorflow as tf
    from official.autodeeplab.serving import export
    from official.autodeeplab.training import run_description
    if saved_model:
      self.path = export.resolve_saved_model(saved_model)
      loaded = tf.saved_model.load(self.path)
      self._fn = loaded.signatures[export.SERVING_DEFAULT]
      self._tensor_fn = loaded.signatures[export.PREDICT_TENSOR]
      with open(os.path.join(self.path, 'assets.extra', 'model.json')) as f:
        self.image = run_description.image_spec(json.load(f))
    else:
      from official.autodeeplab.training import checkpoints
      model, self.description, self.path = checkpoints.load_trained_model(workdir)
      self.image = run_description.image_spec(self.description)
      # Held: a tf.function method keeps only a weak reference to its module.
      self._server = export.SegmentationServer(model, image=self.image)
      self._fn = self._server.serve_image_bytes
      self._tensor_fn = self._server.predict_tensor
    self._errors = (tf.errors.InvalidArgumentError,)
    self._error_text = export.error_text

  def __call__(self, data: bytes, path: str = ''):
    import tensorflow as tf
    from official.autodeeplab.serving import export
    if path.lower().endswith(TIFF) or self.image.channels not in export.DECODABLE_CHANNELS:
      array = read_image(path, self.image)
      out = self._tensor_fn(images=tf.constant(array[None], tf.float32))
      return out['semantic'].numpy()[0], array.shape[:2]
    try:
      out = self._fn(image_bytes=tf.constant([data]))
    except self._errors as e:
      raise ValueError(_without_index(self._error_text(e.message))) from None
    return out['semantic'].numpy()[0], out['image_size'].numpy()[0]


def read_image(path: str, image):
  """A file as the model's images are (`datasets.ImageSpec` `image`): read by
  `data/images.py` within the export's limits (from the header), made to agree
  (`images.conform`; 8-bit data given to a 16-bit model scaled up)."""
  import numpy as np
  from official.autodeeplab.data import images
  from official.autodeeplab.modeling import sizes
  try:
    info = images.probe(path)
    if max(info.height, info.width) > sizes.MAX_IMAGE_SIDE:
      raise ValueError(f'image of {info.height}x{info.width} pixels; height and width must be at '
                       f'most {sizes.MAX_IMAGE_SIDE}')
    array = images.read(path, info)
    if array.dtype == np.uint8 and image.bit_depth == 16:
      array = array.astype(np.uint16) * 257
    return images.conform(array, image, path)
  except common.UserInputError as e:  # this one file: said, and the others still written
    raise ValueError(str(e).split(': ', 1)[-1]) from None


def _without_index(text: str) -> str:
  """'image_bytes[0]: image of ...' -> 'image of ...': one file per request here."""
  return text.split(': ', 1)[1] if text.startswith('image_bytes[0]: ') else text


class ModelFileClient:
  """A model file of tools.export run in this process by its own runtime (`--tflite`: LiteRT's
  interpreter, fitted to the model's input by `tflite.letterbox`; `--onnx`: onnxruntime): each
  image read here as the model's images are (its `model.json` beside it says; 8-bit RGB without
  one). The export's limits hold here too: the size is read from the header before decoding.

  Args:
    path: the model file.
    num_threads: the runtime's CPU threads.
    runner: `tflite.LiteRTModel` or `onnx_export.OnnxModel` (path, threads, image spec).
  """

  def __init__(self, path: str, num_threads: int | None, runner):
    self.path = path
    self.image = _described_image(path)
    self.model = runner(path, num_threads, self.image)

  def __call__(self, data: bytes, path: str = ''):
    del data
    image = read_image(path, self.image)
    return self.model.predict(image), image.shape[:2]


def _described_image(path: str):
  """The image spec in the `model.json` beside an exported file (8-bit RGB without one)."""
  from official.autodeeplab.data import datasets
  from official.autodeeplab.training import run_description
  described = os.path.join(os.path.dirname(path), 'model.json')
  if not os.path.isfile(described):
    return datasets.RGB8
  with open(described) as f:
    return run_description.image_spec(json.load(f))


class RestClient:
  """TF Serving's REST API: POST /v1/models/{name}:predict with base64 bytes."""

  def __init__(self, server: str, model_name: str, timeout: float):
    self.url = f'http://{server}/v1/models/{model_name}:predict'
    self.timeout = timeout

  def __call__(self, data: bytes, path: str = ''):
    del path
    import urllib.error
    import urllib.request
    import numpy as np
    body = json.dumps({'signature_name': 'serving_default',
                       'instances': [{'b64': base64.b64encode(data).decode()}]}).encode()
    request = urllib.request.Request(self.url, body, {'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        prediction = json.load(response)['predictions'][0]
    except urllib.error.HTTPError as e:
      body = e.read().decode(errors='replace')
      try:
        from official.autodeeplab.serving import export
        text = _without_index(export.error_text(json.loads(body)['error']))
      except (ValueError, KeyError, TypeError):
        text = body[:300]
      raise ValueError(f'HTTP {e.code}: {text}') from None
    except (urllib.error.URLError, OSError) as e:
      raise common.UserInputError(f'--server={self.url}: {e}') from None
    return np.asarray(prediction['semantic']), np.asarray(prediction['image_size'])


class GrpcClient:
  """TF Serving's gRPC PredictionService (tensorflow-serving-api)."""

  def __init__(self, server: str, model_name: str, timeout: float):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    self.server, self.model_name, self.timeout = server, model_name, timeout
    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server))

  def __call__(self, data: bytes, path: str = ''):
    del path
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self.model_name
    request.model_spec.signature_name = 'serving_default'
    request.inputs['image_bytes'].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
    try:
      response = self.stub.Predict(request, timeout=self.timeout)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
        from official.autodeeplab.serving import export
        raise ValueError(_without_index(export.error_text(e.details()))) from None
      raise common.UserInputError(f'--server={self.server}: {e.code().name}: {e.details()}') from None
    return (tf.make_ndarray(response.outputs['semantic'])[0],
            tf.make_ndarray(response.outputs['image_size'])[0])


def _spec(dataset: str | None, description: dict | None):
  """The dataset spec: --dataset's, else the workdir's (model.json), else None."""
  from official.autodeeplab.data import datasets
  from official.autodeeplab.data import spec_file
  if dataset:
    return datasets.get_spec(dataset)
  return spec_file.spec_of(description, f'{FLAGS.workdir}/model.json') if description else None


def _dataset_ids(labels: str | None, spec):
  """--prediction_ids=dataset: each class's own label value, from the spec or the export's
  labels.json."""
  import numpy as np
  from official.autodeeplab.data import datasets
  if spec is not None:
    return datasets.dataset_ids(spec)
  if labels and os.path.isfile(labels):
    with open(labels) as f:
      ids = json.load(f).get('dataset_ids')
    if ids:
      return np.asarray(ids, np.int64)
  raise common.UserInputError('--prediction_ids=dataset: the model\'s labels.json has no '
                              'dataset_ids (export it with --dataset, or pass --dataset here)')


def _check_labels(labels: str, num_classes: int | None) -> None:
  """The labels.json beside a model file names as many classes as the model predicts (a file
  copied from another export would colour and name every mask wrong)."""
  if num_classes is None or not os.path.isfile(labels):
    return
  try:
    with open(labels) as f:
      names = json.load(f)['class_names']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise common.UserInputError(f'{labels}: not a labels.json of tools.export ({e})') from None
  if len(names) != num_classes:
    raise common.UserInputError(f'{labels}: names {len(names)} classes, the model beside it '
                                f'predicts {num_classes} (a labels.json of another export?)')


def _palette(labels: str | None, spec):
  """The dataset's colours: the spec's, else the export's labels.json, else a fixed one."""
  from official.autodeeplab.utils import visualize
  if spec is not None:
    return visualize.label_palette(spec.palette)
  if labels and os.path.isfile(labels):
    with open(labels) as f:
      palette = json.load(f).get('palette')
    if palette:
      return visualize.label_palette(palette)
  return visualize.label_palette(None)


def main(argv):
  del argv
  sources = [FLAGS.saved_model, FLAGS.workdir, FLAGS.server, FLAGS.tflite, FLAGS.onnx]
  if sum(s is not None for s in sources) != 1:
    raise common.UserInputError('pass exactly one of --saved_model, --workdir, --server, '
                                '--tflite, --onnx')
  if FLAGS.num_threads is not None and FLAGS.num_threads < 1:
    raise common.UserInputError(f'--num_threads={FLAGS.num_threads}: must be positive')
  files = list_images(FLAGS.input)
  import numpy as np
  from tqdm import tqdm
  from official.autodeeplab.data import datasets
  from official.autodeeplab.utils import visualize
  labels, description = None, None
  if FLAGS.server:
    client = (RestClient if FLAGS.protocol == 'rest' else GrpcClient)(
        FLAGS.server, FLAGS.model_name, FLAGS.timeout)
  elif FLAGS.tflite or FLAGS.onnx:
    if FLAGS.tflite:
      from official.autodeeplab.serving.tflite import LiteRTModel as runner
    else:
      from official.autodeeplab.serving.onnx_export import OnnxModel as runner
    client = ModelFileClient(FLAGS.tflite or FLAGS.onnx, FLAGS.num_threads, runner)
    labels = os.path.join(os.path.dirname(FLAGS.tflite or FLAGS.onnx), 'labels.json')
    _check_labels(labels, client.model.num_classes)
  else:  # TensorFlow runs the model in this process (a server or LiteRT runs it elsewhere)
    launch.start('inference', strategy=None)
    client = LocalModel(FLAGS.saved_model, FLAGS.workdir)
    if FLAGS.saved_model:
      labels = os.path.join(client.path, 'assets.extra', 'labels.json')
    description = getattr(client, 'description', None)
  spec = _spec(FLAGS.dataset, description)
  image_spec = getattr(client, 'image', datasets.RGB8)  # a server's: the files as 8-bit RGB
  palette = _palette(labels, spec)
  dataset_ids = (_dataset_ids(labels, spec) if FLAGS.prediction_ids == 'dataset' else None)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  failed = []
  for path in tqdm(files, unit='img', desc='predict'):
    try:
      with open(path, 'rb') as f:
        data = f.read()
      semantic, (height, width) = client(data, path)
    except common.UserInputError:  # the model or server itself: nothing else would work either
      raise
    except (OSError, ValueError) as e:  # one bad file: said, and the others still written
      failed.append(path)
      tqdm.write(f'error: {path}: {e.strerror if isinstance(e, OSError) else e}', file=sys.stderr)
      continue
    ids = np.asarray(semantic)[:height, :width].astype(np.uint8)
    name = os.path.splitext(os.path.basename(path))[0]
    if dataset_ids is not None:  # the benchmark server's input: one PNG per image, nothing else
      visualize.save_png(dataset_ids[ids].astype(np.uint8),
                         os.path.join(FLAGS.output_dir, f'{name}.png'))
      continue
    colours = visualize.colorize(ids, palette)
    image = visualize.display_rgb(datasets.normalize(
        read_image(path, image_spec).astype(np.float32), image_spec))
    visualize.save_png(ids, os.path.join(FLAGS.output_dir, f'{name}.png'))
    visualize.save_png(colours, os.path.join(FLAGS.output_dir, f'{name}_colour.png'))
    visualize.save_png(visualize.overlay(image, colours),
                       os.path.join(FLAGS.output_dir, f'{name}_overlay.png'))
  written = ('{name}.png in the dataset\'s own label ids' if dataset_ids is not None else
             '{name}.png ids, {name}_colour.png, {name}_overlay.png')
  print(f'[predict] {len(files) - len(failed)} image(s) -> {FLAGS.output_dir} ({written})')
  if failed:
    raise common.UserInputError(f'--input: {len(failed)} of {len(files)} image(s) could not be '
                                'segmented (each named above); the others were written')


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
