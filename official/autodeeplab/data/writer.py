"""Sharded, resumable, parallel TFRecord writing with a per-split summary.

Files for split S with N shards: `{S}-{i:05d}-of-{N:05d}.tfrecord`, each with a sidecar
`.stats.json` (examples, per-class pixel counts). A shard is written to a temporary name and
renamed only when complete, so an interrupted run never leaves a half shard that looks finished;
a rerun skips the finished shards and writes the rest. `dataset.json` in the output directory
records which dataset (and options) it holds: converting another dataset into it is an error.
At the end `{S}-summary.json` holds the totals.
"""
from __future__ import annotations

import functools
import glob
import json
import multiprocessing
import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from official.autodeeplab.errors import UserInputError


def shard_path(output_dir: str, split: str, index: int, num_shards: int) -> str:
  return os.path.join(output_dir, f'{split}-{index:05d}-of-{num_shards:05d}.tfrecord')


def shard_files(directory: str, split: str) -> list[str]:
  """The finished shards of a split, in order."""
  return sorted(p for p in glob.glob(os.path.join(directory, f'{split}-*-of-*.tfrecord'))
                if re.fullmatch(rf'{re.escape(split)}-\d{{5}}-of-\d{{5}}\.tfrecord',
                                os.path.basename(p)))


def _write_json(path: str, data: Any) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(data, f, indent=1)
    f.write('\n')
  os.replace(tmp, path)


def _check_manifest(output_dir: str, manifest: dict) -> None:
  path = os.path.join(output_dir, 'dataset.json')
  if os.path.exists(path):
    with open(path) as f:
      existing = json.load(f)
    if existing != manifest:
      raise UserInputError(f'{output_dir}: already holds a different dataset ({existing}); '
                           f'expected {manifest}: use another --output_dir')
  else:
    _write_json(path, manifest)


def _write_shard(job, make_example: Callable, num_classes: int) -> dict:
  """Writes one shard (temporary name, then rename); returns its stats."""
  import tensorflow as tf
  path, sources = job
  tmp = f'{path}.tmp-{os.getpid()}'
  counts = np.zeros(num_classes + 1, np.int64)
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for source in sources:
        serialized, example_counts = make_example(source)
        writer.write(serialized)
        counts += example_counts
    stats = {'num_examples': len(sources), 'class_pixels': counts.tolist()}
    _write_json(path + '.stats.json', stats)
    os.replace(tmp, path)
    return stats
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_split(sources: Sequence, make_example: Callable[[Any], tuple[bytes, np.ndarray]],
                output_dir: str, split: str, num_shards: int, num_classes: int,
                manifest: dict, num_workers: int = 1, progress: bool = True) -> dict:
  """Converts `sources` (example i -> shard i % num_shards) and returns the split summary.

  Args:
    sources: what `make_example` takes, one per example (sorted for reproducible shards).
    make_example: source -> (serialized Example, [num_classes + 1] pixel counts, last = ignored);
      a picklable top-level function (or functools.partial of one) when num_workers > 1.
    output_dir: created if missing.
    split: split name used in the file names.
    num_shards: number of shards.
    num_classes: classes of the dataset.
    manifest: what this output directory holds (dataset name, options).
    num_workers: parallel processes (spawned, so TensorFlow is never forked).
    progress: show a progress bar on stderr.
  """
  if num_shards < 1:
    raise UserInputError(f'--num_shards={num_shards}: must be positive')
  if not sources:
    raise UserInputError(f'split {split!r} has no examples')
  os.makedirs(output_dir, exist_ok=True)
  _check_manifest(output_dir, manifest)
  other = [p for p in shard_files(output_dir, split) if not p.endswith(f'-of-{num_shards:05d}.tfrecord')]
  if other:
    raise UserInputError(f'{other[0]}: {output_dir} holds split {split!r} with another number of '
                         'shards; use that --num_shards or another --output_dir')
  jobs = [(shard_path(output_dir, split, i, num_shards), list(sources[i::num_shards]))
          for i in range(num_shards)]
  pending = [job for job in jobs
             if not (os.path.exists(job[0]) and os.path.exists(job[0] + '.stats.json'))]
  worker = functools.partial(_write_shard, make_example=make_example, num_classes=num_classes)
  from tqdm import tqdm
  bar = tqdm(total=len(sources), initial=len(sources) - sum(len(j[1]) for j in pending),
             unit='img', desc=f'{split}', disable=not progress)
  if num_workers > 1 and len(pending) > 1:
    with multiprocessing.get_context('spawn').Pool(min(num_workers, len(pending))) as pool:
      for stats in pool.imap_unordered(worker, pending):
        bar.update(stats['num_examples'])
  else:
    for job in pending:
      bar.update(worker(job)['num_examples'])
  bar.close()
  totals = np.zeros(num_classes + 1, np.int64)
  num_examples = 0
  for path, _ in jobs:
    with open(path + '.stats.json') as f:
      stats = json.load(f)
    totals += np.asarray(stats['class_pixels'], np.int64)
    num_examples += stats['num_examples']
  summary = {**manifest, 'split': split, 'num_classes': num_classes,
             'num_examples': num_examples, 'num_shards': num_shards,
             'class_pixels': totals[:num_classes].tolist(), 'ignored_pixels': int(totals[-1])}
  _write_json(os.path.join(output_dir, f'{split}-summary.json'), summary)
  return summary
