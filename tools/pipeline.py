r"""The quickstart: every stage that exists, end to end, on the built-in synthetic data.

  python -m tools.pipeline --workdir=runs/quickstart
"""
from __future__ import annotations

import os

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


if __name__ == '__main__':
  common.run(main)
