"""The ONNX and Keras exports, each loaded by its real client (onnxruntime; `keras.saving.load_model`
in a fresh process) and held to the SavedModel; the export and predict tools for them; bad input.
MediaPipe's ImageSegmenter on the LiteRT export is in tests/test_tflite.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import datasets
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.serving import export
from official.autodeeplab.serving import formats
from official.autodeeplab.serving import onnx_export
from official.autodeeplab.utils import visualize
from tests.conftest import ROOT, assert_bad_input, run_tool
from tests import export_fixture
from tests.export_fixture import NUM_CLASSES, SIZE

pytestmark = pytest.mark.xdist_group('tflite')  # the `tiny` fixture's worker


def _write_onnx(tiny, directory, size):
  return formats.write_onnx(tiny['model'], str(directory), 'tiny', size, datasets.RGB8,
                            datasets.synthetic_spec(NUM_CLASSES), {'num_classes': NUM_CLASSES},
                            None)


@pytest.fixture(scope='session')
def dynamic_onnx(tiny):
  """The tiny model as a dynamic-size ONNX file."""
  return _write_onnx(tiny, tiny['root'] / 'onnx', None)


@pytest.mark.slow  # a conversion: the slow tier
def test_onnx_export_agrees_with_the_saved_model_at_any_size(tiny, dynamic_onnx):
  model = onnx_export.OnnxModel(dynamic_onnx, num_threads=2)
  assert model.size is None and model.num_classes == NUM_CLASSES
  ours = np.stack([model.predict(image) for image in tiny['images']])
  assert (ours == tiny['reference']).mean() >= 0.999
  saved = tf.saved_model.load(tiny['saved_model']).signatures[export.PREDICT_TENSOR]
  odd = np.random.default_rng(4).integers(0, 256, [41, 77, 3]).astype(np.uint8)
  semantic, logits = model.predict(odd, with_logits=True)
  reference = saved(images=tf.constant(odd[np.newaxis], tf.float32))
  np.testing.assert_allclose(logits, reference['logits'][0].numpy(), atol=1e-4)
  assert (semantic == reference['semantic'][0].numpy()).mean() >= 0.999
  with open(os.path.join(os.path.dirname(dynamic_onnx), 'model.json')) as f:
    described = json.load(f)
  assert described['format'] == 'onnx' and described['opset'] == onnx_export.OPSET
  assert described['inputs'] == {'image': {
      'dtype': 'float32', 'shape': ['N', 'H', 'W', 3],
      'values': 'raw 8-bit (0-255), normalised inside'}}
  assert set(described['outputs']) == {'logits', 'semantic'}


def test_onnx_model_refuses_a_file_that_is_not_onnx(tmp_path):
  text = tmp_path / 'model.onnx'
  text.write_text('not a model')
  with pytest.raises(UserInputError, match='not an ONNX model onnxruntime can load'):
    onnx_export.OnnxModel(str(text))
  with pytest.raises(UserInputError, match='cannot read it'):
    onnx_export.OnnxModel(str(tmp_path / 'missing.onnx'))


def test_onnx_export_without_the_converter_says_what_to_install(tiny, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'tf2onnx', None)  # `import tf2onnx` raises ImportError
  with pytest.raises(UserInputError, match='--format=onnx needs the tf2onnx converter: pip '
                                           'install tf2onnx'):
    _write_onnx(tiny, tmp_path, None)
  assert not os.listdir(tmp_path)


def test_labels_that_do_not_match_the_classes_are_refused_before_writing(tiny, tmp_path):
  with pytest.raises(UserInputError, match='the dataset names 3 classes, the model predicts 5'):
    formats.write_keras(tiny['model'], str(tmp_path), 'tiny', datasets.RGB8,
                        datasets.synthetic_spec(3), {}, None)
  assert not os.listdir(tmp_path)


KERAS_CLIENT = """
import sys
import keras
import numpy as np
import official.autodeeplab.modeling.segmentation_model  # registers the classes
images, reference = np.load(sys.argv[2]), np.load(sys.argv[3])
model = keras.saving.load_model(sys.argv[1])
print(json.dumps({'max_diff': float(np.abs(np.asarray(model(images)) - reference).max()),
                  'class_names': model.class_names, 'image': model.image_spec.to_dict()}))
