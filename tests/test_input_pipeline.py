"""The tf.data pipeline: augmentation, determinism, trainA/trainB, eval padding, resume."""
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import convert
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.errors import UserInputError

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('input_pipeline')


@pytest.fixture(scope='session')
def files(tmp_path_factory):
  directory = tmp_path_factory.mktemp('shards')
  convert.convert('synthetic', str(directory), 'train', 3, num_examples=12, image_size=40,
                  num_classes=4, progress=False)
  return input_pipeline.split_files(str(directory), 'train')


def take(dataset, n):
  return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_training_batches(files):
  for images, labels in take(input_pipeline.from_tfrecords(files, 3, crop_size=33), 4):
    assert images.shape == (3, 33, 33, 3) and images.dtype == np.float32
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 255}


def test_crop_larger_than_image_pads_image_with_mean_and_label_with_255(files):
  images, labels = take(input_pipeline.from_tfrecords(files, 2, crop_size=97, min_scale=1.0,
                                                      max_scale=1.0), 1)[0]
  assert (labels == 255).sum() >= 2 * (97 * 97 - 40 * 40)
  padded = labels == 255
  np.testing.assert_array_equal(images[padded], 0.0)


def test_deterministic_runs_repeat(files):
  a = take(input_pipeline.from_tfrecords(files, 2, 33, seed=7), 3)
  b = take(input_pipeline.from_tfrecords(files, 2, 33, seed=7), 3)
  c = take(input_pipeline.from_tfrecords(files, 2, 33, seed=8), 3)
  for (x, y), (u, v) in zip(a, b):
    np.testing.assert_array_equal(x, u)
    np.testing.assert_array_equal(y, v)
  assert any(not np.array_equal(x, u) for (x, _), (u, _) in zip(a, c))


def test_search_halves_are_exact_disjoint_and_complete(files):
  names = input_pipeline.example_names(files)
  assert len(names) == 12
  halves = input_pipeline.split_in_halves(names)
  a = {n for n, h in halves.items() if h == 0}
  b = {n for n, h in halves.items() if h == 1}
  assert len(a) == len(b) == 6 and a | b == set(names)
  # independent of the order the shards are listed in
  assert input_pipeline.split_in_halves(names[::-1]) == halves
  assert list(input_pipeline.split_in_halves(names[:7]).values()).count(1) == 4  # odd: B + 1
  # trainA's training batches hold trainA examples only (at scale 1 and crop = image size an
  # example comes back as itself or its mirror image)
  labels_of = {0: set(), 1: set()}
  for features in tf.data.TFRecordDataset(files).map(input_pipeline.example.parse):
    label = features['label'].numpy().astype(np.int32)
    half = halves[features['filename'].numpy().decode()]
    labels_of[half] |= {label.tobytes(), label[:, ::-1].copy().tobytes()}
  batches = input_pipeline.from_tfrecords(files, 1, 40, half='trainA', min_scale=1.0,
                                          max_scale=1.0, halves=halves)
  for _, labels in batches.take(8):
    assert labels.numpy()[0].astype(np.int32).tobytes() in labels_of[0]


def test_eval_mode_pads_to_fixed_size(files):
  batches = list(input_pipeline.from_tfrecords(files, 5, training=False, eval_size=(48, 44)))
  assert [b[0].shape[0] for b in batches] == [5, 5, 2]  # one pass, every example once
  images, labels = batches[0]
  assert images.shape == (5, 48, 44, 3) and labels.shape == (5, 48, 44)
  assert (labels.numpy()[:, 40:, :] == 255).all() and (images.numpy()[:, :, 40:] == 0).all()


def test_iterator_position_is_saved_with_the_checkpoint(files, tmp_path):
  dataset = input_pipeline.from_tfrecords(files, 2, 33, seed=3)
  iterator = iter(dataset)
  next(iterator)
  checkpoint = tf.train.Checkpoint(iterator=iterator)
  path = checkpoint.write(str(tmp_path / 'it'))
  expected = [next(iterator)[1].numpy() for _ in range(3)]
  fresh = iter(input_pipeline.from_tfrecords(files, 2, 33, seed=3))
  tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
  for e in expected:
    np.testing.assert_array_equal(next(fresh)[1].numpy(), e)


def test_bad_half_name(files):
  with pytest.raises(ValueError, match="half='trainC'"):
    input_pipeline.from_tfrecords(files, 2, half='trainC')


def test_incomplete_split_is_refused_naming_the_missing_shards(tmp_path):
  convert.convert('synthetic', str(tmp_path), 'train', 4, num_examples=8, image_size=16,
                  num_classes=3, progress=False)
  (tmp_path / 'train-00001-of-00004.tfrecord').unlink()
  (tmp_path / 'train-00003-of-00004.tfrecord').unlink()
  with pytest.raises(UserInputError, match=r"split 'train' is incomplete, missing "
                     r'train-00001-of-00004.tfrecord, train-00003-of-00004.tfrecord'):
    input_pipeline.split_files(str(tmp_path), 'train')
  with pytest.raises(UserInputError, match="no shards of split 'val'"):
    input_pipeline.split_files(str(tmp_path), 'val')


def test_evaluation_batches_keep_sizes_and_names(files):
  batch = next(iter(input_pipeline.for_evaluation(files, 2)))
  assert batch['image'].shape == (2, 40, 40, 3) and batch['label'].dtype == tf.int32
  assert list(batch['height'].numpy()) == [40, 40]
  assert all(name.startswith(b'synthetic_') for name in batch['filename'].numpy())
  spec = input_pipeline.dataset_spec(os.path.dirname(files[0]), 'train')
  assert spec.name == 'synthetic' and spec.num_classes == 4


def test_max_side_shrinks_before_the_random_scale():
  image = tf.zeros([40, 80, 3], tf.uint8)
  label = tf.ones([40, 80], tf.uint8)
  images, labels = input_pipeline.augment(image, label, crop_size=48, min_scale=1.0,
                                          max_scale=1.0, seed=[1, 2], max_side=40)
  # 40x80 -> 20x40, padded to the 48 crop: labels 1 inside, 255 in the padding
  assert (labels.numpy() == 1).sum() == 20 * 40
