r"""The quickstart: every stage end to end on the built-in synthetic dataset.

  python -m tools.pipeline [--workdir=runs/quickstart] [--fast]
  python -m tools.pipeline --data_dir=my_data --workdir=runs/mine [--fast]    # your own data

convert (train + val TFRecords) -> search (bilevel, L=4) -> decode (genotype.json + plot) ->
retrain the found genotype (experiments/retrain/synthetic.gin) -> evaluate (eval.json + overlays)
-> export (SavedModel in TF Serving's layout) -> predict one image through the exported model.
Each stage is the stage's own binary run as a user would run it, and is skipped when its output
is complete, so a rerun resumes where an interrupted one stopped. `--fast` shrinks every stage
(for tests). With `--data_dir` (a folder with dataset.json, images/, labels/: converters/folder.py)
every stage runs on that dataset instead: experiments/search/custom.gin and
experiments/retrain/custom.gin (the paper's settings, for an accelerator), or with `--fast` the
quickstart's small settings (a few CPU minutes that still learn), and a few val images are
predicted.
"""
from __future__ import annotations

import json
import os
import shlex
import time

from absl import flags

from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab.search import space
from . import common

_stage = common.run_stage

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'runs/quickstart', 'Where every stage writes its outputs.')
flags.DEFINE_bool('fast', False, 'Smallest configuration of every stage (for tests).')
flags.DEFINE_string('data_dir', None, 'Your own dataset folder (dataset.json, images/, labels/) '
                    'instead of the synthetic one.')

MODEL_NAME = 'autodeeplab'


def main(argv):
  del argv
  start = time.time()
  work = FLAGS.workdir
  os.makedirs(work, exist_ok=True)
  paths = {name: os.path.join(work, name) for name in
           ('data', 'search', 'train', 'predictions', 'serving', 'predicted')}
  counts = space.describe_space()
  print(f'[space] cells {counts["num_cells"]:.2e}, paths {counts["num_paths_first_stride4"]:,} '
        f'(first layer at stride 4) / {counts["num_paths_first_stride4_or_8"]:,} (stride 4 or 8)',
        flush=True)

  # 1. Data: sharded TFRecords (train for search and retrain, val): the synthetic dataset, or the
  # user's folder.
  examples = {'train': 16 if FLAGS.fast else 48, 'val': 8 if FLAGS.fast else 16}
  for split, count in examples.items():
    if _stage_done(os.path.join(paths['data'], f'{split}-summary.json'), f'convert {split}'):
      continue
    source = (['--dataset=folder', f'--data_dir={FLAGS.data_dir}'] if FLAGS.data_dir else
              ['--dataset=synthetic', f'--num_examples={count}', '--image_size=96'])
    _stage('convert_dataset', *source, f'--output_dir={paths["data"]}', f'--split={split}',
           '--num_shards=2')

  # 2-3. Search and decode: genotype.json, arch.npz and architecture.png at the end.
  genotype_path = os.path.join(paths['search'], 'genotype.json')
  own = FLAGS.data_dir and not FLAGS.fast  # the user's data at the paper's settings
  if not _stage_done(genotype_path, 'search'):
    _stage('search', f'--workdir={paths["search"]}', f'--tfrecord_dir={paths["data"]}',
           f'--gin_file=experiments/search/{"custom" if own else "synthetic_quickstart"}.gin',
           *(['--num_steps=4', '--gin_bindings=search_config.arch_start_step = 2',
              '--gin_bindings=build_supernet.num_layers = 3']
             if FLAGS.fast and not FLAGS.data_dir else []))
  found = genotype_lib.Genotype.from_json(genotype_path)
  print(f'[decode] {genotype_path}: {found.num_blocks} blocks, path {list(found.path)} '
        f'(strides {list(found.strides())}); plot {os.path.join(paths["search"], "architecture.png")}',
        flush=True)

  # 4. Retrain the found genotype from scratch (whatever its path: level 0 or 1 first).
  _stage('train', f'--workdir={paths["train"]}', f'--tfrecord_dir={paths["data"]}',
         f'--genotype={genotype_path}',
         f'--gin_file=experiments/retrain/{"custom" if own else "synthetic"}.gin',
         *(['--num_steps=6'] if FLAGS.fast and not FLAGS.data_dir else []))

  # 5. Evaluate on val: eval.json and overlays.
  eval_path = os.path.join(paths['train'], 'eval.json')
  if not common.eval_is_current(eval_path, paths['train']):
    _stage('evaluate', f'--workdir={paths["train"]}', f'--tfrecord_dir={paths["data"]}',
           '--split=val', f'--save_predictions={paths["predictions"]}')
  else:
    print(f'[evaluate] {eval_path} is up to date: skipped', flush=True)
  with open(eval_path) as f:
    report = json.load(f)

  # 6. Export the SavedModel (TF Serving layout), 7. predict an image through it.
  model_dir = os.path.join(paths['serving'], MODEL_NAME)
  if not _stage_done(os.path.join(model_dir, '1', 'saved_model.pb'), 'export'):
    _stage('export', f'--workdir={paths["train"]}', f'--export_dir={paths["serving"]}',
           f'--model_name={MODEL_NAME}', '--version=1')
  images = _val_images(FLAGS.data_dir) if FLAGS.data_dir else [_new_image(work)]
  if not _stage_done(os.path.join(paths['predicted'], _stem(images[-1]) + '_overlay.png'),
                     'predict'):
    _stage('predict', f'--saved_model={model_dir}', f'--input={",".join(images)}',
           f'--output_dir={paths["predicted"]}')

  chance = _majority_class_miou(paths['data'])
  failure = learned_nothing(report, paths['data'], chance)
  headline = ('[done, but the model learned (almost) nothing: see the end]' if failure else
              '[done]')
  print(f'\n{headline} in {time.time() - start:.0f} s. Artefacts under {work}/:\n'
        f'  data/                      {FLAGS.data_dir or "synthetic"} train/val TFRecords '
        '(+ split summaries, dataset.json)\n'
        f'  search/genotype.json       the found architecture; search/architecture.png its plot;\n'
        f'  search/arch.npz            alpha, beta and transition probabilities\n'
        f'  train/checkpoints/         the retrained model; train/model.json what it is\n'
        f'  train/eval.json            mIoU {100 * report["miou"]:.1f} on val '
        f'(predicting the majority class: {100 * chance:.1f}), pixel accuracy '
        f'{100 * report["pixel_accuracy"]:.1f}\n'
        f'  predictions/               val masks and overlays\n'
        f'  {f"serving/{MODEL_NAME}/1/":<27}the SavedModel (TF Serving layout)\n'
        f'  predicted/                 {", ".join(map(os.path.basename, images))} segmented by '
        'the exported model\n'
        f'Next:\n'
        f'  {common.venv_command("tensorboard")} --logdir {shlex.quote(work)}   '
        '(search and retrain curves, predicted masks)\n'
        f'  {common.serving_command(model_dir, MODEL_NAME)}\n'
        f'  real data: README.md, "The stages" (details in docs/guide.md)', flush=True)
  if failure:
    print(f'WARNING: the model learned (almost) nothing: {failure}', flush=True)


