"""One spec per dataset: classes, ignore label, raw-label -> train-id map, colours, splits.

Train ids are 0..num_classes-1; 255 is ignored in training and evaluation. Each spec's
`label_map` is a 256-entry lookup table from the raw annotation value to the train id, with
`INVALID` for values that are not in the dataset's label table (converters reject those).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.errors import UserInputError

IGNORE_LABEL = 255
INVALID = -1
# Every model sees its images' value range scaled to [-1, 1] (8-bit: x / 127.5 - 1), so the
# middle of the range (the padding) is 0.
PIXEL_SCALE = 127.5


@dataclasses.dataclass(frozen=True)
class ImageSpec:
  """What a dataset's images are, and so what its models take.

  Attributes:
    channels: bands per pixel (3 for RGB, 1 for grey, N for a multi-band TIFF).
    bit_depth: 8 or 16 bits per sample (records keep 16 bits where the data has them).
    value_range: (lo, hi) of the raw values mapped to [-1, 1]: (0, 255) for 8-bit data; for
      16-bit data, what the dataset says or the train split's 0.5th and 99.5th percentiles.
  """
  channels: int = 3
  bit_depth: int = 8
  value_range: tuple[float, float] = (0.0, 255.0)

  @property
  def dtype(self) -> str:
    return 'uint16' if self.bit_depth == 16 else 'uint8'

  @property
  def max_value(self) -> int:
    return (1 << self.bit_depth) - 1

  def to_dict(self) -> dict:
    return {'channels': self.channels, 'bit_depth': self.bit_depth,
            'value_range': [float(v) for v in self.value_range]}

  @classmethod
  def from_dict(cls, data: dict | None) -> 'ImageSpec':
    """The inverse of `to_dict`; None (records and workdirs written before images had a spec)
    is 8-bit RGB."""
    if not data:
      return cls()
    return cls(int(data['channels']), int(data['bit_depth']),
               tuple(float(v) for v in data['value_range']))


RGB8 = ImageSpec()


def dataset_ids(spec: 'DatasetSpec') -> np.ndarray:
  """[num_classes] the dataset's own label value of each train id: the inverse of the
  conversion's label map (Cityscapes: train id -> labelId, e.g. road 0 -> 7; VOC: unchanged;
  ADE20K: id + 1), for files a benchmark server scores. Refused, naming the class and its raw
  values, where two raw values map to one class."""
  inverse = np.zeros(spec.num_classes, np.int64)
  for train_id, name in enumerate(spec.class_names):
    raw = np.flatnonzero(spec.label_map == train_id)
    if len(raw) != 1:
      raise UserInputError(
          f'prediction_ids=dataset: {spec.name} class {train_id} ({name}) comes from raw label '
          f'values {raw.tolist()}: the label map cannot be inverted')
    inverse[train_id] = raw[0]
  return inverse


def normalize(image, spec: ImageSpec = RGB8):
  """Float raw values -> [-1, 1] over the spec's value range (8-bit: x / 127.5 - 1), NumPy
  arrays and TensorFlow tensors alike: the one normalisation of training, evaluation, exports
  and prediction."""
  low, high = spec.value_range
  half = (high - low) / 2.0
  return (image - low) / half - 1.0 if low else image / half - 1.0


def denormalize(image, spec: ImageSpec = RGB8):
  """The inverse of `normalize` (not rounded or clipped)."""
  low, high = spec.value_range
  return (image + 1.0) * ((high - low) / 2.0) + low


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a converter and the evaluation need to know about a dataset.

  Attributes:
    name: the --dataset flag value.
    class_names: train id -> name.
    label_map: [256] int array, raw annotation value -> train id, 255 (ignored) or INVALID.
    palette: [num_classes, 3] uint8 RGB colour per train id (for visualisation).
    splits: split name -> number of images in the full dataset.
    image: what its images are (channels, bit depth, value range).
  """
  name: str
  class_names: tuple[str, ...]
  label_map: np.ndarray = dataclasses.field(repr=False, compare=False)
  palette: np.ndarray = dataclasses.field(repr=False, compare=False)
  splits: dict[str, int] = dataclasses.field(default_factory=dict)
  ignore_label: int = IGNORE_LABEL
  image: ImageSpec = RGB8

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _cityscapes() -> DatasetSpec:
  # The official label table (cityscapesScripts helpers/labels.py): 34 ids + license plate (-1).
  from cityscapesscripts.helpers import labels as cs_labels
  train = sorted((l for l in cs_labels.labels if 0 <= l.trainId < 255), key=lambda l: l.trainId)
  label_map = np.full(256, INVALID, np.int64)
  for label in cs_labels.labels:
    # license plate (id -1) cannot be stored in a uint8 PNG except as 255; it is ignored.
    raw = label.id if label.id >= 0 else 255
    label_map[raw] = label.trainId if 0 <= label.trainId < 255 else IGNORE_LABEL
  return DatasetSpec(
      name='cityscapes', class_names=tuple(l.name for l in train), label_map=label_map,
      palette=np.array([l.color for l in train], np.uint8),
      splits={'train': 2975, 'val': 500, 'test': 1525})


