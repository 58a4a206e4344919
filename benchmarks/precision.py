r"""Mixed precision numerics through the real binaries: one JSON line.

  python benchmarks/precision.py [--precisions=float32,bfloat16,float16] [--retrain_steps=300] \
      [--search_steps=60] [--seed=0] [--float32_seeds=1]

For each precision, at the same seed: `tools.search` on the built-in synthetic dataset (the
quickstart's search, `--search_steps` bilevel steps, architecture steps from half-way) and
`tools.train` of the paper's genotype at the quickstart's retrain settings on converted synthetic
TFRecords (`--retrain_steps`). Reported: the final loss (the mean of the last 20 steps' losses,
from the progress lines, logged every step), its ratio to float32's, wall time, and how far each
decoded genotype is from float32's (`search/genotype.py` cells and paths compared: the differing
(input, op) choices and path levels). `--float32_seeds` more float32 runs at other seeds give the
yardstick: how far float32 moves from itself when only the seed changes. The speed and memory of
each precision are `benchmarks/device_check.py`'s.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_list('precisions', ['float32', 'bfloat16', 'float16'], 'Precisions to compare.')
flags.DEFINE_integer('retrain_steps', 300, 'Retrain steps per precision.')
flags.DEFINE_integer('search_steps', 60, 'Bilevel search steps per precision.')
flags.DEFINE_integer('last', 20, 'Final loss: the mean over this many last steps.')
flags.DEFINE_integer('seed', 0, 'Seed of every precision\'s runs.')
flags.DEFINE_integer('float32_seeds', 1, 'float32 runs at seeds seed+1.. (the seed-to-seed '
                     'spread).')
FLAGS = flags.FLAGS

_TRAIN_LOSS = re.compile(r'\[train\] step \d+/\d+ loss ([\d.]+|nan|inf)')
_SEARCH_LOSS = re.compile(r'\[search\] step \d+/\d+.*loss\(trainB\) ([\d.]+|nan|inf)')


def _tool(tool: str, *args: str) -> tuple[str, float]:
  start = time.time()
  result = subprocess.run([sys.executable, '-m', f'tools.{tool}', *args], cwd=ROOT, text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=ROOT))
  if result.returncode:
    raise SystemExit(f'tools.{tool} {" ".join(args)} failed: {result.stderr[-2000:]}')
  return result.stdout, time.time() - start


def _final_loss(stdout: str, pattern: re.Pattern) -> float:
  losses = [float(v) for v in pattern.findall(stdout)]
  return statistics.mean(losses[-FLAGS.last:])


def _distance(genotype: dict, reference: dict) -> dict:
  """Differing (input, op) choices of the cell and differing path levels."""
  cell = sum(a != b for block, ref in zip(genotype['cell'], reference['cell'])
             for a, b in zip(block, ref))
  path = sum(a != b for a, b in zip(genotype['path'], reference['path']))
  return {'cell_choices_differing': cell, 'path_levels_differing': path}


def main(argv):
  del argv
  work = tempfile.mkdtemp(prefix='precision_bench_')
  data = os.path.join(work, 'data')
  _tool('convert_dataset', '--dataset=synthetic', f'--output_dir={data}', '--split=train',
        '--num_examples=32', '--image_size=64', '--num_shards=2')
  report = {'retrain_steps': FLAGS.retrain_steps, 'search_steps': FLAGS.search_steps,
            'last': FLAGS.last, 'runs': {}}
  genotypes = {}
  runs = [(precision, FLAGS.seed) for precision in FLAGS.precisions]
  runs += [('float32', FLAGS.seed + i) for i in range(1, FLAGS.float32_seeds + 1)]
  for precision, seed in runs:
    name = precision if seed == FLAGS.seed else f'{precision}_seed{seed}'
    run = {}
    search_dir = os.path.join(work, f'search_{name}')
    stdout, run['search_s'] = _tool(
        'search', f'--workdir={search_dir}',
        '--gin_file=experiments/search/synthetic_quickstart.gin',
        f'--num_steps={FLAGS.search_steps}', '--log_every=1', f'--precision={precision}',
        f'--seed={seed}',
        f'--gin_bindings=search_config.total_steps = {FLAGS.search_steps}',
        f'--gin_bindings=search_config.arch_start_step = {FLAGS.search_steps // 2}')
    run['search_final_loss_trainB'] = round(_final_loss(stdout, _SEARCH_LOSS), 4)
    with open(os.path.join(search_dir, 'genotype.json')) as f:
      genotypes[name] = json.load(f)
    stdout, run['retrain_s'] = _tool(
        'train', f'--workdir={os.path.join(work, f"train_{name}")}', f'--seed={seed}',
        f'--tfrecord_dir={data}', '--genotype=paper',
        '--gin_file=experiments/retrain/synthetic.gin',
        f'--num_steps={FLAGS.retrain_steps}', '--gin_bindings=train_config.log_every = 1',
        f'--precision={precision}')
    run['retrain_final_loss'] = round(_final_loss(stdout, _TRAIN_LOSS), 4)
    report['runs'][name] = {k: round(v, 1) if k.endswith('_s') else v for k, v in run.items()}
  reference = report['runs'].get('float32')
  for name, run in report['runs'].items():
    if reference and name != 'float32':
      for key in ('search_final_loss_trainB', 'retrain_final_loss'):
        run[f'{key}_vs_float32'] = round(run[key] / reference[key], 3)
      run['genotype_vs_float32'] = _distance(genotypes[name], genotypes['float32'])
    run['genotype'] = genotypes[name]
  report['cpu_count'] = os.cpu_count()
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
