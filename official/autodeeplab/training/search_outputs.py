"""What a search writes and how a search workdir is read back: `arch.npz`, `genotype.json` and
`architecture.png` at each export (each file atomically), the TensorBoard heatmaps of softmax(alpha)
and the transition probabilities, and the architecture of any workdir's latest checkpoint decoded
without training (`tools.describe --workdir`).
"""
from __future__ import annotations

import dataclasses
import io
import os
import typing

import numpy as np
import tensorflow as tf

from official.autodeeplab.modeling import supernet
from official.autodeeplab.search import cost
from official.autodeeplab.search import decode
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import latency_table
from official.autodeeplab.search import space
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import arch_history
from official.autodeeplab.training import experiment
from official.autodeeplab.training import plots
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import run_description
from official.autodeeplab import files
from official.autodeeplab.utils import visualize

SUPERNET_FILE = 'supernet.json'  # what the supernet of a search workdir is (to rebuild it)


def cost_model(config, model: supernet.Supernet) -> cost.CostModel:
  """The search's cost model (`config` a `SearchConfig`): the latency table's when it has one,
  checked against the supernet (B, levels) and its data (classes, channels); else the cells'
  multiply-adds at cost_filter_multiplier and cost_image_size."""
  if config.latency_table:
    latency = cost.Latency.from_file(config.latency_table)
    latency_table.check_matches(
        latency.table, config.latency_table, 'this search', num_blocks=model.num_blocks,
        num_levels=model.num_levels, num_classes=model.num_classes,
        input_channels=model.input_channels, primitives=list(space.PRIMITIVES))
    return latency
  return cost.MultiplyAdds(config.cost_filter_multiplier, *config.cost_image_size,
                           model.num_blocks, model.num_levels)


def workdir_latency_table(config, workdir: str):
  """`config` (a `SearchConfig`) with the latency table a search workdir was started with: the
  workdir's copy when the config names none (a resume needs no binding); a config naming another
  table than the copy is refused."""
  copy = os.path.join(workdir, latency_table.TABLE_FILE)
  if not os.path.exists(copy):
    return config
  kept = latency_table.read(copy)
  if not config.latency_table:
    return experiment.with_latency_table(dataclasses.replace(config, latency_table=copy))
  if latency_table.read(config.latency_table) != kept:
    raise UserInputError(
        f'search_config.latency_table={config.latency_table} is not the table this search '
        f'started with ({copy}): use another --workdir to search for another table')
  return config


def export_and_record(model: supernet.Supernet, config, workdir: str, step: int,
                      epoch: float | None, miou: float | None,
                      latency: cost.Latency | None = None,
                      sharpness=None) -> genotype_lib.Genotype:
  """A search's export at `step`: the files (`export_architecture`), the TensorBoard summaries
  and the history record (`arch_history`, its entropies to TensorBoard too); `config` is the
  `SearchConfig` (what the expected multiply-adds are counted for), `miou` trainB's since the
  previous export; with `latency` (a search with a latency table) the expected latency too, and
  the table copied into the workdir; with `sharpness` (a `sharpness.Measurement`, a search with
  search_config.track_sharpness) the dominant eigenvalue and the seconds it took. Returns the
  genotype."""
  found = export_architecture(model, workdir, step)
  architecture_summaries(model, found, step)
  transitions = model.transition_probabilities()
  expected = cost.MultiplyAdds(config.cost_filter_multiplier, *config.cost_image_size,
                               model.num_blocks, model.num_levels).expected(model.alpha,
                                                                            transitions)
  expected_ms = None
  if latency is not None:
    expected_ms = float(latency.expected(model.alpha, transitions))
    copy = os.path.join(workdir, latency_table.TABLE_FILE)
    if not os.path.exists(copy):
      files.write_json(copy, latency.table)
  record = arch_history.make_record(step, epoch, found, model.alpha.numpy(), transitions.numpy(),
                                    miou, float(expected), expected_ms, sharpness)
  if arch_history.append(workdir, record):
    for name in ('alpha_entropy', 'transition_entropy', 'expected_latency_ms',
                 'dominant_eigenvalue'):
      if record.get(name) is not None:
        tf.summary.scalar(f'architecture/{name}', record[name], step=step)
  tf.summary.flush()
  return found


def keep_genotype(workdir: str, record: dict) -> genotype_lib.Genotype:
  """An early stop that keeps an earlier export's genotype (`record`, from the history): its
  genotype.json and architecture.png are written again (arch.npz stays the latest alpha/beta)."""
  found = genotype_lib.Genotype.from_dict(record['genotype'], arch_history.HISTORY_FILE)
  found.to_json(os.path.join(workdir, 'genotype.json'))
  plots.plot_architecture(found, os.path.join(workdir, 'architecture.png'), None,
                          f'search step {record["step"]} (kept by the sharpness stop)')
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
  expected_latency_ms: float | None = None  # with the workdir's latency table


def decode_checkpoint(workdir: str, cost_filter_multiplier: int = 20,
                      cost_image_size: tuple[int, int] = (1024, 2048)) -> Decoded:
  """What a search workdir's latest checkpoint holds, without training: the supernet is rebuilt
  from `supernet.json` and only restored; the expected multiply-adds are counted for F =
  `cost_filter_multiplier` at `cost_image_size`, and the expected latency with the workdir's
  latency table when it has one."""
  model, step = restore_supernet(workdir)
  alpha, beta = (v.numpy() for v in model.arch_variables)
  transitions = model.transition_probabilities()
  expected = cost.MultiplyAdds(cost_filter_multiplier, *cost_image_size, model.num_blocks,
                               model.num_levels).expected(model.alpha, transitions)
  expected_ms = None
  copy = os.path.join(workdir, latency_table.TABLE_FILE)
  if os.path.exists(copy):
    expected_ms = float(cost.Latency.from_file(copy).expected(model.alpha, transitions))
  return Decoded(decode.decode(alpha, beta, model.num_blocks),
                 decode.transition_probabilities(beta), step, float(expected), expected_ms)


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
