"""A user's own dataset: a folder of images and masks with a `dataset.json` (data/spec_file.py).

  {data_dir}/dataset.json
  {data_dir}/images/{split}/*.png|jpg|tif  {data_dir}/labels/{split}/*.png  per-split subfolders
  {data_dir}/images/*  {data_dir}/labels/*  [{data_dir}/{split}.txt]       flat, with list files
                                                                           (one stem per line)
Flat without list files, a stem is in `val` when SHA-1(stem) / 2^160 < val_fraction, else in
`train`: a stem keeps its split when images are added. Images and masks pair by file stem.
Masks: "ids" (single-channel or palette PNG: the values, or palette indices, are class ids or
raw values mapped by `label_map`) or "colours" (RGB PNG, each colour a class of `palette`).
Images: PNG, JPEG or single-page TIFF, 8 or 16 bits, grey, RGB (a PNG's alpha dropped) or N
bands (`data/images.py`); what they are (channels, bit depth, the value range mapped to [-1, 1])
is the spec's "image" or, without it, inferred from the files, which must then agree.
Every pair of every split is validated before a split is written, so a bad mask is reported
whichever split it is in.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import numpy as np
from PIL import Image

from official.autodeeplab.data import datasets
from official.autodeeplab.data import images
from official.autodeeplab.data import spec_file
from official.autodeeplab.data.converters import base
from official.autodeeplab.errors import UserInputError

LOSSY_MASKS = ('.jpg', '.jpeg')
# "auto" value range: these percentiles of the train split's values (robust to a few hot
# pixels), from at most this many values of each image.
AUTO_PERCENTILES = (0.5, 99.5)
AUTO_SAMPLES_PER_IMAGE = 1 << 16
# A split whose images nearly all have a spread this small (a fraction of the value range) is
# warned about: a model cannot learn from (nearly) constant images.
CONSTANT_SPREAD = 0.005


@dataclasses.dataclass(frozen=True)
class Folder:
  """A parsed dataset folder: its spec, how its masks are read, its splits' records."""
  data_dir: str
  spec: datasets.DatasetSpec
  label_format: str
  colours: dict | None
  splits: dict[str, list[base.Record]]
  infos: dict[str, images.Info] = dataclasses.field(default_factory=dict)  # image path -> header


def in_val(stem: str, val_fraction: float) -> bool:
  """The flat layout's split rule: SHA-1 of the stem as a fraction of 2^160."""
  return int(hashlib.sha1(stem.encode()).hexdigest(), 16) / 2.0 ** 160 < val_fraction


def _by_stem(directory: str, extensions: tuple[str, ...], what: str,
             others: dict[str, str] | None = None) -> dict[str, str]:
  """{stem: path} of a directory's files with `extensions` (the rest into `others`); a stem
  twice is an error."""
  found: dict[str, str] = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    stem, extension = os.path.splitext(name)
    if not os.path.isfile(path) or name.startswith('.'):
      continue
    if what == 'mask' and extension.lower() in LOSSY_MASKS:
      raise UserInputError(f'{path}: a JPEG mask: lossy compression changes label values; save '
                           'masks as PNG')
    if extension.lower() not in extensions:
      if others is not None:
        others[stem] = path
      continue
    if stem in found:
      raise UserInputError(f'{path}: {what} stem {stem!r} appears twice (also '
                           f'{os.path.basename(found[stem])}); stems must be unique')
    found[stem] = path
  return found


def _pairs(image_dir: str, label_dir: str) -> list[base.Record]:
  others: dict[str, str] = {}
  found = _by_stem(image_dir, images.EXTENSIONS, 'image', others)
  labels = _by_stem(label_dir, ('.png',), 'mask')
  for stem in sorted(labels):
    if stem not in found and stem in others:  # the image is there, in a format not read
      raise UserInputError(f'{others[stem]}: not an image format the converter reads; expected '
                           f'{images.ACCEPTED} ({", ".join(images.EXTENSIONS)})')
  pairs = base.pair_by_key(found, labels, f'image has no mask {{key}}.png in {label_dir}',
                           f'mask has no image in {image_dir}')
  return [base.Record(stem, image, label) for stem, image, label in pairs]