def voc_palette(num_colours: int = 256) -> np.ndarray:
  """The PASCAL VOC colour map (bit-interleaved class index), [num_colours, 3] uint8."""
  palette = np.zeros([num_colours, 3], np.uint8)
  for index in range(num_colours):
    c, r, g, b = index, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= ((c >> 0) & 1) << shift
      g |= ((c >> 1) & 1) << shift
      b |= ((c >> 2) & 1) << shift
      c >>= 3
    palette[index] = (r, g, b)
  return palette


VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def _voc() -> DatasetSpec:
  label_map = np.full(256, INVALID, np.int64)
  label_map[:len(VOC_CLASSES)] = np.arange(len(VOC_CLASSES))
  label_map[IGNORE_LABEL] = IGNORE_LABEL  # object boundaries and difficult regions
  return DatasetSpec(
      name='voc', class_names=VOC_CLASSES, label_map=label_map,
      palette=voc_palette(len(VOC_CLASSES)),
      splits={'train': 1464, 'val': 1449, 'trainval': 2913, 'train_aug': 10582})


ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag',
    'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave',
    'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')


def _ade20k() -> DatasetSpec:
  label_map = np.full(256, INVALID, np.int64)
  label_map[0] = IGNORE_LABEL  # 'other objects'
  label_map[1:len(ADE20K_CLASSES) + 1] = np.arange(len(ADE20K_CLASSES))
  return DatasetSpec(
      name='ade20k', class_names=ADE20K_CLASSES, label_map=label_map,
      palette=voc_palette(len(ADE20K_CLASSES) + 1)[1:],
      splits={'train': 20210, 'val': 2000})


def synthetic_spec(num_classes: int = synthetic.NUM_CLASSES) -> DatasetSpec:
  label_map = np.full(256, INVALID, np.int64)
  label_map[:num_classes] = np.arange(num_classes)
  label_map[IGNORE_LABEL] = IGNORE_LABEL
  return DatasetSpec(
      name='synthetic', class_names=('background',) + tuple(
          f'shape{i}' for i in range(1, num_classes)), label_map=label_map,
      palette=synthetic.class_colours(num_classes), splits={})


_BUILDERS = {'cityscapes': _cityscapes, 'voc': _voc, 'ade20k': _ade20k, 'synthetic': synthetic_spec}
DATASETS = tuple(_BUILDERS)


def get_spec(name: str, num_classes: int | None = None) -> DatasetSpec:
  """A built-in dataset's spec; `num_classes` sizes the synthetic one (its class count is a
  conversion option), the others have theirs."""
  if name not in _BUILDERS:
    raise UserInputError(f'dataset={name}: expected one of {", ".join(DATASETS)}')
  if name == 'synthetic' and num_classes is not None:
    return synthetic_spec(int(num_classes))
  return _BUILDERS[name]()


def map_labels(raw: np.ndarray, spec: DatasetSpec, source: str) -> np.ndarray:
  """Raw annotation values -> uint8 train ids; values outside the label table are an error."""
  mapped = spec.label_map[raw]
  if (mapped == INVALID).any():
    bad = sorted(set(np.unique(raw[mapped == INVALID]).tolist()))
    raise UserInputError(f'{source}: label values {bad[:10]} are not in the {spec.name} label table')
  return mapped.astype(np.uint8)
