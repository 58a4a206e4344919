"""Converters on fake trees in the real formats: labels checked pixel by pixel after a round trip
through the shards and the input pipeline; every bad input gives a one-line error."""
import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.autodeeplab.data import convert
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import UserInputError
from tests import data_trees
from tests.data_trees import read_back


def official_cityscapes_train_ids(raw):
  from cityscapesscripts.helpers.labels import id2label
  lut = {i: (l.trainId if 0 <= l.trainId < 255 else 255) for i, l in id2label.items()}
  return np.vectorize(lambda v: lut[int(v)])(raw).astype(np.uint8)


def test_cityscapes_round_trip(tmp_path):
  raw = data_trees.cityscapes(tmp_path / 'cs')
  summary = convert.convert('cityscapes', str(tmp_path / 'out'), 'train', 3,
                            str(tmp_path / 'cs'), progress=False)
  assert summary['num_examples'] == 4 and summary['num_classes'] == 19
  back = read_back(tmp_path / 'out', 'train')
  assert set(back) == set(raw)
  for stem, label in raw.items():
    np.testing.assert_array_equal(back[stem][1], official_cityscapes_train_ids(label))
    image = np.asarray(Image.open(glob.glob(str(tmp_path / 'cs' / 'leftImg8bit' / 'train' / '*'
                                                / f'{stem}_leftImg8bit.png'))[0]))
    np.testing.assert_array_equal(back[stem][0], image)
  total = sum(summary['class_pixels']) + summary['ignored_pixels']
  assert total == 4 * 24 * 32
  assert json.loads((tmp_path / 'out' / 'train-summary.json').read_text()) == summary


def test_cityscapes_half_resolution(tmp_path):
  data_trees.cityscapes(tmp_path / 'cs', cities=('ulm',), per_city=1)
  convert.convert('cityscapes', str(tmp_path / 'out'), 'train', 1, str(tmp_path / 'cs'),
                  half_resolution=True, progress=False)
  (image, label), = read_back(tmp_path / 'out', 'train').values()
  assert image.shape == (12, 16, 3) and label.shape == (12, 16)


def test_voc_train_aug_and_palette_indices(tmp_path):
  raw = data_trees.voc(tmp_path / 'VOC2012', tmp_path / 'sbd')
  summary = convert.convert('voc', str(tmp_path / 'out'), 'train_aug', 2,
                            str(tmp_path / 'VOC2012'), sbd_dir=str(tmp_path / 'sbd'),
                            progress=False)
  back = read_back(tmp_path / 'out', 'train_aug')
  # VOC train + SBD train + SBD val - VOC val
  assert sorted(back) == ['a0', 'a1', 'a2', 's0', 's1', 's2'] == sorted(
      set(['a0', 'a1', 'a2', 's0', 'a2', 'v1', 's1', 's2']) - {'v0', 'v1'})
  assert summary['num_examples'] == 6
  for name, (_, label) in back.items():
    np.testing.assert_array_equal(label, raw[name])  # palette indices, 255 kept, SBD from .mat
  val = convert.convert('voc', str(tmp_path / 'out'), 'val', 1, str(tmp_path / 'VOC2012'),
                        progress=False)
  assert val['num_examples'] == 2 and val['ignored_pixels'] == 2 * 28


def test_ade20k_shift(tmp_path):
  raw = data_trees.ade20k(tmp_path / 'ade', 'validation')
  convert.convert('ade20k', str(tmp_path / 'out'), 'val', 2, str(tmp_path / 'ade'),
                  progress=False)
  for name, (_, label) in read_back(tmp_path / 'out', 'val').items():
    expected = np.where(raw[name] == 0, 255, raw[name].astype(int) - 1).astype(np.uint8)
    np.testing.assert_array_equal(label, expected)


def test_synthetic_shards_feed_the_pipeline(tool, tmp_path):
  result = tool('convert_dataset', '--dataset=synthetic', f'--output_dir={tmp_path}',
                '--split=train', '--num_examples=6', '--image_size=40', '--num_shards=2',
                '--num_workers=2')
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout)['num_examples'] == 6
  files = input_pipeline.split_files(str(tmp_path), 'train')
  images, labels = next(iter(input_pipeline.from_tfrecords(files, 2, 33)))
  assert images.shape == (2, 33, 33, 3) and labels.shape == (2, 33, 33)


def test_interrupted_run_is_finished_by_a_rerun(tmp_path):
  args = ('synthetic', str(tmp_path), 'train', 3)
  first = convert.convert(*args, num_examples=7, image_size=16, progress=False)
  shards = sorted(glob.glob(str(tmp_path / 'train-*.tfrecord')))
  mtimes = {p: os.path.getmtime(p) for p in shards}
  os.remove(shards[1])                      # as if killed while writing shard 1
  open(shards[1] + '.tmp-1234', 'w').close()  # a half-written temporary
  second = convert.convert(*args, num_examples=7, image_size=16, progress=False)
  assert second == first
  assert os.path.getmtime(shards[0]) == mtimes[shards[0]]  # finished shards are kept
  assert os.path.exists(shards[1])


@pytest.fixture
def city(tmp_path):
  data_trees.cityscapes(tmp_path / 'cs', cities=('aachen',), per_city=2)
  return tmp_path / 'cs'


