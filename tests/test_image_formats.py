"""Own data beyond 8-bit RGB: grey, 16-bit, TIFF, RGBA and N-band images read as they are, kept
in the records, normalised one way in every stage, and a run that learns nothing said plainly.

16-bit PNGs once went through Pillow's RGB conversion, which clipped every value to white: the
pipeline then "succeeded" with a model that had learnt nothing. These tests read each format
back against what was saved, and follow the values through records, training input, the
SavedModel, LiteRT and prediction.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import convert
from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
from official.autodeeplab.data import images
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data import spec_file
from official.autodeeplab.data.converters import folder
from official.autodeeplab.errors import UserInputError
from tests import data_trees
from tests.conftest import assert_bad_input
from tests.conftest import run_tool

RNG = np.random.default_rng(7)
PICTURE = data_trees.folder_example(RNG, (24, 30))[0]  # 8-bit RGB


@pytest.mark.parametrize('kind', [k for k in data_trees.IMAGE_KINDS if k != 'rgb'])
def test_each_kind_reads_back_as_saved(tmp_path, kind):
  array, extension = data_trees.folder_image(PICTURE, kind, np.random.default_rng(0))
  path = str(tmp_path / f'image{extension}')
  data_trees.save_image(path, array)
  info = images.probe(path)
  read = images.read(path, info)
  expected = array[..., :3] if kind == 'rgba' else array  # a PNG's alpha is dropped
  expected = expected[..., np.newaxis] if expected.ndim == 2 else expected
  np.testing.assert_array_equal(read, expected)
  assert read.dtype == expected.dtype and info.stored_channels == expected.shape[-1]
  assert (info.height, info.width) == PICTURE.shape[:2]


def _folder(root, kind, count=8, **kwargs):
  data_trees.folder(str(root), 'flat', count=count, size=(24, 30), image_kind=kind, **kwargs)
  return str(root)


def test_unsupported_multi_page_and_oversized_images_are_named(tmp_path, monkeypatch):
  root = _folder(tmp_path / 'bmp', 'grey8', count=4)
  os.remove(os.path.join(root, 'images', 'img_000.png'))
  from PIL import Image
  Image.fromarray(PICTURE).save(os.path.join(root, 'images', 'img_000.bmp'))
  with pytest.raises(UserInputError, match=r'img_000\.bmp: not an image format the converter '
                                           r'reads; expected PNG, JPEG or single-page TIFF'):
    folder.load(root)
  import tifffile
  pages = str(tmp_path / 'pages.tif')
  tifffile.imwrite(pages, np.zeros([3, 8, 8], np.uint8), photometric='minisblack')
  with pytest.raises(UserInputError, match=r'pages\.tif: a TIFF of 3 pages; one image per file'):
    images.probe(pages)
  # A decompression bomb is refused from its header: nothing is decoded.
  monkeypatch.setattr(images, 'MAX_PIXELS', 100)
  monkeypatch.setattr(images, 'read', lambda *a, **k: pytest.fail('decoded'))
  tif = str(tmp_path / 'big.tif')
  tifffile.imwrite(tif, np.zeros([20, 20], np.uint16))
  with pytest.raises(UserInputError, match=r'big\.tif: 20x20 pixels, more than the 100 .*nothing '
                                           'was decoded'):
    images.probe(tif)


def test_mixed_depths_and_channels_are_refused_naming_two_files(tmp_path):
  root = _folder(tmp_path / 'mixed', 'grey8', count=4)
  array, _ = data_trees.folder_image(PICTURE, 'grey16', RNG)
  os.remove(os.path.join(root, 'images', 'img_002.png'))
  data_trees.save_image(os.path.join(root, 'images', 'img_002.png'), array)
  with pytest.raises(UserInputError, match=r'img_002\.png: 16 where \S+img_000\.png has 8 \(bit '
                                           r'depths differ\)'):
    folder.load(root)
  root = _folder(tmp_path / 'channels', 'grey16', count=4)
  os.remove(os.path.join(root, 'images', 'img_001.png'))
  data_trees.save_image(os.path.join(root, 'images', 'img_001.tif'),
                        data_trees.folder_image(PICTURE, 'bands4', RNG)[0])
  with pytest.raises(UserInputError, match=r'img_001\.tif: 4 where \S+img_000\.png has 1 '
                                           r'\(channels differ\)'):
    folder.load(root)
  os.remove(os.path.join(root, 'images', 'img_001.tif'))
  data_trees.save_image(os.path.join(root, 'images', 'img_001.png'),
                        PICTURE.astype(np.uint16) * 257)
  # Said in dataset.json, the grey images become RGB alike (8-bit grey among RGB always does).
  with open(os.path.join(root, 'dataset.json')) as f:
    document = json.load(f)
  document['image'] = {'channels': 3}
  with open(os.path.join(root, 'dataset.json'), 'w') as f:
    json.dump(document, f)
  assert folder.load(root).spec.image.channels == 3


@pytest.mark.parametrize('image,message', [
    ({'channels': 0}, '"channels" must be an integer 1-64'),
    ({'bit_depth': 12}, '"bit_depth" must be 8 or 16'),
    ({'value_range': [10, 5]}, '"value_range" must be "auto" or [lo, hi]'),
    ({'bit_depth': 8, 'value_range': [0, 300]}, '0 <= lo < hi <= 255'),
    ({'colours': 3}, '"image" must be an object with "channels"'),
])
def test_the_image_field_is_validated(image, message):
  with pytest.raises(UserInputError, match='x.json: "image"'):
    try:
      spec_file.parse({'name': 'n', 'class_names': ['a', 'b'], 'image': image}, 'x.json')
    except UserInputError as e:
      assert message in str(e), str(e)
      raise


def test_records_keep_16_bits_with_the_train_splits_range(tmp_path):
  root = _folder(tmp_path / 'grey16', 'grey16')
  for split in ('train', 'val'):
    convert.convert('folder', str(tmp_path / 'records'), split, 1, data_dir=root,
                    progress=False, val_fraction=0.3)
  spec = input_pipeline.dataset_spec(str(tmp_path / 'records'), 'val')
  loaded = folder.load(root, 0.3)
  train = [images.read(r.image_path) for r in loaded.splits['train']]
  low, high = np.percentile(np.concatenate([t.ravel() for t in train]), folder.AUTO_PERCENTILES)
  assert spec.image == datasets.ImageSpec(1, 16, (float(low), float(high)))
  with open(tmp_path / 'records' / 'dataset.json') as f:
    assert json.load(f)['image']['value_range'] == [low, high]  # numbers, not "auto"
  files = input_pipeline.split_files(str(tmp_path / 'records'), 'val')
  stored = {e['filename'].numpy().decode(): e['image'].numpy() for e in (
      example.parse(s, spec.image) for s in tf.data.TFRecordDataset(files))}
  for record in loaded.splits['val']:
    np.testing.assert_array_equal(stored[record.name], images.read(record.image_path))
  # Records and workdirs written before images had a spec read as 8-bit RGB.
  old = {key: value for key, value in spec_file.document(spec).items() if key != 'image'}
  assert spec_file.from_document(old, 'old', 'x').image == datasets.RGB8


def test_a_constant_split_is_warned(tmp_path):
  root = _folder(tmp_path / 'flat', 'grey16', count=4)
  for name in os.listdir(os.path.join(root, 'images')):
    data_trees.save_image(os.path.join(root, 'images', name), np.full([24, 30], 65535, np.uint16))
  summary = convert.convert('folder', str(tmp_path / 'records'), 'train', 1, data_dir=root,
                            progress=False, val_fraction=0.3)
  assert 'are (nearly) constant' in summary['warning'] and 'PNG 16-bit 1 channel' in (
      summary['warning'])


def test_the_pipeline_says_when_nothing_was_learned(tmp_path):
  from tools import pipeline
  (tmp_path / 'val-summary.json').write_text(json.dumps({'class_pixels': [900, 100, 0]}))
  report = {'miou': 0.45, 'per_class_iou': {'background': 0.9, 'nucleus': 0.0, 'other': None}}
  said = pipeline.learned_nothing(report, str(tmp_path), chance=0.45)
  assert said.startswith('val mIoU 45.0 is within 5 points of predicting the majority class')
  report = {'miou': 0.8, 'per_class_iou': {'background': 0.9, 'nucleus': 0.0, 'other': None}}
  assert pipeline.learned_nothing(report, str(tmp_path), 0.45).startswith(
      'class(es) nucleus present in val have IoU 0')
  report['per_class_iou']['nucleus'] = 0.7
  assert pipeline.learned_nothing(report, str(tmp_path), 0.45) is None


def test_the_normalisation_is_one_in_every_stage(tmp_path):
  """16-bit grey: the training input, the SavedModel (both signatures) and LiteRT all map the
  same raw values through the dataset's range to the same logits."""
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
  from official.autodeeplab.serving import export
  from official.autodeeplab.serving import tflite
  from tests.conftest import randomize_batch_norm
  spec = datasets.ImageSpec(1, 16, (1000.0, 50000.0))
  raw = np.random.default_rng(3).integers(0, 65536, [33, 33, 1]).astype(np.uint16)
  tf.keras.utils.set_random_seed(2)
  model = segmenter.build_segmenter(Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(0, 1)), 3,
                                    filter_multiplier=2, input_channels=1)
  randomize_batch_norm(model)
  normalised = input_pipeline.normalize(raw, spec)
  np.testing.assert_allclose(normalised, (raw.astype(np.float32) - 1000) / 24500 - 1, atol=1e-6)
  expected = model(normalised[tf.newaxis], training=False).numpy()
  loaded = tf.saved_model.load(export.export(model, str(tmp_path / 'serving'), 'tiny',
                                             image=spec))
  out = loaded.signatures['predict_tensor'](images=tf.constant(raw[None], tf.float32))
  np.testing.assert_allclose(out['logits'], expected, atol=1e-4)
  served = loaded.signatures['serving_default'](
      image_bytes=tf.constant([tf.io.encode_png(raw).numpy()]))
  np.testing.assert_array_equal(served['semantic'], out['semantic'])
  with open(tmp_path / 'serving' / 'tiny' / '1' / 'assets.extra' / 'model.json') as f:
    described = json.load(f)
  assert described['image'] == spec.to_dict() and 'raw 16-bit values' in (
      described['input']['predict_tensor'])
  lite = tflite.LiteRTModel(tflite.write_model(
      tflite.convert(model, 33, 33, image=spec), str(tmp_path / 'm.tflite')),
      image=spec)
  semantic, logits = lite.predict(raw, with_logits=True)
  np.testing.assert_allclose(logits, expected[0], atol=1e-3)
  assert (semantic == out['semantic'].numpy()[0]).mean() > 0.999


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['grey16', 'bands4'])
def test_each_kind_through_the_binaries(tmp_path, kind):
  """convert -> train -> evaluate -> export (SavedModel, LiteRT) -> predict, from a clone's
  root with relative paths; predict's masks (a TIFF read by the tool itself) agree. Two kinds
  cover the paths: a 16-bit PNG (decoded in the SavedModel's graph) and a 16-bit 4-band TIFF (raw
  records, a 4-channel model, `predict_tensor`); grey, RGBA and 8-bit kinds are read, stored
  and normalised in the fast tests above."""
  from tests.conftest import user_dir
  root = user_dir(tmp_path)
  _folder(tmp_path / 'mine', kind, count=12)
  for split in ('train', 'val'):
    result = run_tool('convert_dataset', '--dataset=folder', '--data_dir=mine',
                      f'--split={split}', '--output_dir=records', '--val_fraction=0.3', cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
  steps = ['--num_steps=3', '--crop_size=33', '--batch_size=2', '--filter_multiplier=2',
           '--gin_file=experiments/retrain/synthetic.gin']
  for command in (
      ['train', '--workdir=run', '--tfrecord_dir=records', *steps],
      ['evaluate', '--workdir=run', '--tfrecord_dir=records', '--save_predictions=masks'],
      ['export', '--workdir=run', '--export_dir=serving'],
      ['export', '--workdir=run', '--export_dir=lite', '--format=tflite', '--input_size=33,33'],
  ):
    result = run_tool(*command, cwd=root)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
  picture = sorted(os.listdir(tmp_path / 'mine' / 'images'))[0]
  masks = {}
  for source in ('--saved_model=serving/autodeeplab', '--workdir=run',
                 '--tflite=lite/autodeeplab/autodeeplab_33x33.tflite'):
    out = f'out{len(masks)}'
    result = run_tool('predict', source, f'--input=mine/images/{picture}', f'--output_dir={out}',
                      cwd=root)
    assert result.returncode == 0, (source, result.stderr[-3000:])
    from PIL import Image
    masks[source] = np.asarray(Image.open(tmp_path / out / (os.path.splitext(picture)[0] +
                                                            '.png')))
  first, second, lite = masks.values()
  np.testing.assert_array_equal(first, second)
  assert first.shape == (24, 30) and (lite == first).mean() > 0.9


def test_a_file_of_another_format_through_the_converter_binary(tmp_path):
  root = _folder(tmp_path / 'mine', 'grey8', count=4)
  os.rename(os.path.join(root, 'images', 'img_001.png'), os.path.join(root, 'images',
                                                                      'img_001.gif'))
  result = run_tool('convert_dataset', '--dataset=folder', f'--data_dir={root}', '--split=train',
                    f'--output_dir={tmp_path / "records"}')
  assert_bad_input(result, 'img_001.gif: not an image format the converter reads')
  assert not os.path.exists(tmp_path / 'records')
