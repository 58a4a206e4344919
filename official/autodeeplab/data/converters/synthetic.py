"""A deterministic synthetic segmentation dataset, so every stage runs without a download.

Each image is a noisy background (class 0) with a few filled rectangles and discs; each shape's
class decides its colour (plus noise) and its kind (classes alternate between rectangles and
discs), so labels are learnable from local colour and shape. Same seed, same data.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

# The built-in dataset's defaults (the quickstart's and the tools').
NUM_CLASSES = 5
IMAGE_SIZE = 96
NUM_EXAMPLES = 16


def class_colours(num_classes: int) -> np.ndarray:
  """A fixed, well separated RGB colour per class ([num_classes, 3] uint8)."""
  rng = np.random.default_rng(1234)
  return rng.integers(30, 226, size=[num_classes, 3]).astype(np.uint8)


def generate(num_images: int, height: int, width: int, num_classes: int,
             seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (image [H, W, 3] uint8, label [H, W] uint8 with values 0..num_classes-1)."""
  for index in range(num_images):
    yield make_one(index, height, width, num_classes, seed)


def make_one(index: int, height: int, width: int, num_classes: int,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Example `index` of the set: the same arguments always give the same pair."""
  if num_classes < 2:
    raise ValueError('the synthetic dataset needs at least 2 classes (background + 1)')
  colours = class_colours(num_classes)
  yy, xx = np.mgrid[0:height, 0:width]
  rng = np.random.default_rng([seed, index])
  label = np.zeros([height, width], np.uint8)
  for _ in range(rng.integers(2, 6)):
    cls = int(rng.integers(1, num_classes))
    h, w = rng.integers(max(2, height // 6), max(3, height // 2)), rng.integers(
        max(2, width // 6), max(3, width // 2))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    if cls % 2:
      label[top:top + h, left:left + w] = cls
    else:
      cy, cx, r = top + h / 2, left + w / 2, min(h, w) / 2
      label[(yy - cy)**2 + (xx - cx)**2 <= r * r] = cls
  noise = rng.normal(0, 12, size=[height, width, 3])
  image = np.clip(colours[label].astype(np.float32) + noise, 0, 255).astype(np.uint8)
  return image, label


def arrays(num_images: int, height: int, width: int, num_classes: int, seed: int = 0):
  """The whole set as two arrays: images [N, H, W, 3] uint8, labels [N, H, W] uint8."""
  pairs = list(generate(num_images, height, width, num_classes, seed))
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def example_name(index: int, seed: int = 0) -> str:
  """`image/filename` of example `index`: the name trainA / trainB are chosen by."""
  return f'synthetic_{seed}_{index:06d}'


def to_example(index: int, height: int, width: int, num_classes: int,
               seed: int = 0) -> tuple[bytes, np.ndarray]:
  """(serialized tf.train.Example, per-class pixel counts + ignored) of example `index`."""
  from official.autodeeplab.data import example
  image, label = make_one(index, height, width, num_classes, seed)
  counts = np.bincount(label.ravel(), minlength=num_classes + 1)
  return example.encode(example.png_bytes(image), 'png', example_name(index, seed),
                        height, width, label), counts
