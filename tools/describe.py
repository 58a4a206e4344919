r"""Prints the search space's size and a genotype's cell and path.

  python -m tools.describe --space [--num_layers=12] [--num_blocks=5] [--json]
  python -m tools.describe --genotype=paper|PATH.json [--json]
"""
from __future__ import annotations

import json

from absl import flags

from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from tools import common

FLAGS = flags.FLAGS
flags.DEFINE_bool('space', False, 'Print the size of the search space.')
flags.DEFINE_integer('num_layers', space.NUM_LAYERS, 'Layers L of the trellis (for --space).')
flags.DEFINE_integer('num_blocks', space.NUM_BLOCKS, 'Blocks B per cell (for --space).')
flags.DEFINE_string('genotype', None, '"paper" or a genotype JSON file to describe.')
flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')


def main(argv):
  del argv
  if not FLAGS.space and not FLAGS.genotype:
    raise common.UserInputError('nothing to describe: pass --space and/or --genotype=paper|PATH')
  if FLAGS.num_layers < 1 or FLAGS.num_blocks < 1:
    raise common.UserInputError('--num_layers and --num_blocks must be positive')
  report = {}
  text = []
  if FLAGS.space:
    counts = space.describe_space(FLAGS.num_layers, FLAGS.num_blocks)
    report['space'] = counts
    text += [
        f'search space: L={counts["num_layers"]} layers, B={counts["num_blocks"]} blocks, '
        f'{counts["num_ops"]} ops, {counts["num_levels"]} levels (strides 4..32)',
        f'  ops: {", ".join(counts["primitives"])}',
        f'  cells:  {counts["num_cells"]:,} ({counts["num_cells"]:.2e})',
        f'  paths:  {counts["num_paths_first_stride4"]:,} with the first layer at stride 4; '
        f'{counts["num_paths_first_stride4_or_8"]:,} at stride 4 or 8',
        f'  joint:  {counts["joint_space_first_stride4"]:.2e} (cells x paths from stride 4)',
    ]
  if FLAGS.genotype:
    geno = genotype_lib.load(FLAGS.genotype)
    report['genotype'] = geno.to_dict()
    text.append(f'genotype {FLAGS.genotype}:')
    text.append(geno.describe())
  print(json.dumps(report) if FLAGS.json else '\n'.join(text))


if __name__ == '__main__':
  common.run(main)
