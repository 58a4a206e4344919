r"""The one command to run on your accelerator: search, retrain and inference speed and memory per
precision, as one JSON line (at the start of a line on stdout).

  python benchmarks/device_check.py [--budget_s=480]

On a GPU (the paper's settings):
* the search: L=12, F=8, 321 px crops, batch 2, with and without `recompute`: weight and
  architecture step times and peak device memory, in float32 and float16;
* the retrain: Auto-DeepLab-S at 769 px, global batch 8 (halved until it fits; the JSON says
  which batch ran), images/s and peak memory, in float32 and float16, and one 1024x2048
  inference.
On a CPU-only machine a reduced set (65 px search, S at 513 px batch 2, float32 and bfloat16) runs
instead, with `"device": "cpu"`.

Each measurement is one run of `benchmarks/search_step.py` or `benchmarks/train_step.py` in its
own process (a fresh allocator, so each peak is its own); one that fails (out of memory) is
recorded with its error's last line. Runs that would start after `--budget_s` are skipped and
listed. The GPU figures come from users: no machine of this project runs TensorFlow on a GPU.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from official.autodeeplab.utils import runtime as runtime_lib  # noqa: E402

flags.DEFINE_integer('budget_s', 480, 'Skip runs that would start after this many seconds.')
flags.DEFINE_string('device', None, 'cpu or gpu (default: found as tools.train finds it).')
FLAGS = flags.FLAGS

# (name, benchmark, flags) per device; each is run once per precision.
PLANS = {
    'gpu': {
        'precisions': ('float32', 'float16'),
        'search': ['--num_layers=12', '--filter_multiplier=8', '--crop_size=321',
                   '--batch_size=2', '--steps=3'],
        'retrain': ['--model_size=S', '--crop_size=769', '--steps=5',
                    '--infer_size=1024,2048', '--conv_rate=false'],
        'retrain_batches': (8, 4, 2, 1),
    },
    'cpu': {
        'precisions': ('float32', 'bfloat16'),
        'search': ['--num_layers=12', '--filter_multiplier=8', '--crop_size=65', '--batch_size=2',
                   '--steps=2'],
        'retrain': ['--model_size=S', '--crop_size=513', '--steps=2', '--infer_size=',
                    '--conv_rate=false'],
        'retrain_batches': (2,),
    },
}


def _run(script: str, args: list[str]) -> dict:
  """One benchmark process: its JSON line, or {'error': its last stderr line}."""
  result = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', script), *args],
                          capture_output=True, text=True, cwd=ROOT)
  for line in reversed(result.stdout.splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  return {'error': (lines[-1] if lines else f'exit code {result.returncode}')[:300]}


def _out_of_memory(report: dict) -> bool:
  return 'error' in report and any(word in report['error'].lower()
                                   for word in ('resourceexhausted', 'out of memory', 'oom'))


def main(argv):
  del argv
  start = time.time()
  device = FLAGS.device or runtime_lib.probe_device()
  if device not in PLANS:
    raise SystemExit(f'--device={device}: expected one of {", ".join(PLANS)} (for a TPU, train '
                     'with --strategy=tpu --precision=bfloat16)')
  plan = PLANS[device]
  report = {'device': device, 'cpu_count': os.cpu_count(), 'runs': {}, 'skipped': []}
  for precision in plan['precisions']:
    runs = [(f'search_{precision}{"_recompute" if recompute else ""}', 'search_step.py',
             plan['search'] + [f'--precision={precision}'] + (['--recompute'] if recompute else []))
            for recompute in (False, True)]
    for name, script, args in runs:
      if time.time() - start > FLAGS.budget_s:
        report['skipped'].append(name)
        continue
      report['runs'][name] = _run(script, args)
    name = f'retrain_{precision}'
    if time.time() - start > FLAGS.budget_s:
      report['skipped'].append(name)
      continue
    for batch in plan['retrain_batches']:  # the largest global batch that fits
      result = _run('train_step.py', plan['retrain'] + [f'--precision={precision}',
                                                         f'--batch_size={batch}'])
      if not _out_of_memory(result):
        break
    result['batch_size_note'] = ('as asked' if batch == plan['retrain_batches'][0] else
                                 f'{plan["retrain_batches"][0]} did not fit; {batch} ran')
    report['runs'][name] = result
  report['total_s'] = round(time.time() - start, 1)
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
