r"""Runs every benchmark (and, when present, the PyTorch yardstick beside it) and writes one report.

  python benchmarks/run_all.py [--output=benchmarks/results.json] [--skip_peer] [--quick]

Each benchmark is its own process (start-up times count from process start); the report holds
every JSON line under its name, the machine (CPU model, cores, memory) and the date, and the ratios
the issues set targets on (ours / PyTorch's, same machine, same run). `--quick` leaves out the
paper-size search steps (321 px: ours and PyTorch's, the largest in memory) and the LiteRT
export benchmark.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(os.path.dirname(ROOT), 'shared', 'peer', 'run.sh')
flags.DEFINE_string('output', os.path.join(ROOT, 'benchmarks', 'results.json'), 'Report path.')
flags.DEFINE_bool('skip_peer', False, 'Do not run the PyTorch yardstick.')
flags.DEFINE_bool('quick', False, 'Leave out the 321 px search step.')
FLAGS = flags.FLAGS


def ours(name: str, *args: str) -> list[str]:
  return [sys.executable, os.path.join(ROOT, 'benchmarks', f'{name}.py'), *args]


def runs(quick: bool, peer: bool) -> dict[str, list[str]]:
  jobs = {
      'train_S_513': ours('train_step', '--model_size=S', '--crop_size=513', '--batch_size=2',
                          '--steps=3'),
      'train_S_769': ours('train_step', '--model_size=S', '--crop_size=769', '--batch_size=2',
                          '--steps=3', '--infer_size=', '--noconv_rate'),
      'search_L12_F8_65': ours('search_step', '--num_layers=12', '--filter_multiplier=8',
                               '--crop_size=65', '--batch_size=2', '--steps=6'),
      'search_L12_F8_65_recompute': ours('search_step', '--num_layers=12',
                                         '--filter_multiplier=8', '--crop_size=65',
                                         '--batch_size=2', '--steps=6', '--recompute'),
      'search_L4_F8_65': ours('search_step', '--num_layers=4', '--filter_multiplier=8',
                              '--crop_size=65', '--batch_size=2', '--steps=3'),
      'input_pipeline': ours('input_pipeline'),
  }
  if not quick:
    jobs['tflite'] = ours('tflite')  # agreement and mIoU too when the quickstart has run
    jobs['latency_model'] = ours('latency_model', '--s_point')
    jobs['search_L12_F8_321_recompute'] = ours(
        'search_step', '--num_layers=12', '--filter_multiplier=8', '--crop_size=321',
        '--batch_size=2', '--steps=2', '--recompute', '--arch_only_gradients')
  if peer and not quick:  # its 321 px search is the slowest and largest job (performance.md)
    jobs['peer_search_L12_F8_321'] = [PEER, 'search', '--layers', '12', '--filter', '8',
                                      '--crop', '321', '--batch', '2', '--steps', '2']
  if peer:
    jobs.update({
        'peer_train_513': [PEER, 'train', '--filter', '20', '--crop', '513', '--batch', '2',
                           '--steps', '3'],
        'peer_train_769': [PEER, 'train', '--filter', '20', '--crop', '769', '--batch', '2',
                           '--steps', '3'],
        'peer_search_L12_F8_65': [PEER, 'search', '--layers', '12', '--filter', '8', '--crop',
                                  '65', '--batch', '2', '--steps', '3'],
    })
  return jobs


def machine() -> dict:
  model = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  import psutil
  return {'cpu': model, 'cores': os.cpu_count(),
          'memory_gb': round(psutil.virtual_memory().total / 2**30, 1),
          'python': platform.python_version(), 'platform': platform.platform()}


def ratios(results: dict) -> dict:
  """ours / PyTorch's for the figures the issues target."""
  out = {}
  pairs = [('train_step_S_513', 'train_S_513', 'train_step_s', 'peer_train_513', 'train_step_s'),
           ('train_step_S_769', 'train_S_769', 'train_step_s', 'peer_train_769', 'train_step_s'),
           ('infer_1024x2048', 'train_S_513', 'infer_s', 'peer_train_513', 'infer_s')]
  for name, a, a_key, b, b_key in pairs:
    if a_key in results.get(a, {}) and b_key in results.get(b, {}):
      out[name] = round(results[a][a_key] / results[b][b_key], 3)
  for name, a, b in (('search_step_L12_65', 'search_L12_F8_65', 'peer_search_L12_F8_65'),
                     ('search_step_L12_65_recompute', 'search_L12_F8_65_recompute',
                      'peer_search_L12_F8_65'),
                     ('search_step_L12_321', 'search_L12_F8_321_recompute',
                      'peer_search_L12_F8_321')):
    ours_search, peer_search = results.get(a, {}), results.get(b, {})
    if 'weight_step_s' in ours_search and 'weight_step_s' in peer_search:
      out[name] = round((ours_search['weight_step_s'] + ours_search['arch_step_s']) /
                        (peer_search['weight_step_s'] + peer_search['arch_step_s']), 3)
      out[name.replace('step', 'peak_rss')] = round(
          ours_search['peak_rss_gb'] / peer_search['peak_rss_gb'], 3)
  return out


def main(argv):
  del argv
  peer = not FLAGS.skip_peer and os.path.exists(PEER)
  results = {}
  for name, command in runs(FLAGS.quick, peer).items():
    print(f'[benchmark] {name}: {" ".join(command)}', file=sys.stderr, flush=True)
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [l for l in completed.stdout.splitlines() if l.startswith('{')]
    if completed.returncode or not lines:
      results[name] = {'error': (completed.stderr.strip().splitlines() or ['no output'])[-1]}
    else:
      results[name] = json.loads(lines[-1])
    print(json.dumps(results[name]), file=sys.stderr, flush=True)
  report = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': machine(),
            'results': results, 'ratios_vs_pytorch': ratios(results)}
  tmp = FLAGS.output + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(report, f, indent=1)
    f.write('\n')
  os.replace(tmp, FLAGS.output)
  print(json.dumps(report['ratios_vs_pytorch']))


if __name__ == '__main__':
  app.run(main)
