"""Pictures that know nothing of the search or the datasets: colourised label maps, overlays,
heatmaps and the confusion matrix, written as PNGs atomically. (The architecture, history and
baseline plots are `training/plots.py`.)

Label maps: `label_palette` extends a dataset's palette (one colour per train id) to all 256 uint8
values, the ignore label 255 black; `colorize` and `overlay` make the PNGs that evaluation and
prediction write; `side_by_side` is their TensorFlow form for TensorBoard.
"""
from __future__ import annotations

import io

import numpy as np

from official.autodeeplab import files

OVERLAY_ALPHA = 0.5  # weight of the mask colour in an overlay


def label_palette(palette: np.ndarray | None = None) -> np.ndarray:
  """[256, 3] uint8: the dataset's colours for its train ids, black for every other value (255,
  the ignore label, included). Without a palette, a fixed pseudo-random one."""
  full = np.zeros([256, 3], np.uint8)
  if palette is None:
    palette = np.random.default_rng(0).integers(0, 256, [255, 3]).astype(np.uint8)
  palette = np.asarray(palette, np.uint8)[:255]
  full[:len(palette)] = palette
  return full


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """[H, W] integer label map -> [H, W, 3] uint8 colours (palette from `label_palette`)."""
  return palette[np.clip(labels, 0, 255).astype(np.int64)]


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
  """The image blended with a colourised label map, [H, W, 3] uint8."""
  mixed = (1 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str) -> None:
  """Writes a PNG atomically, a full disk as one line (`files.write_bytes`)."""
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  files.write_bytes(path, buffer.getvalue())


def save_figure(fig, path: str, dpi: int) -> str:
  """Renders a matplotlib figure to PNG, closes it and writes it atomically (`save_png`)."""
  import matplotlib.pyplot as plt
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=dpi)
  plt.close(fig)
  return files.write_bytes(path, buffer.getvalue())


def display_rgb(images: np.ndarray) -> np.ndarray:
  """Model inputs (values in [-1, 1], any channel count) as uint8 RGB to look at: [-1, 1] to
  [0, 255] (the image's value range, whatever its bit depth), a grey band repeated, the first
  three bands of more."""
  rgb = np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
  return rgb[..., [0, 0, 0] if rgb.shape[-1] < 3 else [0, 1, 2]]


def side_by_side(images, labels, predictions, palette: np.ndarray):
  """TensorBoard images [N, H, 3W, 3] uint8: the model's inputs shown as `display_rgb` does,
  their ground truth and the predictions, colourised with a `label_palette`."""
  import tensorflow as tf
  palette = tf.constant(palette, tf.uint8)
  image = tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0, 255), tf.uint8)
  image = tf.gather(image, [0, 0, 0] if image.shape[-1] < 3 else [0, 1, 2], axis=-1)
  colour = lambda x: tf.gather(palette, tf.clip_by_value(tf.cast(x, tf.int32), 0, 255))
  return tf.concat([image, colour(labels), colour(predictions)], axis=2)


def heatmap_png(values: np.ndarray, title: str, xlabels, ylabel: str) -> bytes:
  """A [rows, columns] array of values in [0, 1] as a PNG heatmap (TensorBoard images)."""
  import io
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(max(4, 0.6 * values.shape[1] + 2), max(3, 0.3 * len(values))))
  image = ax.imshow(values, cmap='viridis', vmin=0, vmax=1, aspect='auto')
  ax.set_xticks(range(values.shape[1]), xlabels, rotation=45, ha='right', fontsize=7)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=90)
  plt.close(fig)
  return buffer.getvalue()


def plot_confusion(confusion: np.ndarray, class_names, output_path: str, title: str = '') -> str:
  """The row-normalised confusion matrix (rows: ground truth) as a PNG, written atomically.

  Up to 40 classes (Cityscapes' 19, VOC's 21) get 0.4 inch cells and 8 pt names on both axes;
  more (ADE20K's 150) get 0.12 inch cells and 3.5 pt names at 200 dpi: every name and cell is
  legible when the image is viewed at full size.
  """
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(1, keepdims=True)
  normalised = np.where(rows > 0, confusion / np.maximum(rows, 1), 0.0)
  n = len(class_names)
  cell, font, dpi = (0.4, 8, 120) if n <= 40 else (0.12, 3.5, 200)
  side = max(4.0, cell * n + 2.5)
  fig, ax = plt.subplots(figsize=(side + 1.0, side))
  image = ax.imshow(normalised, cmap='Blues', vmin=0, vmax=1)
  ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
  ax.set_yticks(range(n), class_names, fontsize=font)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  ax.set_title(title or 'confusion matrix (each row sums to 1)', fontsize=10)
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  fig.tight_layout()
  return save_figure(fig, output_path, dpi)
