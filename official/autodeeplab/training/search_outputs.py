"""What a search writes and how a search workdir is read back: `arch.npz`, `genotype.json` and
`architecture.png` at each export (each file atomically), the TensorBoard heatmaps of softmax(alpha)
and the transition probabilities, and the architecture of any workdir's latest checkpoint decoded
without training (`tools.describe --workdir`).
"""
from __future__ import annotations

import io
import os
import typing

import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import supernet
from official.autodeeplab.search import cost
from official.autodeeplab.search import decode
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from official.autodeeplab.training import arch_history
from official.autodeeplab.training import plots
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import run_description
from official.autodeeplab import files
from official.autodeeplab.utils import visualize

SUPERNET_FILE = 'supernet.json'  # what the supernet of a search workdir is (to rebuild it)


def export_and_record(model: supernet.Supernet, config, workdir: str, step: int,
                      epoch: float | None, miou: float | None) -> genotype_lib.Genotype:
  """A search's export at `step`: the files (`export_architecture`), the TensorBoard summaries
  and the history record (`arch_history`, its entropies to TensorBoard too); `config` is the
  `SearchConfig` (what the expected multiply-adds are counted for), `miou` trainB's since the
  previous export. Returns the genotype."""
  found = export_architecture(model, workdir, step)
  architecture_summaries(model, found, step)
  transitions = model.transition_probabilities()
  expected = cost.expected_cells(model.alpha, transitions, model.num_blocks,
                                 config.cost_filter_multiplier, *config.cost_image_size)
  record = arch_history.make_record(step, epoch, found, model.alpha.numpy(), transitions.numpy(),
                                    miou, float(expected))
  if arch_history.append(workdir, record):
    for name in ('alpha_entropy', 'transition_entropy'):
      tf.summary.scalar(f'architecture/{name}', record[name], step=step)
  tf.summary.flush()
  return found


def export_architecture(model: supernet.Supernet, workdir: str,
                        step: int) -> genotype_lib.Genotype:
  """Writes what the search has found at `step`, each file atomically: `arch.npz` (raw alpha,
  beta and the transition probabilities), `genotype.json` (cell + Viterbi path) and
  `architecture.png`. Returns the genotype."""
  alpha, beta = (v.numpy() for v in model.arch_variables)
  transitions = decode.transition_probabilities(beta)
  buffer = io.BytesIO()
  np.savez(buffer, alpha=alpha, beta=beta, transition_probabilities=transitions, step=step)
  files.write_bytes(os.path.join(workdir, 'arch.npz'), buffer.getvalue())
  found = decode.decode(alpha, beta, model.num_blocks)
  found.to_json(os.path.join(workdir, 'genotype.json'))
  plots.plot_architecture(found, os.path.join(workdir, 'architecture.png'), transitions,
                              f'search step {step}')
  return found


def architecture_summaries(model: supernet.Supernet, found: genotype_lib.Genotype,
                           step: int) -> None:
  """TensorBoard: softmax(alpha) [edges x ops] and the transition probabilities [layers x (level,
  transition)] as heatmaps, and the decoded architecture as text (in the default writer)."""
  alpha = tf.nn.softmax(model.alpha).numpy()
  transitions = model.transition_probabilities().numpy().reshape(model.num_layers, -1)
  columns = [f'{k}:{t}' for k in range(model.num_levels) for t in space.TRANSITIONS]
  for name, values, xlabels, ylabel in (
      ('architecture/softmax_alpha', alpha, space.PRIMITIVES, 'edge'),
      ('architecture/transition_probabilities', transitions, columns, 'layer')):
    png = visualize.heatmap_png(values, f'{name.split("/")[1]} at step {step}', xlabels, ylabel)
    tf.summary.image(name, tf.io.decode_png(png, channels=3)[tf.newaxis], step=step)
  tf.summary.text('architecture/decoded', '    ' + found.describe().replace('\n', '\n    '),
                  step=step)


class Decoded(typing.NamedTuple):
  genotype: genotype_lib.Genotype
  transitions: np.ndarray  # transition probabilities [L, levels, 3]
  step: int
  expected_multiply_adds: float  # of the retrained cells under the relaxation (search/cost.py)


def decode_checkpoint(workdir: str, cost_filter_multiplier: int = 20,
                      cost_image_size: tuple[int, int] = (1024, 2048)) -> Decoded:
  """What a search workdir's latest checkpoint holds, without training: the supernet is rebuilt
  from `supernet.json` and only restored; the expected multiply-adds are counted for F =
  `cost_filter_multiplier` at `cost_image_size`."""
  model, step = restore_supernet(workdir)
  alpha, beta = (v.numpy() for v in model.arch_variables)
  expected = cost.expected_cells(model.alpha, model.transition_probabilities(), model.num_blocks,
                                 cost_filter_multiplier, *cost_image_size)
  return Decoded(decode.decode(alpha, beta, model.num_blocks),
                 decode.transition_probabilities(beta), step, float(expected))


def restore_supernet(workdir: str):
  """(the supernet of a search workdir, restored from its latest checkpoint; its step)."""
  description = run_description.read_json(workdir, SUPERNET_FILE, 'is it a tools.search workdir?')
  path = checkpoints.latest_checkpoint(workdir)
  model = supernet.Supernet.from_description(description,
                                             os.path.join(workdir, SUPERNET_FILE))
  model.build((None, None, None, model.input_channels))
  step = tf.Variable(0, dtype=tf.int64)
  checkpoints.restore(tf.train.Checkpoint(model=model, step=step), path, workdir, partial=True)
  return model, int(step.numpy())
