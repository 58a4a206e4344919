"""The search's pictures: the architecture plot, the history of a search's exports and the
random baseline's figure (PNG, written atomically through `utils/visualize.save_figure`).

Architecture plot: left panel, one column per layer, one row per level (stride 4 at the top); the
decoded path in bold and, when transition probabilities are given (normalised betas), every
trellis edge drawn with a width and darkness proportional to its probability, as in the paper's
Fig. 3. Right panel: the cell: inputs H^{l-1}, H^{l-2}, the blocks with their two ops, the
concatenated output.
"""
from __future__ import annotations

import numpy as np

from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.utils.visualize import save_figure


# Face colours of the op kinds (`space.OpSpec.kind`) in the cell panel.
OP_KIND_COLOURS = {'separable': '#b7e4b0', 'atrous': '#ffd19a', 'pool': '#c9d7f2',
                   'skip': '#e3e3e3'}


def op_kind(op: str) -> str:
  """The kind of op `op` in the op table: how the cell panel colours it."""
  return space.OP_BY_NAME[op].kind


def plot_architecture(genotype: Genotype, output_path: str,
                      transitions: np.ndarray | None = None, title: str = '') -> str:
  """Writes the PNG (atomically) and returns its path."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch

  layers = genotype.num_layers
  fig, (net_ax, cell_ax) = plt.subplots(
      1, 2, figsize=(max(12, 0.6 * layers + 9), 5.6), gridspec_kw={'width_ratios': [3, 2.6]})
  _plot_path(net_ax, genotype, transitions)
  _plot_cell(cell_ax, genotype)
  handles = [Line2D([], [], color='tab:blue', lw=3, marker='o', label='decoded path')]
  if transitions is not None:
    handles.append(Line2D([], [], color='0.55', lw=2,
                          label='trellis edge (width: transition probability)'))
  handles += [Patch(facecolor=colour, edgecolor='0.4', label=f'{kind} op')
              for kind, colour in OP_KIND_COLOURS.items()]
  fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize=8, frameon=False)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout(rect=(0, 0.07, 1, 0.95 if title else 1))
  return save_figure(fig, output_path, 120)


def _plot_path(ax, genotype: Genotype, transitions: np.ndarray | None) -> None:
  """The trellis: x = layer (-1 = stem), y = level (stride 4 at the top)."""
  layers, levels = genotype.num_layers, space.NUM_LEVELS
  if transitions is not None:
    for layer in range(layers):
      for source in range(levels):
        for d in range(3):
          p = float(transitions[layer, source, d])
          if p > 0:
            ax.plot([layer - 1, layer], [source, source + d - 1], color='0.55',
                    lw=0.5 + 3 * p, alpha=0.25 + 0.6 * p, zorder=1)
  for layer in range(-1, layers):
    for level in (space.levels_at_layer(layer) if layer >= 0 else (0,)):
      ax.scatter(layer, level, s=30, color='0.8', zorder=2)
  ax.plot(range(-1, layers), [0] + list(genotype.path), color='tab:blue', lw=3, marker='o',
          zorder=3)
  ax.set_xticks(range(-1, layers), ['stem'] + [str(i) for i in range(layers)])
  ax.set_yticks(range(levels), [f'1/{space.level_stride(k)}' for k in range(levels)])
  ax.set_ylim(levels - 0.5, -0.5)
  ax.set_xlabel('layer')
  ax.set_ylabel('output stride')
  ax.set_title('network: path over the trellis', fontsize=10)


def _plot_cell(ax, genotype: Genotype) -> None:
  """Top to bottom: the inputs H^{l-1}, H^{l-2}, then one row per block, [op] -> block <- [op];
  every edge points down, from the state an op reads into the op's box. The cell's output is the
  concatenation of all blocks."""
  blocks = genotype.num_blocks
  top, bottom = 0.93, 0.05
  row = lambda b: top - (b + 1) * (top - bottom) / blocks
  box = lambda colour: dict(boxstyle='round,pad=0.3', fc=colour, ec='0.4', lw=0.8)
  label = lambda xy, text, colour, size=8: ax.text(*xy, text, ha='center', va='center',
                                                   fontsize=size, bbox=box(colour), zorder=4)
  nodes = {0: label((0.3, top), '$H^{l-1}$', 'white'), 1: label((0.7, top), '$H^{l-2}$', 'white')}

  def arrow(source, target, source_at, target_at, colour='0.45', rad=0.0):
    ax.annotate('', xy=target_at, xycoords=target, xytext=source_at, textcoords=source,
                arrowprops=dict(arrowstyle='->', color=colour, lw=0.8, shrinkA=1, shrinkB=1,
                                connectionstyle=f'arc3,rad={rad}'), zorder=2)

  for b, block in enumerate(genotype.cell):
    nodes[b + 2] = label((0.5, row(b)), f'block {b}', 'white')
    for k, (index, op) in enumerate(block):
      x = 0.17 if k == 0 else 0.83
      node = label((x, row(b)), op, OP_KIND_COLOURS[op_kind(op)], size=7)
      source_x = nodes[index].get_position()[0]
      bend = 0.0 if index < 2 else (-0.2 if x < source_x else 0.2)
      arrow(nodes[index], node, (0.5, 0.0), (0.5, 1.0), rad=bend)
      arrow(node, nodes[b + 2], (1.0 if k == 0 else 0.0, 0.5), (0.0 if k == 0 else 1.0, 0.5),
            colour='0.6')
  ax.set_xlim(-0.02, 1.02)
  ax.set_ylim(0.0, 1.0)
  ax.axis('off')
  ax.set_title('cell (shared by every layer): block = op + op; output = concat of the blocks',
               fontsize=10)


def plot_history(records: list[dict], output_path: str, title: str = '') -> str:
  """How a search's decoded architecture changed over its exports (arch_history.jsonl records):
  the path's level per layer, each block's two chosen ops (colour) and inputs (the number), and
  the entropies and trainB mIoU. Writes the PNG atomically and returns its path."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  from matplotlib.colors import ListedColormap
  genotypes = [Genotype.from_dict(r['genotype']) for r in records]
  steps = [r['step'] for r in records]
  n = len(records)
  paths = np.array([g.path for g in genotypes]).T  # [layers, exports]
  choices = np.array([[space.PRIMITIVES.index(op) for block in g.cell for _, op in block]
                      for g in genotypes]).T  # [2 x blocks, exports]
  inputs = np.array([[index for block in g.cell for index, _ in block] for g in genotypes]).T
  fig, (path_ax, cell_ax, curve_ax) = plt.subplots(
      3, 1, figsize=(max(8, 0.35 * n + 3), 3 + 0.3 * (paths.shape[0] + choices.shape[0])),
      sharex=True, gridspec_kw={'height_ratios': [paths.shape[0], choices.shape[0], 6]})
  levels = path_ax.imshow(paths, aspect='auto', cmap=ListedColormap(
      ['#c6dbef', '#6baed6', '#2171b5', '#08306b']), vmin=-0.5, vmax=space.NUM_LEVELS - 0.5,
                          interpolation='nearest')
  colorbar = fig.colorbar(levels, ax=path_ax, ticks=range(space.NUM_LEVELS), pad=0.01)
  colorbar.ax.set_yticklabels([f'1/{space.level_stride(k)}' for k in range(space.NUM_LEVELS)])
  path_ax.set_ylabel('layer')
  path_ax.set_title('decoded path: output stride of each layer', fontsize=10)
  ops = cell_ax.imshow(choices, aspect='auto', cmap=plt.get_cmap('tab10', len(space.PRIMITIVES)),
                       vmin=-0.5, vmax=len(space.PRIMITIVES) - 0.5, interpolation='nearest')
  colorbar = fig.colorbar(ops, ax=cell_ax, ticks=range(len(space.PRIMITIVES)), pad=0.01)
  colorbar.ax.set_yticklabels(space.PRIMITIVES, fontsize=7)
  if n <= 60:  # the chosen input of each op, while the numbers stay readable
    for (row, column), index in np.ndenumerate(inputs):
      cell_ax.text(column, row, str(index), ha='center', va='center', fontsize=6, color='white')
  cell_ax.set_yticks(range(choices.shape[0]),
                     [f'block {b} op {k}' for b in range(choices.shape[0] // 2) for k in (1, 2)],
                     fontsize=7)
  cell_ax.set_title('cell: op of each block input (colour) and the state it reads (number)',
                    fontsize=10)
  for key, label in (('alpha_entropy', 'entropy of softmax(alpha), mean per edge'),
                     ('transition_entropy', 'entropy of the transitions, mean per node')):
    curve_ax.plot(range(n), [r[key] for r in records], marker='.', label=label)
  mious = [r.get('miou_trainB') for r in records]
  if any(m is not None for m in mious):
    curve_ax.plot(range(n), [np.nan if m is None else m for m in mious], marker='.',
                  label='trainB mIoU since the previous export')
  curve_ax.legend(fontsize=7, loc='best')
  eigenvalues = [r.get('dominant_eigenvalue') for r in records]
  if any(e is not None for e in eigenvalues):  # search_config.track_sharpness: its own scale
    sharp_ax = curve_ax.twinx()
    sharp_ax.plot(range(n), [np.nan if e is None else e for e in eigenvalues], marker='x',
                  color='tab:red', label='dominant eigenvalue of the arch Hessian')
    sharp_ax.set_ylabel('dominant eigenvalue', color='tab:red', fontsize=8)
    sharp_ax.legend(fontsize=7, loc='lower right')
  ticks = range(0, n, max(1, n // 20))
  curve_ax.set_xticks(list(ticks), [str(steps[i]) for i in ticks], fontsize=7)
  curve_ax.set_xlabel('search step of the export')
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  return save_figure(fig, output_path, 110)


def plot_baseline(entries: list[dict], output_path: str, image_size) -> str:
  """tools.baseline's figure: mIoU (mean over retrain seeds, the bar their range) against
  multiply-adds, random genotypes as dots, the given ones as stars labelled with their
  percentile and its bootstrap 90% interval; the random median as a line."""
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))

  def draw(group, **style):
    x = [e['multiply_adds'] / 1e9 for e in group]
    y = [100 * e['miou'] for e in group]
    seeds = [100 * np.asarray(e.get('miou_per_seed', [e['miou']])) for e in group]
    ax.errorbar(x, y, yerr=[[m - s.min() for m, s in zip(y, seeds)],
                            [s.max() - m for m, s in zip(y, seeds)]],
                fmt='none', ecolor=style.get('color'), elinewidth=0.8, alpha=0.6)
    ax.scatter(x, y, **style)

  random = [e for e in entries if e['source'] == 'random']
  seeds = len(entries[0].get('miou_per_seed', [0])) if entries else 1
  draw(random, color='0.5', label=f'random genotypes ({len(random)})')
  if random:
    ax.axhline(100 * float(np.median([e['miou'] for e in random])), color='0.5', ls='--', lw=0.8,
               label='random median')
  given = [e for e in entries if e['source'] == 'given']
  draw(given, marker='*', s=220, color='tab:red', zorder=3)
  for entry in given:
    text = entry['name']
    if 'percentile' in entry:
      low, high = entry.get('percentile_ci90', (entry['percentile'],) * 2)
      text += f': {entry["percentile"]:.0f}th pct [{low:.0f}-{high:.0f}]'
    ax.annotate(text, (entry['multiply_adds'] / 1e9, 100 * entry['miou']), fontsize=8,
                xytext=(6, 4), textcoords='offset points')
  ax.scatter([], [], marker='*', s=120, color='tab:red', label='given (searched) genotypes')
  ax.set_xlabel(f'multiply-adds (B) at {image_size[0]}x{image_size[1]}')
  ax.set_ylabel(f'mIoU (%), mean of {seeds} seed(s), bar: range' if seeds > 1 else 'mIoU (%)')
  ax.set_title('searched vs random architectures, same retraining; percentile [90% interval]',
               fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return save_figure(fig, output_path, 110)