model.compile(optimizer=keras.optimizers.SGD(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(images, np.zeros(images.shape[:3], np.int32), epochs=2, verbose=0)
print(json.dumps({'losses': history.history['loss']}))
"""


def _load_keras_in_a_fresh_process(path, images, reference, tmp_path):
  """`keras.saving.load_model` in a new Python outside the checkout, with only the package
  importable: its logits' largest difference from `reference`, names, image spec, fit losses."""
  np.save(tmp_path / 'images.npy', images)
  np.save(tmp_path / 'reference.npy', reference)
  result = subprocess.run(
      [sys.executable, '-c', 'import json\n' + KERAS_CLIENT, str(path),
       str(tmp_path / 'images.npy'), str(tmp_path / 'reference.npy')],
      cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
  return {**lines[0], **lines[1]}


def test_keras_archive_reloads_in_a_fresh_process_and_fine_tunes(tiny, tmp_path):
  path = formats.write_keras(tiny['model'], str(tmp_path / 'out'), 'tiny', datasets.RGB8,
                             datasets.synthetic_spec(NUM_CLASSES), {'num_classes': NUM_CLASSES},
                             None)
  images = tiny['images'][:2].astype(np.float32)
  reference = tiny['model'](datasets.normalize(tf.constant(images)), training=False).numpy()
  loaded = _load_keras_in_a_fresh_process(path, images, reference, tmp_path)
  assert loaded['max_diff'] <= 1e-5
  assert loaded['class_names'] == list(datasets.synthetic_spec(NUM_CLASSES).class_names)
  assert loaded['image'] == datasets.RGB8.to_dict()
  assert len(loaded['losses']) == 2 and all(np.isfinite(loaded['losses']))
  assert sorted(os.listdir(tmp_path / 'out')) == ['labels.json', 'model.json', 'tiny.keras']


@pytest.mark.slow
def test_export_tool_writes_onnx_and_keras_and_predict_runs_onnx(tiny, tmp_path):
  root = tiny['root']
  common = [f'--genotype={root / "genotype.json"}', '--filter_multiplier=2',
            f'--num_classes={NUM_CLASSES}', '--dataset=synthetic',
            f'--checkpoint={tiny["checkpoint"]}', '--model_name=tiny']
  result = run_tool('export', *common, f'--export_dir={tmp_path / "onnx"}', '--format=onnx',
                    f'--input_size={SIZE},{SIZE}')
  assert result.returncode == 0, result.stderr[-3000:]
  model_dir = tmp_path / 'onnx' / 'tiny'
  assert sorted(os.listdir(model_dir)) == ['labels.json', 'model.json', f'tiny_{SIZE}x{SIZE}.onnx']
  assert f'predict: python -m tools.predict --onnx={model_dir / f"tiny_{SIZE}x{SIZE}.onnx"}' in (
      result.stdout)
  inputs = tmp_path / 'inputs'
  export_fixture.write_inputs(tiny, inputs)
  result = run_tool('predict', f'--onnx={model_dir / f"tiny_{SIZE}x{SIZE}.onnx"}',
                    f'--input={inputs}', f'--output_dir={tmp_path / "masks"}', '--num_threads=1')
  assert result.returncode == 0, result.stderr[-3000:]
  from PIL import Image
  assert np.asarray(Image.open(tmp_path / 'masks' / 'b.png')).shape == (90, 130)  # letterboxed
  assert (np.asarray(Image.open(tmp_path / 'masks' / 'a.png')) == tiny['reference'][0]).mean() >= (
      0.999)

  result = run_tool('export', *common, f'--export_dir={tmp_path / "keras"}', '--format=keras')
  assert result.returncode == 0, result.stderr[-3000:]
  path = tmp_path / 'keras' / 'tiny' / 'tiny.keras'
  assert f'keras.saving.load_model({str(path)!r})' in result.stdout
  images = tiny['images'][:1].astype(np.float32)
  reference = tiny['model'](datasets.normalize(tf.constant(images)), training=False).numpy()
  assert _load_keras_in_a_fresh_process(path, images, reference, tmp_path)['max_diff'] <= 1e-5


@pytest.mark.slow  # the ONNX conversion
def test_predict_refuses_a_file_that_is_not_onnx_and_labels_of_another_export(
    tiny, dynamic_onnx, tmp_path):
  with pytest.raises(UserInputError, match='takes 3-channel images, but the model.json beside '
                                           'it says 1'):
    onnx_export.OnnxModel(dynamic_onnx, image=datasets.ImageSpec(1, 8, (0.0, 255.0)))
  visualize.save_png(tiny['images'][0], str(tmp_path / 'in.png'))
  (tmp_path / 'model.onnx').write_text('not a model')
  other = tmp_path / 'other'
  other.mkdir()
  os.symlink(dynamic_onnx, other / 'tiny.onnx')
  (other / 'labels.json').write_text(json.dumps({'class_names': ['a', 'b', 'c']}))
  from tests.cli_batch import run_batch
  results = run_batch('predict', [
      [f'--onnx={tmp_path / "model.onnx"}', f'--input={tmp_path / "in.png"}',
       f'--output_dir={tmp_path / "out0"}'],
      [f'--onnx={other / "tiny.onnx"}', f'--input={tmp_path / "in.png"}',
       f'--output_dir={tmp_path / "out1"}']])
  assert_bad_input(results[0], 'not an ONNX model onnxruntime can load')
  assert_bad_input(results[1], 'labels.json: names 3 classes, the model beside it predicts 5')
  assert not (tmp_path / 'out0').exists() and not (tmp_path / 'out1').exists()
