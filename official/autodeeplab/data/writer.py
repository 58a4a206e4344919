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
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from official.autodeeplab.errors import UserInputError
from official.autodeeplab import files


def shard_path(output_dir: str, split: str, index: int, num_shards: int) -> str:
  return os.path.join(output_dir, f'{split}-{index:05d}-of-{num_shards:05d}.tfrecord')


def shard_files(directory: str, split: str) -> list[str]:
  """The finished shards of a split, in order."""
  return sorted(p for p in glob.glob(os.path.join(directory, f'{split}-*-of-*.tfrecord'))
                if re.fullmatch(rf'{re.escape(split)}-\d{{5}}-of-\d{{5}}\.tfrecord',
                                os.path.basename(p)))


def _write_json(path: str, data: Any) -> None:
  files.write_text(path, json.dumps(data, indent=1) + '\n')


def _check_manifest(output_dir: str, manifest: dict) -> None:
  path = os.path.join(output_dir, 'dataset.json')
  if os.path.exists(path):
    with open(path) as f:
      existing = json.load(f)
    if existing != manifest:
      key = next(k for k in sorted(set(existing) | set(manifest))
                 if existing.get(k) != manifest.get(k))
      raise UserInputError(f'{output_dir}: already holds another dataset '
                           f'({existing.get("dataset")!r}; its dataset.json differs in {key!r}); '
                           'use another --output_dir')
  else:
    _write_json(path, manifest)


def examples_of_shard(index: int, num_shards: int, sources: Sequence,
                      make_example: Callable) -> Iterator[tuple[bytes, np.ndarray]]:
  """Shard `index` of a list of sources: sources[index::num_shards], each made into an Example."""
  for source in sources[index::num_shards]:
    yield make_example(source)


def _write_shard(job, shard_examples: Callable, num_classes: int) -> dict:
  """Writes one shard (temporary name, then rename); returns its stats."""
  import tensorflow as tf
  path, index, num_shards = job
  tmp = f'{path}.tmp-{os.getpid()}'
  counts = np.zeros(num_classes + 1, np.int64)
  num_examples = 0
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for serialized, example_counts in shard_examples(index, num_shards):
        writer.write(serialized)
        counts += example_counts
        num_examples += 1
    stats = {'num_examples': num_examples, 'class_pixels': counts.tolist()}
    _write_json(path + '.stats.json', stats)
    os.replace(tmp, path)
    return stats
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_split(shard_examples: Callable[[int, int], Iterable[tuple[bytes, np.ndarray]]],
                num_examples: int, output_dir: str, split: str, num_shards: int,
                num_classes: int, manifest: dict, num_workers: int = 1,
                progress: bool = True) -> dict:
  """Writes every shard of a split that is not finished yet and returns the split summary.

  Args:
    shard_examples: (shard index, num_shards) -> (serialized Example, [num_classes + 1] pixel
      counts, last = ignored) for every example of that shard; a picklable top-level function
      or functools.partial of one when num_workers > 1 (`examples_of_shard` for a list).
    num_examples: examples in the split (for the progress bar).
    output_dir: created if missing.
    split: split name used in the file names.
    num_shards: number of shards.
    num_classes: classes of the dataset.
    manifest: what this output directory holds (dataset name, options).
    num_workers: parallel processes (spawned, so TensorFlow is never forked).
    progress: show a progress bar on stderr.
  """
  if num_shards < 1:
    raise UserInputError(f'num_shards={num_shards}: must be positive')
  if not num_examples:
    raise UserInputError(f'split {split!r} has no examples')
  os.makedirs(output_dir, exist_ok=True)
  _check_manifest(output_dir, manifest)
  other = [p for p in shard_files(output_dir, split)
           if not p.endswith(f'-of-{num_shards:05d}.tfrecord')]
  if other:
    raise UserInputError(f'{other[0]}: {output_dir} holds split {split!r} with another number of '
                         'shards; use that --num_shards or another --output_dir')
  jobs = [(shard_path(output_dir, split, i, num_shards), i, num_shards) for i in range(num_shards)]
  done = [job for job in jobs
          if os.path.exists(job[0]) and os.path.exists(job[0] + '.stats.json')]
  pending = [job for job in jobs if job not in done]
  worker = functools.partial(_write_shard, shard_examples=shard_examples, num_classes=num_classes)
  from tqdm import tqdm
  bar = tqdm(total=num_examples, initial=sum(_stats(job[0])['num_examples'] for job in done),
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
  written = 0
  for path, _, _ in jobs:
    stats = _stats(path)
    totals += np.asarray(stats['class_pixels'], np.int64)
    written += stats['num_examples']
  summary = {**manifest, 'split': split, 'num_classes': num_classes,
             'num_examples': written, 'num_shards': num_shards,
             'class_pixels': totals[:num_classes].tolist(), 'ignored_pixels': int(totals[-1])}
  _write_json(os.path.join(output_dir, f'{split}-summary.json'), summary)
  return summary


def _stats(shard: str) -> dict:
  with open(shard + '.stats.json') as f:
    return json.load(f)
