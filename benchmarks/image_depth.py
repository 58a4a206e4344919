r"""Does a 16-bit copy of a dataset train as well as its 8-bit original? One JSON line.

  python benchmarks/image_depth.py [--count=48] [--size=64] [--steps=150] [--seed=0]

The same grey images (the folder dataset of `tests/data_trees.py`: a road band, a car box and a
sign disc) written as 8-bit PNGs and as 16-bit PNGs with every value x 257 (as microscopes write
them), each converted (`tools.convert_dataset`: 8-bit data normalised over [0, 255], 16-bit over
the train split's 0.5th-99.5th percentiles), retrained (`tools.train`,
experiments/retrain/synthetic.gin, same seed and steps) and evaluated on val (`tools.evaluate`).
Before 16-bit images were read as they are, the 16-bit copy trained on white images and scored
the majority class.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer('count', 48, 'Images of the dataset (a quarter in val).')
flags.DEFINE_integer('size', 64, 'Their side.')
flags.DEFINE_integer('steps', 150, 'Retraining steps.')
flags.DEFINE_integer('seed', 0, 'Retraining seed (the same for both).')
FLAGS = flags.FLAGS


def _tool(*args: str, cwd: str) -> str:
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
  if result.returncode:
    raise SystemExit(f'{" ".join(args)} failed: {result.stderr[-2000:]}')
  return result.stdout


def main(argv):
  del argv
  from tests import data_trees
  work = tempfile.mkdtemp(prefix='image_depth_')
  os.symlink(os.path.join(ROOT, 'experiments'), os.path.join(work, 'experiments'))
  report = {'benchmark': 'image_depth', 'cpu': platform.processor() or platform.machine(),
            'count': FLAGS.count, 'size': FLAGS.size, 'steps': FLAGS.steps, 'seed': FLAGS.seed}
  for kind in ('grey8', 'grey16'):
    data_trees.folder(os.path.join(work, kind), 'flat', count=FLAGS.count,
                      size=(FLAGS.size, FLAGS.size), image_kind=kind)
    start = time.time()
    for split in ('train', 'val'):
      _tool('tools.convert_dataset', '--dataset=folder', f'--data_dir={kind}', f'--split={split}',
            f'--output_dir={kind}_records', '--val_fraction=0.25', cwd=work)
    _tool('tools.train', f'--workdir={kind}_run', f'--tfrecord_dir={kind}_records',
          '--gin_file=experiments/retrain/synthetic.gin', f'--num_steps={FLAGS.steps}',
          f'--seed={FLAGS.seed}', cwd=work)
    _tool('tools.evaluate', f'--workdir={kind}_run', f'--tfrecord_dir={kind}_records', cwd=work)
    with open(os.path.join(work, f'{kind}_run', 'eval.json')) as f:
      evaluated = json.load(f)
    with open(os.path.join(work, f'{kind}_records', 'dataset.json')) as f:
      value_range = json.load(f)['image']['value_range']
    report[kind] = {'miou': round(100 * evaluated['miou'], 2), 'value_range': value_range,
                    'seconds': round(time.time() - start, 1)}
  report['miou_difference'] = round(report['grey16']['miou'] - report['grey8']['miou'], 2)
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
