r"""The quickstart: every stage that exists, end to end, on the built-in synthetic data.

  python -m tools.pipeline --workdir=runs/quickstart
"""
from __future__ import annotations

import os
import subprocess
import sys

from absl import flags

from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from tools import common

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'runs/quickstart', 'Where every stage writes its outputs.')


def main(argv):
  del argv
  os.makedirs(FLAGS.workdir, exist_ok=True)
  counts = space.describe_space()
  print(f'[space] cells {counts["num_cells"]:.2e}, paths {counts["num_paths_first_stride4"]:,} '
        f'(first layer at stride 4) / {counts["num_paths_first_stride4_or_8"]:,} (stride 4 or 8)')
  paper = os.path.join(FLAGS.workdir, 'paper_genotype.json')
  genotype_lib.PAPER_GENOTYPE.to_json(paper)
  print(f'[genotype] the paper\'s architecture, written to {paper}:')
  print(genotype_lib.PAPER_GENOTYPE.describe())
  data_dir = os.path.join(FLAGS.workdir, 'data')
  print(f'[data] the synthetic dataset as sharded TFRecords in {data_dir}', flush=True)
  _stage('convert_dataset', '--dataset=synthetic', f'--output_dir={data_dir}', '--split=train',
         '--num_examples=32', '--image_size=96', '--num_shards=2')
  search_dir = os.path.join(FLAGS.workdir, 'search')
  print(f'[search] a small search on it in {search_dir} (resumes if rerun)', flush=True)
  _stage('search', f'--workdir={search_dir}', f'--tfrecord_dir={data_dir}',
         '--gin_file=experiments/search/synthetic_quickstart.gin')
  found_path = os.path.join(search_dir, 'genotype.json')
  found = genotype_lib.Genotype.from_json(found_path)
  print(f'[decode] genotype.json is valid: {found.num_blocks} blocks, path {list(found.path)}; '
        f'plot: {os.path.join(search_dir, "architecture.png")}')
  if found.path[0] == 0:
    print('[describe] the found architecture as an Auto-DeepLab-S retrain network:', flush=True)
    _stage('describe', f'--genotype={found_path}', '--model_size=S', '--num_classes=5',
           '--image_size=513,513')


def _stage(tool: str, *args: str) -> None:
  """Runs one binary exactly as a user would; a failing stage stops the pipeline."""
  result = subprocess.run([sys.executable, '-m', f'tools.{tool}', *args])
  if result.returncode:
    raise common.UserInputError(f'stage tools.{tool} failed with exit code {result.returncode}')


if __name__ == '__main__':
  common.run(main)