def list_splits(data_dir: str, val_fraction: float = 0.1) -> dict[str, list[base.Record]]:
  """Every split of the folder and its records, by whichever layout the folder has."""
  if not 0 < val_fraction < 1:
    raise UserInputError(f'--val_fraction={val_fraction}: expected a fraction in (0, 1)')
  image_root = base.require_dir(os.path.join(data_dir, 'images'), 'the images of the dataset')
  label_root = base.require_dir(os.path.join(data_dir, 'labels'), 'the masks of the dataset')
  subfolders = sorted(n for n in os.listdir(image_root)
                      if os.path.isdir(os.path.join(image_root, n)))
  if subfolders:
    splits = {}
    for split in subfolders:
      label_dir = base.require_dir(os.path.join(label_root, split), f'masks of split {split!r}')
      splits[split] = _pairs(os.path.join(image_root, split), label_dir)
    return splits
  records = {r.name: r for r in _pairs(image_root, label_root)}
  lists = sorted(n[:-4] for n in os.listdir(data_dir) if n.endswith('.txt'))
  if not lists:
    return {'train': [r for s, r in records.items() if not in_val(s, val_fraction)],
            'val': [r for s, r in records.items() if in_val(s, val_fraction)]}
  splits = {}
  for split in lists:
    path = os.path.join(data_dir, f'{split}.txt')
    with open(path) as f:
      stems = [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]
    for number, stem in stems:
      if stem not in records:
        raise UserInputError(f'{path}: line {number}: stem {stem!r} has no image and mask in '
                             f'images/ and labels/')
    splits[split] = [records[stem] for _, stem in stems]
  return splits


def read_label(record: base.Record, spec: datasets.DatasetSpec, label_format: str,
               colours: dict | None) -> np.ndarray:
  """A mask -> uint8 class ids (255 ignored), with the folder's errors: the mask's mode, values
  that are no class, colours that are not in the palette (each with its pixel count)."""
  path = record.label_path
  try:
    with Image.open(path) as mask:
      mask.load()
      mode = mask.mode
      if label_format == 'ids':
        if mode in ('I;16', 'I;16B', 'I', 'F'):
          raise UserInputError(f'{path}: a {mode} (16/32-bit) mask; "label_format": "ids" needs '
                               '8-bit single-channel or palette PNGs')
        if mode not in ('L', 'P', '1'):
          raise UserInputError(f'{path}: a {mode} mask under "label_format": "ids" (expected a '
                               'single-channel or palette PNG; colour masks need '
                               '"label_format": "colours")')
        raw = np.asarray(mask, np.int64)
      else:
        raw = np.asarray(mask.convert('RGB'), np.int64)
  except (OSError, SyntaxError) as e:
    raise UserInputError(f'{path}: corrupt or truncated mask ({e})') from None
  if label_format == 'ids':
    mapped = spec.label_map[raw]
    if (mapped == datasets.INVALID).any():
      values, counts = np.unique(raw[mapped == datasets.INVALID], return_counts=True)
      raise UserInputError(
          f'{path}: value {int(values[0])} ({int(counts[0])} pixels) is no class id, not in '
          f'label_map and not the ignore label' +
          (f' ({len(values)} such values: {values[:8].tolist()})' if len(values) > 1 else ''))
    return mapped.astype(np.uint8)
  packed = (raw[..., 0] << 16) | (raw[..., 1] << 8) | raw[..., 2]
  table = {(r << 16) | (g << 8) | b: i for (r, g, b), i in colours.items()}
  values, inverse = np.unique(packed, return_inverse=True)
  ids = np.array([table.get(int(v), -1) for v in values], np.int64)
  if (ids < 0).any():
    bad = values[ids < 0]
    count = int(np.sum(packed == bad[0]))
    colour = [int(bad[0]) >> 16, (int(bad[0]) >> 8) & 255, int(bad[0]) & 255]
    raise UserInputError(f'{path}: colour {colour} ({count} pixels) is not in the palette of '
                         f'dataset.json ({len(bad)} such colours)')
  return ids[inverse].reshape(packed.shape).astype(np.uint8)


