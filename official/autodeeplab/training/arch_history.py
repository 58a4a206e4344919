"""The path the architecture took: one record per export in `workdir/arch_history.jsonl`, and the
search's stop when the decoded architecture has settled (pure NumPy, no TensorFlow).

`arch.npz` and `genotype.json` hold the latest export only; the history keeps every one, so a user
can see when the search settled (and `search_config.stop_when_stable` stops it there), and
`tools.describe --workdir=DIR --history=history.png` draws how the path and each block's inputs and
ops changed.

A record: {"step", "epoch", "genotype" (as genotype.json), "alpha_entropy" (mean over edges of the
entropy of softmax(alpha), nats), "transition_entropy" (mean over the trellis nodes of the entropy
of their transition probabilities), "miou_trainB" (of the architecture steps since the previous
export; null before they start), "expected_multiply_adds" (of the retrained network's cells
under the relaxation, at search_config.cost_image_size and cost_filter_multiplier: search/cost.py)},
and with a latency table (search_config.latency_table) "expected_latency_ms" (of the whole network
on the table's engine, under the relaxation), and with search_config.track_sharpness
"dominant_eigenvalue" (of the trainB loss's Hessian in alpha and beta: training/sharpness.py) and
"sharpness_seconds" (what measuring it took).

Two early stops read the history: `stop_reason` (the decoded genotype unchanged over
`stop_when_stable` exports) and `sharpness_stop` (Zela et al.'s DARTS-ES: the eigenvalue's mean
over the last window of exports exceeds the window before it by 1 / SHARPNESS_RATIO).
"""
from __future__ import annotations

import json
import os

import numpy as np

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab import files

HISTORY_FILE = 'arch_history.jsonl'
SHARPNESS_RATIO = 0.75  # Zela et al.: stop when mean(previous window) / mean(last window) < this


def _entropy(probabilities: np.ndarray) -> np.ndarray:
  """Entropy (nats) of each row of a [..., k] distribution; zero entries contribute nothing."""
  p = np.asarray(probabilities, np.float64)
  with np.errstate(divide='ignore', invalid='ignore'):
    return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def entropies(alpha: np.ndarray, transitions: np.ndarray) -> tuple[float, float]:
  """(mean entropy of softmax(alpha) per edge, mean entropy of the transition probabilities per
  trellis node that has outgoing edges)."""
  alpha = np.asarray(alpha, np.float64)
  weights = np.exp(alpha - alpha.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  transitions = np.asarray(transitions, np.float64)
  nodes = transitions.sum(-1) > 0
  return float(_entropy(weights).mean()), float(_entropy(transitions)[nodes].mean())


def make_record(step: int, epoch: float | None, found: genotype_lib.Genotype, alpha: np.ndarray,
                transitions: np.ndarray, miou: float | None,
                expected_multiply_adds: float | None = None,
                expected_latency_ms: float | None = None, sharpness=None) -> dict:
  alpha_entropy, transition_entropy = entropies(alpha, transitions)
  record = {'step': int(step), 'epoch': None if epoch is None else round(float(epoch), 4),
            'genotype': found.to_dict(), 'alpha_entropy': alpha_entropy,
            'transition_entropy': transition_entropy,
            'miou_trainB': None if miou is None else float(miou),
            'expected_multiply_adds': expected_multiply_adds}
  if expected_latency_ms is not None:
    record['expected_latency_ms'] = expected_latency_ms
  if sharpness is not None:
    record['dominant_eigenvalue'] = float(sharpness.eigenvalue)
    record['sharpness_seconds'] = round(float(sharpness.seconds), 3)
  return record


def read(workdir: str) -> list[dict]:
  """The workdir's records, oldest first ([] when there are none). A torn last line (a process
  killed while appending) is dropped; any other unreadable line is an error naming it."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.read().split('\n')
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except ValueError:
      if number >= len(lines) - 1:  # the last line, unterminated: cut short by a kill
        break
      raise UserInputError(f'{path}: line {number} is not a JSON record') from None
  return records


def append(workdir: str, record: dict) -> bool:
  """Adds `record` unless the last one is of the same step (a resumed run exporting the step it
  stopped at); rewrites the file atomically (`files`). Returns whether it was added."""
  records = read(workdir)
  if records and records[-1]['step'] >= record['step']:
    return False
  records.append(record)
  files.write_text(os.path.join(workdir, HISTORY_FILE),
                   ''.join(json.dumps(r) + '\n' for r in records))
  return True


def stable_run(records: list[dict], arch_start_step: int) -> int:
  """How many of the last records, all at steps after `arch_start_step`, decoded the same
  genotype in a row (0 when the last one is not after it)."""
  count = 0
  for record in reversed(records):
    if record['step'] <= arch_start_step or (
        count and record['genotype'] != records[-1]['genotype']):
      break
    count += 1
  return count


def stop_reason(records: list[dict], arch_start_step: int, stop_when_stable: int) -> str | None:
  """Why the search should stop now (`search_config.stop_when_stable`), or None."""
  if stop_when_stable < 1:
    return None
  count = stable_run(records, arch_start_step)
  if count < stop_when_stable:
    return None
  return (f'the decoded architecture has not changed over the last {count} exports (steps '
          f'{records[-count]["step"]}-{records[-1]["step"]}; search_config.stop_when_stable = '
          f'{stop_when_stable})')


def sharpness_curve(records: list[dict]) -> list[dict]:
  """[{'step', 'value'}] of the records that measured the dominant eigenvalue (track_sharpness)."""
  return [{'step': r['step'], 'value': r['dominant_eigenvalue']} for r in records
          if r.get('dominant_eigenvalue') is not None]


def sharpness_stop(records: list[dict], arch_start_step: int, window: int) -> tuple | None:
  """Zela et al.'s early stop over the eigenvalues measured after `arch_start_step`: when the
  mean of the last `window` is more than 1 / SHARPNESS_RATIO times the mean of the `window`
  before them, (why, the record a window back, whose genotype the search keeps); else None."""
  if window < 1:
    return None
  measured = [r for r in records
              if r['step'] > arch_start_step and r.get('dominant_eigenvalue') is not None]
  if len(measured) < 2 * window:
    return None
  before = np.mean([r['dominant_eigenvalue'] for r in measured[-2 * window:-window]])
  last = np.mean([r['dominant_eigenvalue'] for r in measured[-window:]])
  if last <= 0 or before / last >= SHARPNESS_RATIO:
    return None
  kept = measured[-window - 1]
  return (f'the architecture Hessian\'s dominant eigenvalue grew from a mean of {before:.4g} to '
          f'{last:.4g} over the last {window} exports (ratio {before / last:.2f} < '
          f'{SHARPNESS_RATIO}; search_config.stop_on_sharpness = {window}): keeping the genotype '
          f'of step {kept["step"]}', kept)