def _label_path(city, index=0):
  return sorted(glob.glob(str(city / 'gtFine' / 'train' / '*' / '*.png')))[index]


def _image_path(city, index=0):
  return sorted(glob.glob(str(city / 'leftImg8bit' / 'train' / '*' / '*.png')))[index]


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(60)


BAD = {
    'missing_directory': (lambda city: city / 'nope', 'train', 'missing directory'),
    'missing_split': (lambda city: city, 'extra', "split 'extra'"),
    'image_without_label': (lambda city: os.remove(_label_path(city)) or city, 'train',
                            'image has no label file'),
    'label_without_image': (lambda city: os.remove(_image_path(city)) or city, 'train',
                            'label has no image file'),
    'size_mismatch': (lambda city: Image.fromarray(np.zeros([10, 10], np.uint8)).save(
        _label_path(city)) or city, 'train', 'label is 10x10 but image'),
    'unknown_label_value': (lambda city: Image.fromarray(np.full([24, 32], 40, np.uint8)).save(
        _label_path(city)) or city, 'train', 'label values [40] are not in the cityscapes'),
    'truncated_image': (lambda city: _truncate(_image_path(city)) or city, 'train',
                        'corrupt or truncated image'),
}


@pytest.mark.parametrize('name', sorted(BAD))
def test_bad_input_is_one_line_and_leaves_nothing_half_written(city, tmp_path, name):
  prepare, split, message = BAD[name]
  data_dir = prepare(city)
  out = tmp_path / 'out'
  with pytest.raises(UserInputError, match=re.escape(message)) as info:
    convert.convert('cityscapes', str(out), split, 1, str(data_dir), progress=False)
  assert '\n' not in str(info.value)
  left = [p.name for p in out.iterdir()] if out.exists() else []
  assert not [p for p in left if '.tmp' in p or p.endswith('.tfrecord')], left


def test_bad_input_through_the_tool_exits_2(tool, city, tmp_path):
  os.remove(_label_path(city))
  result = tool('convert_dataset', '--dataset=cityscapes', f'--data_dir={city}',
                f'--output_dir={tmp_path / "out"}', '--split=train', '--num_shards=1')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'image has no label file' in result.stderr and 'Traceback' not in result.stderr


def test_output_dir_with_another_dataset(city, tmp_path):
  convert.convert('synthetic', str(tmp_path / 'out'), 'train', 1, num_examples=2, image_size=16,
                  progress=False)
  with pytest.raises(UserInputError, match='already holds another dataset'):
    convert.convert('cityscapes', str(tmp_path / 'out'), 'train', 1, str(city), progress=False)


def test_corrupt_shard_is_named_at_read_time(tmp_path):
  convert.convert('synthetic', str(tmp_path), 'train', 2, num_examples=6, image_size=16,
                  progress=False)
  files = input_pipeline.split_files(str(tmp_path), 'train')
  with open(files[1], 'r+b') as f:  # flip bytes inside the first record's payload
    f.seek(40)
    f.write(b'\x00garbage\x00')
  dataset = input_pipeline.from_tfrecords(files, 2, training=False)
  with pytest.raises(UserInputError, match=f'{files[1]}: corrupt TFRecord shard'):
    list(input_pipeline.CheckedIterator(dataset, files))


def test_missing_shards(tmp_path):
  with pytest.raises(UserInputError, match="no shards of split 'val'"):
    input_pipeline.split_files(str(tmp_path), 'val')


def test_ade20k_from_tfds_scene_parse150(tmp_path):
  """The TFDS reader, fed by TFDS's own mocking with consistent fake examples (3-channel
  annotations as TFDS stores them)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(0)
  fake = [(rng.integers(0, 255, [h, w, 3], dtype=np.uint8),
           np.repeat(rng.integers(0, 151, [h, w, 1], dtype=np.uint8), 3, axis=-1))
          for h, w in ((14, 20), (17, 11), (9, 9))]

  def as_dataset(self, split, *args, **kwargs):
    assert split == 'validation'
    return tf.data.Dataset.from_generator(
        lambda: ({'image': i, 'annotation': a} for i, a in fake),
        output_signature={'image': tf.TensorSpec([None, None, 3], tf.uint8),
                          'annotation': tf.TensorSpec([None, None, 3], tf.uint8)})

  (tmp_path / 'tfds').mkdir()
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    summary = convert.convert('ade20k', str(tmp_path / 'out'), 'val', 2,
                              tfds_data_dir=str(tmp_path / 'tfds'), progress=False)
  assert summary['num_examples'] == 3 and summary['source'] == 'tfds'
  back = read_back(tmp_path / 'out', 'val')
  for number, (image, annotation) in enumerate(fake):
    got_image, got_label = back[f'scene_parse150_val_{number:06d}']
    np.testing.assert_array_equal(got_image, image)
    raw = annotation[..., 0].astype(int)
    np.testing.assert_array_equal(got_label, np.where(raw == 0, 255, raw - 1))


def test_tfds_without_prepared_data(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(UserInputError, match='no prepared TFDS scene_parse150'):
    convert.convert('ade20k', str(tmp_path / 'out'), 'val', 1, tfds_data_dir=str(tmp_path),
                    progress=False)