def load(data_dir: str, val_fraction: float = 0.1) -> Folder:
  """Reads dataset.json, lists every split and validates every pair of every split: each mask
  reads, its values are classes, and it has its image's size (from the image's header); then
  settles what the images are (`image_spec`)."""
  parsed = spec_file.read(os.path.join(data_dir, spec_file.SPEC_FILE))
  spec, label_format, colours = parsed.spec, parsed.label_format, parsed.colours
  splits = list_splits(data_dir, val_fraction)
  infos = {}
  for records in splits.values():
    for record in records:
      label = read_label(record, spec, label_format, colours)
      info = infos[record.image_path] = images.probe(record.image_path)
      if label.shape != (info.height, info.width):
        raise UserInputError(f'{record.label_path}: mask is {label.shape[1]}x{label.shape[0]} '
                             f'but image {record.image_path} is {info.width}x{info.height}')
  spec = dataclasses.replace(spec, image=image_spec(parsed.image, splits, infos, data_dir))
  return Folder(data_dir, spec, label_format, colours, splits, infos)


def image_spec(request: spec_file.ImageRequest, splits: dict[str, list[base.Record]],
               infos: dict[str, images.Info], data_dir: str) -> datasets.ImageSpec:
  """What the folder's images are: dataset.json's "image" where it says, else the files' own
  channels and bit depth (all alike, or an error naming two that differ; 8-bit grey among RGB
  is made RGB, as every JPEG collection needs); the value range as given, [0, 255] for 8-bit
  data, else ("auto") the train split's percentiles."""
  ordered = [infos[r.image_path] for records in splits.values() for r in records]
  paths = [r.image_path for records in splits.values() for r in records]
  if (request.channels is None and {i.bit_depth for i in ordered} == {8}
      and {i.stored_channels for i in ordered} == {1, 3}):
    request = request._replace(channels=3)

  def agreed(field: str, given):
    if given is not None:
      return given
    values = [getattr(info, field) for info in ordered]
    for path, value in zip(paths, values):
      if value != values[0]:
        what = 'channels' if field == 'stored_channels' else 'bit depths'
        raise UserInputError(
            f'{path}: {value} where {paths[0]} has {values[0]} ({what} differ); convert the '
            f'images alike, or say which to use in {data_dir}/dataset.json '
            '("image": {"channels": N, "bit_depth": 8 or 16})')
    return values[0]

  channels = agreed('stored_channels', request.channels)
  depth = agreed('bit_depth', request.bit_depth)
  value_range = request.value_range or (spec_file.AUTO if depth == 16 else (0.0, 255.0))
  if value_range == spec_file.AUTO:
    train = splits.get('train') or next(iter(splits.values()))
    value_range = auto_range(train, datasets.ImageSpec(channels, depth, (0.0, 1.0)), infos)
  return datasets.ImageSpec(channels, depth, tuple(float(v) for v in value_range))


def auto_range(records: list[base.Record], spec: datasets.ImageSpec,
               infos: dict[str, images.Info]) -> tuple[float, float]:
  """AUTO_PERCENTILES of the values of `records`' images (each subsampled), widened to at
  least one unit."""
  samples = []
  for record in records:
    array = images.conform(images.read(record.image_path, infos.get(record.image_path)), spec,
                           record.image_path).ravel()
    samples.append(array[::max(1, array.size // AUTO_SAMPLES_PER_IMAGE)])
  low, high = np.percentile(np.concatenate(samples), AUTO_PERCENTILES)
  return float(low), float(max(high, low + 1))


def constant_warning(folder: Folder, split: str, sample: int = 32) -> str | None:
  """A warning when (nearly) every image of `split` is (nearly) constant (evenly spaced ones
  checked): the case of images read wrongly, whose model learns nothing."""
  records = folder.splits[split]
  picked = records[::max(1, len(records) // sample)]
  spec = folder.spec.image
  spread = [float(np.std(images.conform(images.read(r.image_path, folder.infos.get(
      r.image_path)), spec, r.image_path).astype(np.float32))) for r in picked]
  flat = sum(s <= CONSTANT_SPREAD * spec.max_value for s in spread)
  if flat < 0.9 * len(picked):
    return None
  return (f'{flat} of {len(picked)} images checked in split {split!r} of {folder.data_dir} are '
          f'(nearly) constant (spread <= {100 * CONSTANT_SPREAD:g}% of the {spec.bit_depth}-bit '
          f'range): a model learns nothing from them; check how they were saved (e.g. '
          f'{picked[0].image_path}: {images.describe(picked[0].image_path)})')


def make_example(folder: Folder, half_resolution: bool = False):
  """The converter's per-record function (picklable for the writer's worker processes)."""
  return functools.partial(base.to_example, spec=folder.spec, half_resolution=half_resolution,
                           read_label=functools.partial(
                               read_label, spec=folder.spec, label_format=folder.label_format,
                               colours=folder.colours))
