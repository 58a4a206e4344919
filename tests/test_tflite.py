"""On-device export: LiteRT models in each quantization, run by LiteRT's own interpreter (not
TensorFlow's), held to the SavedModel's predictions; the export and predict tools; bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.serving import tflite
from official.autodeeplab.training import evaluation
from official.autodeeplab.utils import visualize
from tests.conftest import assert_bad_input, run_tool
from tests import export_fixture
from tests.export_fixture import GENOTYPE, NUM_CLASSES, SIZE

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('tflite')


def miou(labels, predictions):
  metrics = evaluation.SegmentationMetrics(NUM_CLASSES)
  metrics.update(labels.astype(np.int64), predictions)
  return metrics.result()['miou']


@pytest.fixture(scope='session')
def converted(tiny):
  """`converted(quantize)`: that quantization converted (once) and run through LiteRT on the
  val images."""
  results = {}

  def get(quantize):
    if quantize not in results:
      data = tflite.convert(tiny['model'], SIZE, SIZE, quantize,
                            calibration=list(tiny['images']))
      path = tflite.write_model(data, str(tiny['root'] / 'tflite' / tflite.model_file_name(
          'tiny', SIZE, SIZE, quantize)))
      model = tflite.LiteRTModel(path, num_threads=2)
      results[quantize] = {'size': len(data), 'semantic': np.stack(
          [model.predict(image) for image in tiny['images']])}
    return results[quantize]
  return get


@pytest.mark.parametrize('quantize,agreement', [
    ('none', 0.999), pytest.param('float16', 0.995, marks=pytest.mark.slow)])
def test_float_models_agree_with_the_saved_model(tiny, converted, quantize, agreement):
  assert (converted(quantize)['semantic'] == tiny['reference']).mean() >= agreement


@pytest.mark.slow
def test_int8_model_keeps_the_miou_and_is_small(tiny, converted):
  float32, int8 = converted('none'), converted('int8')
  assert abs(miou(tiny['labels'], int8['semantic']) -
             miou(tiny['labels'], float32['semantic'])) <= 0.02
  assert (int8['semantic'] == tiny['reference']).mean() >= 0.95
  assert int8['size'] <= 0.3 * float32['size']
  assert converted('float16')['size'] <= 0.55 * float32['size']


def test_logits_output_and_letterboxed_sizes(tiny):
  """A larger image is scaled down to fit and its mask comes back at its own size; a smaller one
  is padded and cropped back."""
  data = tflite.convert(tiny['model'], SIZE, SIZE, 'none')
  model = tflite.LiteRTModel(tflite.write_model(data, str(tiny['root'] / 'logits.tflite')))
  rng = np.random.default_rng(0)
  for shape in ([40, 50, 3], [130, 97, 3], [65, 200, 3]):
    semantic, logits = model.predict(rng.integers(0, 256, shape, dtype=np.uint8), True)
    assert semantic.shape == tuple(shape[:2]) and logits.shape == (SIZE, SIZE, NUM_CLASSES)
  image = tiny['images'][0]
  semantic, logits = model.predict(image, True)
  np.testing.assert_array_equal(semantic, np.argmax(logits, -1))


def test_letterbox_round_trip():
  rng = np.random.default_rng(1)
  small = rng.integers(0, 256, [40, 50, 3], dtype=np.uint8)
  boxed, content = tflite.letterbox(small, 65, 65)
  assert boxed.shape == (65, 65, 3) and content == (40, 50)
  np.testing.assert_array_equal(boxed[:40, :50], small)
  assert (boxed[40:] == tflite.PAD_VALUE).all() and (boxed[:, 50:] == tflite.PAD_VALUE).all()
  large = rng.integers(0, 256, [130, 97, 3], dtype=np.uint8)
  boxed, content = tflite.letterbox(large, 65, 65)
  assert content == (65, 48)  # scaled by 1/2, keeping the aspect ratio (97 / 2 rounds to even)
  ids = np.arange(65 * 65, dtype=np.int32).reshape(65, 65) % 5
  assert tflite.unletterbox(ids, content, (130, 97)).shape == (130, 97)
  assert tflite.unletterbox(ids, (40, 50), (40, 50)).shape == (40, 50)


def test_unlowerable_op_is_named():
  class Unlowerable(tf.Module):
    num_classes = 2

    def __call__(self, x, training=False):
      del training
      return tf.concat([tf.math.igamma(tf.abs(x[..., :1]) + 1., tf.abs(x[..., 1:2]) + 1.)] * 2, -1)

  with pytest.raises(UserInputError, match=r'cannot lower op Igamma \(not a LiteRT builtin'):
    tflite.convert(Unlowerable(), 32, 32, 'none')
  with pytest.raises(UserInputError, match='quantize=int8: needs calibration images'):
    tflite.convert(Unlowerable(), 32, 32, 'int8')


@pytest.mark.slow
def test_export_and_predict_tools(tiny, tmp_path):
  root = tiny['root']
  result = run_tool('export', f'--genotype={root / "genotype.json"}', '--filter_multiplier=2',
                    f'--num_classes={NUM_CLASSES}', '--dataset=synthetic',
                    f'--checkpoint={tiny["checkpoint"]}', f'--export_dir={tmp_path / "out"}',
                    '--model_name=tiny', '--format=tflite', f'--input_size={SIZE},{SIZE}',
                    '--quantize=int8', f'--tfrecord_dir={tiny["records"]}',
                    '--calibration_images=4')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'calibrated on 4 image(s)' in result.stdout
  model_dir = tmp_path / 'out' / 'tiny'
  assert sorted(os.listdir(model_dir)) == ['labels.json', 'model.json', 'tiny_65x65_int8.tflite']
  with open(model_dir / 'labels.json') as f:
    assert json.load(f)['class_names'][0] == 'background'
  inputs = tmp_path / 'inputs'
  export_fixture.write_inputs(tiny, inputs)
  result = run_tool('predict', f'--tflite={model_dir / "tiny_65x65_int8.tflite"}',
                    f'--input={inputs}', f'--output_dir={tmp_path / "masks"}', '--num_threads=1')
  assert result.returncode == 0, result.stderr[-3000:]
  from PIL import Image
  assert np.asarray(Image.open(tmp_path / 'masks' / 'b.png')).shape == (90, 130)
  assert np.asarray(Image.open(tmp_path / 'masks' / 'a_colour.png')).shape == (65, 65, 3)


EXPORT_BAD = [
    (['--format=tflite'], '--format=tflite needs --input_size'),
    (['--format=tflite', '--input_size=16,16'], '--input_size=16,16: height and width must be '
                                                'at least 32'),
    (['--format=tflite', '--input_size=64,5000'], 'must be at most 4096'),
    (['--format=tflite', '--input_size=64,64', '--quantize=int8'], 'needs calibration data'),
    (['--input_size=64,64'], '--input_size: not with --format=saved_model (only with '
                             '--format=onnx or tflite)'),
    (['--format=tflite', '--input_size=64,64', '--precision=bfloat16'],
     '--precision=bfloat16: a tflite export is float32 or quantized'),
    (['--format=keras', '--input_size=64,64'], '--input_size: not with --format=keras'),
    (['--format=onnx', '--quantize=int8'], '--quantize: not with --format=onnx'),
    (['--precision=float8'], '--precision=float8: expected one of float32, bfloat16, float16'),
]


@pytest.fixture(scope='session')
def export_bad_input(tmp_path_factory):
  """Every EXPORT_BAD command line, in one process (`tests/cli_batch.py`)."""
  from tests.cli_batch import run_batch
  root = tmp_path_factory.mktemp('export_bad')
  for i in range(len(EXPORT_BAD)):
    (root / str(i)).mkdir()
  results = run_batch('export', [['--genotype=paper', '--num_classes=3',
                                  f'--export_dir={root / str(i)}', *args]
                                 for i, (args, _) in enumerate(EXPORT_BAD)])
  return {'root': root, 'results': results}


@pytest.mark.parametrize('args,message', EXPORT_BAD)
def test_export_tool_bad_tflite_input(tmp_path, args, message, export_bad_input):
  index = [a for a, _ in EXPORT_BAD].index(args)
  assert_bad_input(export_bad_input['results'][index], message)
  assert not os.listdir(export_bad_input['root'] / str(index))


def test_predict_tool_refuses_a_file_that_is_no_litert_model(tmp_path):
  fake = tmp_path / 'model.tflite'
  fake.write_bytes(b'not a flatbuffer at all')
  image = tmp_path / 'a.png'
  visualize.save_png(np.zeros([8, 8, 3], np.uint8), str(image))
  result = run_tool('predict', f'--tflite={fake}', f'--input={image}',
                    f'--output_dir={tmp_path / "out"}')
  assert_bad_input(result, 'not a LiteRT model')
  assert len([l for l in result.stderr.splitlines() if l.startswith('error:')]) == 1


def _segment_with_mediapipe(path: str, images: np.ndarray):
  """MediaPipe Tasks' ImageSegmenter on `images` (uint8 RGB of the model's input size): its
  category masks, confidence masks and the labels it read from the metadata."""
  import mediapipe as mp
  from mediapipe.tasks.python import vision
  from mediapipe.tasks.python.core import base_options
  options = vision.ImageSegmenterOptions(
      base_options=base_options.BaseOptions(model_asset_path=path),
      output_category_mask=True, output_confidence_masks=True)
  masks, confidences = [], []
  with vision.ImageSegmenter.create_from_options(options) as segmenter:
    labels = list(segmenter.labels)
    for image in images:
      result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB,
                                          data=np.ascontiguousarray(image)))
      masks.append(result.category_mask.numpy_view().reshape(image.shape[:2]).copy())
      confidences.append(np.stack([c.numpy_view() for c in result.confidence_masks], -1))
  return np.stack(masks), np.stack(confidences), labels


@pytest.mark.parametrize('quantize', ['none', pytest.param('float16', marks=pytest.mark.slow),
                                      pytest.param('int8', marks=pytest.mark.slow)])
def test_mediapipe_image_segmenter_reads_the_export_as_it_is(tiny, tmp_path, quantize):
  """The export with MediaPipe's metadata: ImageSegmenter finds the labels and the softmax in
  it, and its category mask is predict's (images of the model's input size)."""
  from official.autodeeplab.data import datasets
  from official.autodeeplab.serving import formats
  spec = datasets.synthetic_spec(NUM_CLASSES)
  path = formats.write_tflite(
      tiny['model'], str(tmp_path), 'tiny', (SIZE, SIZE), quantize, list(tiny['images']),
      datasets.RGB8, spec, {'num_classes': NUM_CLASSES, 'dataset': 'synthetic'}, None, '3')
  masks, confidences, labels = _segment_with_mediapipe(path, tiny['images'])
  with open(tmp_path / 'labels.json') as f:
    assert labels == json.load(f)['class_names'] == list(spec.class_names)
  ours = np.stack([tflite.LiteRTModel(path).predict(image) for image in tiny['images']])
  assert (masks == ours).mean() >= 0.999, (masks == ours).mean()
  np.testing.assert_allclose(confidences.sum(-1), 1.0, atol=1e-3)  # softmax, not raw logits
  if quantize == 'none':
    assert (ours == tiny['reference']).mean() >= 0.999  # and the SavedModel's


@pytest.mark.slow  # a second conversion
def test_models_mediapipe_cannot_describe_are_written_without_metadata(tiny, tmp_path):
  from official.autodeeplab.data import datasets
  from official.autodeeplab.modeling import segmenter as segmenter_lib
  from official.autodeeplab.serving import formats
  grey = segmenter_lib.build_segmenter(GENOTYPE, NUM_CLASSES, filter_multiplier=2,
                                       input_channels=1)
  said = []
  path = formats.write_tflite(grey, str(tmp_path), 'grey', (SIZE, SIZE), 'none', None,
                              datasets.ImageSpec(1, 16, (0.0, 4095.0)), None, {}, None, '1',
                              log=said.append)
  assert said == ['[export] written without MediaPipe metadata: MediaPipe\'s image segmenter '
                  'takes 8-bit RGB images; this model takes 16-bit 1-channel ones']
  with open(tmp_path / 'model.json') as f:
    assert json.load(f)['mediapipe_metadata'] is False
  assert tflite.LiteRTModel(path).predict(np.zeros([SIZE, SIZE, 1], np.uint16)).shape == (
      SIZE, SIZE)
