"""Pictures: the architecture plot, and colourised label maps and overlays of predictions.

Architecture plot (PNG): the network path over the trellis and the cell as a graph.

Left panel: one column per layer, one row per level (stride 4 at the top); the decoded path in
bold and, when transition probabilities are given (normalised betas), every trellis edge drawn
with a width and darkness proportional to its probability, as in the paper's Fig. 3. Right panel:
the cell: inputs H^{l-1}, H^{l-2}, the blocks with their two ops, the concatenated output.

Label maps: `label_palette` extends a dataset's palette (one colour per train id) to all 256 uint8
values, the ignore label 255 black; `colorize` and `overlay` make the PNGs that evaluation and
prediction write; `side_by_side` is their TensorFlow form for TensorBoard.
"""
from __future__ import annotations

import os

import numpy as np

from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype

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
  """Writes a PNG atomically (temporary name, then rename)."""
  from PIL import Image
  tmp = f'{path}.tmp-{os.getpid()}.png'
  Image.fromarray(array).save(tmp)
  os.replace(tmp, path)


def side_by_side(images, labels, predictions, palette: np.ndarray):
  """TensorBoard images [N, H, 3W, 3] uint8: the image (from [-1, 1]), its ground truth and the
  prediction, colourised with a `label_palette`."""
  import tensorflow as tf
  palette = tf.constant(palette, tf.uint8)
  image = tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0, 255), tf.uint8)
  colour = lambda x: tf.gather(palette, tf.clip_by_value(tf.cast(x, tf.int32), 0, 255))
  return tf.concat([image, colour(labels), colour(predictions)], axis=2)


def plot_architecture(genotype: Genotype, output_path: str,
                      transitions: np.ndarray | None = None, title: str = '') -> str:
  """Writes the PNG (atomically) and returns its path."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  layers = genotype.num_layers
  fig, (net_ax, cell_ax) = plt.subplots(
      1, 2, figsize=(max(8, 0.6 * layers + 6), 4.5), gridspec_kw={'width_ratios': [3, 2]})
  # Network level: x = layer (-1 = stem), y = level (0 at the top).
  levels = space.NUM_LEVELS
  if transitions is not None:
    for layer in range(layers):
      for source in range(levels):
        for d in range(3):
          p = float(transitions[layer, source, d])
          if p > 0:
            net_ax.plot([layer - 1, layer], [source, source + d - 1], color='0.55',
                        lw=0.5 + 3 * p, alpha=0.25 + 0.6 * p, zorder=1)
  for layer in range(-1, layers):
    for level in (space.levels_at_layer(layer) if layer >= 0 else (0,)):
      net_ax.scatter(layer, level, s=30, color='0.8', zorder=2)
  path = [0] + list(genotype.path)
  net_ax.plot(range(-1, layers), path, color='tab:blue', lw=3, marker='o', zorder=3)
  net_ax.set_xticks(range(-1, layers), ['stem'] + [str(i) for i in range(layers)])
  net_ax.set_yticks(range(levels), [f'1/{space.level_stride(k)}' for k in range(levels)])
  net_ax.set_ylim(levels - 0.5, -0.5)
  net_ax.set_xlabel('layer')
  net_ax.set_ylabel('output stride')
  net_ax.set_title('network path' + (' (edge width: transition probability)'
                                     if transitions is not None else ''))
  # Cell level: inputs on the left, blocks stacked, concat on the right.
  names = ['$H^{l-1}$', '$H^{l-2}$'] + [f'block {b}' for b in range(genotype.num_blocks)]
  position = {0: (0.0, 0.75), 1: (0.0, 0.25)}
  for b in range(genotype.num_blocks):  # staggered, so block -> block edges stay visible
    position[b + 2] = (0.3 + 0.55 * b / max(1, genotype.num_blocks - 1),
                       1 - (b + 0.5) / genotype.num_blocks)
  for b, block in enumerate(genotype.cell):
    x1, y1 = position[b + 2]
    for k, (index, op) in enumerate(block):
      x0, y0 = position[index]
      color = 'tab:orange' if op.startswith('atrous') else 'tab:green' if op.startswith(
          'separable') else 'tab:purple'
      cell_ax.annotate('', xy=(x1 - 0.06, y1), xytext=(x0 + 0.06, y0),
                       arrowprops=dict(arrowstyle='->', color=color,
                                       connectionstyle=f'arc3,rad={0.15 if k else -0.15}'))
      cell_ax.text((x0 + x1) / 2, (y0 + y1) / 2 + (0.03 if k else -0.03), op, fontsize=6,
                   color=color, ha='center')
    cell_ax.annotate('', xy=(1.02, 0.5), xytext=(x1 + 0.06, y1),
                     arrowprops=dict(arrowstyle='->', color='0.7'))
  for i, name in enumerate(names):
    x, y = position[i]
    cell_ax.text(x, y, name, ha='center', va='center', fontsize=7,
                 bbox=dict(boxstyle='round', fc='white', ec='0.4'))
  cell_ax.text(1.1, 0.5, 'concat', ha='center', va='center', fontsize=7,
               bbox=dict(boxstyle='round', fc='0.9', ec='0.4'))
  cell_ax.set_xlim(-0.15, 1.2)
  cell_ax.set_ylim(0, 1)
  cell_ax.axis('off')
  cell_ax.set_title('cell (sep: green, atrous: orange, other: purple)')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  tmp = f'{output_path}.tmp-{os.getpid()}.png'
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, output_path)
  return output_path