def _stage_done(output: str, name: str) -> bool:
  if os.path.exists(output):
    print(f'[{name}] {output} exists: skipped', flush=True)
    return True
  return False


def _new_image(work: str) -> str:
  """A synthetic image the model has not seen (another seed), as a PNG file to predict on."""
  path = os.path.join(work, 'new_image.png')
  if not os.path.exists(path):
    from official.autodeeplab.data.converters import synthetic
    from official.autodeeplab.utils import visualize
    image, _ = synthetic.make_one(0, 96, 128, 5, seed=12345)
    visualize.save_png(image, path)
  return path


def _val_images(data_dir: str, count: int = 3) -> list[str]:
  """A few images of the folder's val split, to predict through the export."""
  from official.autodeeplab.data.converters import folder
  splits = folder.list_splits(data_dir)
  return [record.image_path for record in splits.get('val', [])[:count]]


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


LEARNED_MARGIN = 0.05  # mIoU above predicting the majority class that counts as learning


def learned_nothing(report: dict, data_dir: str, chance: float) -> str | None:
  """Why the evaluated model shows no learning, or None: its val mIoU within LEARNED_MARGIN of
  predicting the majority class, or a class present in val never predicted right (IoU 0); with
  what to check."""
  with open(os.path.join(data_dir, 'val-summary.json')) as f:
    present = [pixels > 0 for pixels in json.load(f)['class_pixels']]
  ious = list(report['per_class_iou'].items())
  missed = [name for (name, iou), here in zip(ious, present) if here and not iou]
  if report['miou'] >= chance + LEARNED_MARGIN and not missed:
    return None
  why = (f'val mIoU {100 * report["miou"]:.1f} is within {100 * LEARNED_MARGIN:.0f} points of '
         f'predicting the majority class ({100 * chance:.1f})'
         if report['miou'] < chance + LEARNED_MARGIN else
         f'class(es) {", ".join(missed)} present in val have IoU 0')
  return (f'{why}. Check that the images read right (the converter\'s summary, '
          'predictions/*_overlay.png), that masks and images pair up, and train longer '
          '(more --num_steps, or without --fast).')


def _majority_class_miou(data_dir: str) -> float:
  """mIoU of predicting the most frequent class everywhere on val: the chance level to beat."""
  with open(os.path.join(data_dir, 'val-summary.json')) as f:
    pixels = json.load(f)['class_pixels']
  return max(pixels) / sum(pixels) / sum(1 for p in pixels if p)


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
