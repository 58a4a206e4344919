r"""Exports a trained segmenter as a SavedModel in TF Serving's layout.

  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/serving \
      [--model_name=autodeeplab] [--version=N] [--checkpoint=PREFIX] [--scales=... --flip]
  python -m tools.export --genotype=paper --model_size=S --num_classes=19 --dataset=cityscapes \
      --export_dir=runs/serving [--checkpoint=PREFIX]      # no workdir: given (or fresh) weights

Writes `{export_dir}/{model_name}/{version}/` (version: the next integer unless given) with the
`serving_default` (encoded image bytes) and `predict_tensor` signatures, `assets.extra/labels.json`,
`model.json` and TF Serving warm-up requests; see official/autodeeplab/serving/export.py.
"""
from __future__ import annotations


from absl import flags

from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from tools import common

FLAGS = flags.FLAGS
# Without --workdir, the model comes from --genotype, --model_size / --filter_multiplier and
# --num_classes.
common.define_flags('workdir', 'checkpoint', 'model_size', 'filter_multiplier', 'dataset',
                    'model_name', genotype=None, num_classes=None, scales=['1'], flip=False)
flags.DEFINE_string('export_dir', None, 'Model server base path.')
flags.DEFINE_integer('version', None, 'Version to write (default: the next integer).')
flags.mark_flag_as_required('export_dir')


def _model_from_flags():
  """(model, description) from --genotype/--model_size/--num_classes, restored from
  --checkpoint when given."""
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.training import run_state
  if FLAGS.genotype is None or FLAGS.num_classes is None:
    raise common.UserInputError('pass --workdir, or --genotype, --model_size (or '
                                '--filter_multiplier) and --num_classes')
  geno = genotype_lib.load(FLAGS.genotype)
  multiplier = sizes.resolve_filter_multiplier(FLAGS.model_size, FLAGS.filter_multiplier)
  model = segmenter.build_segmenter(geno, FLAGS.num_classes, filter_multiplier=multiplier)
  if FLAGS.checkpoint:
    import tensorflow as tf
    if not tf.io.gfile.exists(FLAGS.checkpoint + '.index'):
      raise common.UserInputError(f'--checkpoint={FLAGS.checkpoint}: no such checkpoint')
    run_state.restore(tf.train.Checkpoint(model=model), FLAGS.checkpoint,
                      f'--checkpoint={FLAGS.checkpoint}', partial=True)
  return model, run_state.model_description(geno, multiplier, FLAGS.num_classes, FLAGS.dataset)


def main(argv):
  del argv
  scales = common.parse_scales(FLAGS.scales)
  if FLAGS.version is not None and FLAGS.version < 1:
    raise common.UserInputError(f'--version={FLAGS.version}: must be a positive integer')
  from official.autodeeplab.data import datasets
  from official.autodeeplab.serving import export
  from official.autodeeplab.training import run_state
  if FLAGS.workdir:
    if FLAGS.genotype or FLAGS.model_size or FLAGS.filter_multiplier or FLAGS.num_classes:
      raise common.UserInputError('--workdir describes the model (model.json): leave out '
                                  '--genotype/--model_size/--filter_multiplier/--num_classes')
    model, description, checkpoint = run_state.load_trained_model(FLAGS.workdir,
                                                                  FLAGS.checkpoint)
  else:
    (model, description), checkpoint = _model_from_flags(), FLAGS.checkpoint
  dataset = FLAGS.dataset or description.get('dataset')
  spec = None
  if dataset:
    spec = (datasets.synthetic_spec(model.num_classes) if dataset == 'synthetic'
            else datasets.get_spec(dataset))
    if spec.num_classes != model.num_classes:
      raise common.UserInputError(f'--dataset={dataset} has {spec.num_classes} classes, the '
                                  f'model predicts {model.num_classes}')
  description = {**description, 'dataset': dataset, 'checkpoint': checkpoint}
  path = export.export(model, FLAGS.export_dir, FLAGS.model_name, FLAGS.version,
                       spec.class_names if spec else None, spec.palette if spec else None,
                       scales, FLAGS.flip, description)
  print(f'[export] {checkpoint or "freshly initialised weights"} -> {path}\n'
        f'  serve:   docker run -p 8501:8501 -v "$(realpath {FLAGS.export_dir})/'
        f'{FLAGS.model_name}:/models/{FLAGS.model_name}" -e MODEL_NAME={FLAGS.model_name} '
        'tensorflow/serving\n'
        f'  predict: python -m tools.predict --saved_model={path} --input=IMAGES '
        '--output_dir=predictions')


if __name__ == '__main__':
  common.run(main)
