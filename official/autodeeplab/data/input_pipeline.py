"""tf.data pipelines: normalisation, the paper's augmentation, and the search's trainA/trainB.

`from_tfrecords` reads the shards `tools/convert_dataset` writes: interleaved reads, shuffling,
parsing, augmentation (random scale 0.5-2.0, random crop with padding: image with the mean,
label with 255; horizontal flip), normalisation to [-1, 1], batching, prefetching. Randomness
comes from seeded stateless ops, so a run with `deterministic=True` is reproducible, and the
iterator can be saved in a tf.train.Checkpoint to resume mid-epoch. `from_arrays` does the same
for in-memory arrays.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from official.autodeeplab.data import example
from official.autodeeplab.data import writer
from official.autodeeplab.data import datasets
from official.autodeeplab.data import spec_file
from official.autodeeplab.data.datasets import IGNORE_LABEL
from official.autodeeplab.errors import UserInputError


def normalize(image: tf.Tensor, spec: datasets.ImageSpec = datasets.RGB8) -> tf.Tensor:
  """Raw values (uint8 or uint16) -> float32 in [-1, 1] over the spec's value range
  (`datasets.normalize`)."""
  return datasets.normalize(tf.cast(image, tf.float32), spec)


def augment(image, label, crop_size: int, min_scale: float = 0.5, max_scale: float = 2.0,
            seed=None, max_side: int | None = None,
            spec: datasets.ImageSpec = datasets.RGB8):
  """Random scale (0.5-2.0), random crop to crop_size with padding (image: mean, label: 255),
  random horizontal flip: the paper's training augmentation. Stateless given `seed` [2].

  `max_side`: first shrink the image so its longer side is at most this (ADE20K's 513, as the
  paper and Google's DeepLab do for its images of varied sizes); the random scale applies after.
  """
  seeds = tf.random.experimental.stateless_split(seed, 4)
  size = tf.cast(tf.shape(image)[:2], tf.float32)
  if max_side:
    size = size * tf.minimum(1.0, float(max_side) / tf.reduce_max(size))
  scale = tf.random.stateless_uniform([], seeds[0], min_scale, max_scale)
  new_size = tf.cast(tf.round(size * scale), tf.int32)
  image = tf.image.resize(tf.cast(image, tf.float32), new_size, method='bilinear')
  label = tf.image.resize(label[..., tf.newaxis], new_size, method='nearest')
  # Pad to at least crop_size: the image with its mean (0 after normalisation), labels with 255.
  pad_h = tf.maximum(crop_size - new_size[0], 0)
  pad_w = tf.maximum(crop_size - new_size[1], 0)
  image = normalize(image, spec)  # floats in [-1, 1]; padding with 0 is the mean
  image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
  label = tf.pad(tf.cast(label, tf.int32) - IGNORE_LABEL, [[0, pad_h], [0, pad_w], [0, 0]])
  label = label + IGNORE_LABEL
  channels = spec.channels
  stacked = tf.concat([image, tf.cast(label, tf.float32)], -1)
  stacked = tf.image.stateless_random_crop(stacked, [crop_size, crop_size, channels + 1],
                                           seeds[1])
  stacked = tf.image.stateless_random_flip_left_right(stacked, seeds[2])
  return stacked[..., :channels], tf.cast(stacked[..., channels], tf.int32)


def from_arrays(images: np.ndarray, labels: np.ndarray, batch_size: int, crop_size: int,
                seed: int = 0, training: bool = True, min_scale: float = 0.5,
                max_scale: float = 2.0) -> tf.data.Dataset:
  """Batches from in-memory uint8 images [N, H, W, 3] and labels [N, H, W]; repeats if training.

  Deterministic: the same seed gives the same batches, and the iterator can be saved in a
  tf.train.Checkpoint to resume mid-epoch.
  """
  ds = tf.data.Dataset.from_tensor_slices((images, labels))
  if not training:
    return ds.map(lambda i, l: (normalize(i), tf.cast(l, tf.int32))).batch(batch_size)
  ds = ds.repeat().shuffle(len(images), seed=seed)
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
  ds = ds.map(lambda pair, s: augment(pair[0], pair[1], crop_size, min_scale, max_scale, seed=s),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


HALVES = {'trainA': 0, 'trainB': 1}


def example_names(files: list[str]) -> list[str]:
  """`image/filename` of every example of the shards, in file order (one pass, no decoding)."""
  names = tf.data.TFRecordDataset(files).map(
      lambda s: tf.io.parse_single_example(s, {'image/filename': tf.io.FixedLenFeature(
          [], tf.string, default_value='')})['image/filename'],
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  iterator = iter(names)
  found = []
  while True:
    try:
      found.append(next_checked(iterator, files).numpy().decode())
    except StopIteration:
      return found


def split_in_halves(names: list[str]) -> dict[str, int]:
  """The search's trainA / trainB: exactly half of the examples each (trainB gets the odd one).

  Examples are ranked by the SHA-1 of their filename and the first half of the ranking is trainA:
  a fixed, random-looking split that depends neither on shard order nor on the number of shards,
  so every run (and a resumed one) sees the same halves. Returns {filename: HALVES[half]}.
  """
  if len(set(names)) != len(names):
    raise UserInputError('the split has examples with the same image/filename; trainA/trainB '
                         'are chosen by filename: convert it again')
  ranked = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
  half = len(ranked) // 2
  return {name: HALVES['trainA'] if i < half else HALVES['trainB']
          for i, name in enumerate(ranked)}


def search_halves(batch_size: int, crop_size: int, min_scale: float, max_scale: float,
                  files: list[str] | None = None, examples: tuple | None = None,
                  seed: int = 0, image: datasets.ImageSpec = datasets.RGB8
                  ) -> tuple[tf.data.Dataset, tf.data.Dataset, tuple[int, int]]:
  """The search's trainA and trainB batches and their sizes in images, from TFRecord shards
  (`files`, whose images `image` describes) or in-memory (images, labels, names) `examples`,
  split by `split_in_halves`."""
  scale = {'min_scale': min_scale, 'max_scale': max_scale}
  if files is not None:
    halves = split_in_halves(example_names(files))
    make = lambda half, i: from_tfrecords(files, batch_size, crop_size, half=half,
                                          seed=seed + i, halves=halves, image=image, **scale)
  else:
    images, labels, names = examples
    halves = split_in_halves(names)
    rows = {half: np.array([i for i, n in enumerate(names) if halves[n] == index])
            for half, index in HALVES.items()}
    make = lambda half, i: from_arrays(images[rows[half]], labels[rows[half]], batch_size,
                                       crop_size, seed=seed + i, **scale)
  counts = tuple(list(halves.values()).count(index) for index in HALVES.values())
  if min(counts) < 1:
    raise UserInputError(f'the search needs at least 2 images (one for trainA, one for '
                         f'trainB), got {len(halves)}')
  return make('trainA', 0), make('trainB', 1), counts


def split_files(directory: str, split: str) -> list[str]:
  """Every shard of `split` in `directory`; an error if there are none or some are missing.

  Shards are renamed into place only when complete, so a split is complete when all N shards of
  `{split}-*-of-N` are there: a partial conversion is refused, naming the missing shards, instead
  of being trained or scored silently.
  """
  if not os.path.isdir(directory):
    raise UserInputError(f'{directory}: no such directory of TFRecord shards')
  files = writer.shard_files(directory, split)
  if not files:
    raise UserInputError(f'{directory}: no shards of split {split!r} '
                         f'({split}-NNNNN-of-NNNNN.tfrecord); run tools.convert_dataset first')
  counts = sorted({int(os.path.basename(p)[-len('00000.tfrecord'):-len('.tfrecord')])
                   for p in files})
  if len(counts) > 1:
    raise UserInputError(f'{directory}: split {split!r} mixes shard counts {counts}; '
                         'convert it again into an empty directory')
  expected = [writer.shard_path(directory, split, i, counts[0]) for i in range(counts[0])]
  missing = [os.path.basename(p) for p in expected if p not in files]
  if missing:
    shown = ', '.join(missing[:3]) + (f' and {len(missing) - 3} more' if len(missing) > 3 else '')
    raise UserInputError(f'{directory}: split {split!r} is incomplete, missing {shown}; rerun '
                         'tools.convert_dataset with the same flags to finish it')
  return files


def split_summary(directory: str, split: str) -> dict:
  """A converted split's `{split}-summary.json` (dataset, num_classes, examples, pixel counts)."""
  path = os.path.join(directory, f'{split}-summary.json')
  try:
    with open(path) as f:
      summary = json.load(f)
    int(summary['num_classes'])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserInputError(f'{path}: missing or unreadable split summary ({e})') from None
  return summary


def num_classes(directory: str, split: str) -> int:
  """Classes of a converted split, from its `{split}-summary.json`."""
  return int(split_summary(directory, split)['num_classes'])


def dataset_spec(directory: str, split: str) -> datasets.DatasetSpec:
  """The spec (class names, palette) of the dataset a converted split holds: its own copy
  (a folder dataset's), else the built-in dataset it names."""
  summary = split_summary(directory, split)
  source = os.path.join(directory, f'{split}-summary.json')
  spec = spec_file.spec_of(summary, source)
  if spec is None:
    raise UserInputError(f'{source}: names dataset {summary.get("dataset")!r}, which is not '
                         'built in, and carries no class names')
  return spec


def from_tfrecords(files: list[str], batch_size: int, crop_size: int = 513,
                   training: bool = True, half: str | None = None, seed: int = 0,
                   deterministic: bool = True, min_scale: float = 0.5, max_scale: float = 2.0,
                   shuffle_buffer: int = 256, eval_size: tuple[int, int] | None = None,
                   cycle_length: int = 8,
                   halves: dict[str, int] | None = None,
                   max_side: int | None = None,
                   image: datasets.ImageSpec = datasets.RGB8) -> tf.data.Dataset:
  """Batches of (images float32 [B, H, W, C] in [-1, 1], labels int32 [B, H, W], 255 ignored).


  Args:
    files: shard paths (`split_files`).
    batch_size: examples per batch.
    crop_size: training crop side.
    training: augment, shuffle and repeat; otherwise one pass in file order, no augmentation,
      images padded (with the mean; labels with 255) to the batch's largest or `eval_size`.
    half: 'trainA' or 'trainB': the search's fixed halves of the set (`split_in_halves`: exactly
      half each, by filename, independent of shard order and shuffling); None for all examples.
    halves: `split_in_halves(example_names(files))`, when already computed (it reads every
      record once).
    max_side: training images are first shrunk so their longer side is at most this (`augment`).
    seed: shuffling and augmentation seed.
    deterministic: reproducible order of parallel reads and maps.
    min_scale: random scale range.
    max_scale: see min_scale.
    shuffle_buffer: examples in the shuffle buffer.
    eval_size: fixed (height, width) to pad evaluation images to.
    cycle_length: shards read in parallel.
    image: what the records' images are (the split's `dataset_spec(...).image`; 8-bit RGB
      for records written before images had a spec).
  """
  if half is not None and half not in HALVES:
    raise UserInputError(f'half={half!r}: expected trainA or trainB')
  options = tf.data.Options()
  options.deterministic = deterministic
  ds = tf.data.Dataset.from_tensor_slices(files)
  if training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  if training:
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  else:  # one pass in file order
    ds = ds.flat_map(tf.data.TFRecordDataset)
  ds = ds.map(example.parse_features, num_parallel_calls=tf.data.AUTOTUNE)
  if half is not None:
    halves = halves if halves is not None else split_in_halves(example_names(files))
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        list(halves), list(halves.values()), tf.string, tf.int64), default_value=-1)
    ds = ds.filter(lambda f: tf.equal(table.lookup(f['image/filename']), HALVES[half]))
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed).repeat()
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

    def train_map(features, pair_seed):
      decoded = example.decode(features, image)
      return augment(decoded['image'], decoded['label'], crop_size, min_scale, max_scale,
                     seed=pair_seed, max_side=max_side, spec=image)

    ds = ds.map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    def eval_map(features):
      decoded = example.decode(features, image)
      return normalize(decoded['image'], image), tf.cast(decoded['label'], tf.int32)

    ds = ds.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE)
    shapes = ([None, None, image.channels], [None, None]) if eval_size is None else (
        [*eval_size, image.channels], list(eval_size))
    ds = ds.padded_batch(batch_size, padded_shapes=shapes,
                         padding_values=(0.0, IGNORE_LABEL))
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def for_evaluation(files: list[str], batch_size: int = 1,
                   image: datasets.ImageSpec = datasets.RGB8) -> tf.data.Dataset:
  """One pass in file order, for evaluation and prediction: batches of dicts with
  `image` (float32 [B, H, W, C] in [-1, 1], padded with 0 = the mean to the batch's largest),
  `label` (int32 [B, H, W], padding 255 = ignored), `filename`, `height` and `width` (the
  unpadded size, to crop predictions back); `image` says what the records' images are."""
  def parse(serialized):
    decoded = example.decode(example.parse_features(serialized), image)
    shape = tf.shape(decoded['label'])
    return {'image': normalize(decoded['image'], image),
            'label': tf.cast(decoded['label'], tf.int32),
            'filename': decoded['filename'], 'height': shape[0], 'width': shape[1]}

  ds = tf.data.Dataset.from_tensor_slices(files).flat_map(tf.data.TFRecordDataset)
  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.padded_batch(batch_size, padding_values={
      'image': 0.0, 'label': IGNORE_LABEL, 'filename': '', 'height': 0, 'width': 0})
  return ds.prefetch(tf.data.AUTOTUNE)


def find_corrupt_shard(files: list[str]) -> str | None:
  """The first shard whose records fail their checksums or are truncated, if any."""
  for path in files:
    try:
      for _ in tf.data.TFRecordDataset(path):
        pass
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
      return path
  return None


class CheckedIterator:
  """An iterator over a dataset of shards that names the corrupt shard instead of failing with
  TensorFlow's "corrupted record at N". `.iterator` is the tf.data iterator, for checkpoints."""

  def __init__(self, dataset: tf.data.Dataset, files: list[str]):
    self.iterator = iter(dataset)
    self.files = files

  def __iter__(self):
    return self

  def __next__(self):
    return next_checked(self.iterator, self.files)


def next_checked(iterator, files: list[str] | None):
  """next(iterator); a read error that comes from a corrupt shard of `files` names the shard."""
  try:
    return next(iterator)
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
    bad = find_corrupt_shard(files) if files else None
    if bad is None:
      raise
    raise UserInputError(f'{bad}: corrupt TFRecord shard; convert it again') from None
