"""The retrain network: shapes for several genotypes, drop path, saving, sync BN, sizes."""
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import backbone
from official.autodeeplab.modeling import cell as cell_lib
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from tests.conftest import ROOT

# Every op, including the stride-2 variants (first cell going down, later up and down again).
ALL_OPS = Genotype(cell=(((0, 'skip'), (1, 'max_pool_3x3')),
                         ((0, 'avg_pool_3x3'), (2, 'atrous_3x3')),
                         ((1, 'atrous_5x5'), (3, 'separable_5x5_2')),
                         ((0, 'separable_3x3_2'), (1, 'skip'))),
                   path=(0, 1, 2, 1, 0))
GENOTYPES = {
    'paper': PAPER_GENOTYPE,
    'all_ops_up_down': ALL_OPS,
    'deep_end': Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(0, 1, 2, 3, 3)),
    'level_1_first': Genotype(cell=PAPER_GENOTYPE.cell[:3], path=(1, 2, 1, 0)),
}


@pytest.mark.parametrize('name', sorted(GENOTYPES))
@pytest.mark.parametrize('size', [(65, 65), (48, 80)])
def test_output_shape_equals_input_shape(name, size):
  model = segmenter.build_segmenter(GENOTYPES[name], 7, filter_multiplier=2)
  images = tf.random.normal([2, *size, 3])
  logits = model(images, training=False)
  assert logits.shape == (2, *size, 7)
  assert np.isfinite(logits.numpy()).all()


def test_low_level_features_come_from_the_third_cell_of_the_paper_path():
  assert backbone.low_level_cell(PAPER_GENOTYPE.path) == 2
  assert backbone.low_level_cell((0, 1, 0)) == 0


def test_drop_path_identity_at_inference_scaled_in_training():
  layer = cell_lib.DropPath(layer_ratio=1.0, keep_prob=0.5)
  x = tf.ones([64, 2, 2, 3])
  np.testing.assert_array_equal(layer(x, training=False), x)
  np.testing.assert_array_equal(layer(x, training=True), x)  # progress 0: keep 1
  layer.progress.assign(1.0)
  assert float(layer.current_keep_prob()) == pytest.approx(0.5)
  y = layer(x, training=True).numpy()
  per_example = y.reshape(64, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}          # dropped, or kept and scaled 1/keep
  assert (per_example == per_example[:, :1]).all()          # whole examples at a time
  assert 10 < (per_example[:, 0] == 0).sum() < 54
  half = cell_lib.DropPath(layer_ratio=0.5, keep_prob=0.5)
  half.progress.assign(1.0)
  assert float(half.current_keep_prob()) == pytest.approx(0.75)  # scaled by (i + 1) / cells


def test_set_training_progress_reaches_every_drop_path():
  model = segmenter.build_segmenter(GENOTYPES['deep_end'], 3, filter_multiplier=2,
                                    drop_path_keep_prob=0.7)
  model.set_training_progress(0.5)
  drops = [l for l in model._flatten_layers() if isinstance(l, cell_lib.DropPath)]
  assert drops and all(float(d.progress) == 0.5 for d in drops)


def test_every_variable_is_checkpointed(tmp_path):
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 5, filter_multiplier=2)
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
  saved = [n for n, _ in tf.train.list_variables(path) if n.endswith('VARIABLE_VALUE')]
  assert len(saved) == len(model.variables)


def test_keras_save_load_round_trip(tmp_path):
  model = segmenter.build_segmenter(ALL_OPS, 4, filter_multiplier=2, drop_path_keep_prob=0.8)
  images = tf.random.normal([1, 40, 40, 3])
  expected = model(images, training=False)
  model.save(tmp_path / 'model.keras')
  loaded = keras.saving.load_model(tmp_path / 'model.keras')
  np.testing.assert_allclose(loaded(images, training=False), expected, atol=1e-5)
  assert len(loaded.variables) == len(model.variables)


def test_weight_decay_excludes_batch_norm():
  model = segmenter.build_segmenter(GENOTYPES['deep_end'], 3, filter_multiplier=2,
                                    weight_decay=4e-5)
  model(tf.zeros([1, 33, 33, 3]), training=False)
  kernels = [v for v in model.trainable_variables if 'kernel' in v.path]
  assert len(model.losses) == len(kernels) > 0
  with_decay = segmenter.build_segmenter(GENOTYPES['deep_end'], 3, filter_multiplier=2,
                                         weight_decay=0.0)
  with_decay(tf.zeros([1, 33, 33, 3]))
  assert not with_decay.losses


@pytest.mark.slow
def test_synchronized_batch_norm_builds_under_mirrored_strategy():
  # In a fresh process: a second MirroredStrategy in the test process can break collectives.
  code = (
      'import tensorflow as tf\n'
      'from official.autodeeplab.modeling import segmenter\n'
      'from official.autodeeplab.search.genotype import PAPER_GENOTYPE\n'
      'strategy = tf.distribute.MirroredStrategy(["/cpu:0"])\n'
      'with strategy.scope():\n'
      '  model = segmenter.build_segmenter(PAPER_GENOTYPE, 3, filter_multiplier=2,\n'
      '                                    synchronized=True)\n'
      'bns = [l for l in model._flatten_layers() if "batch_norm" in l.name]\n'
      'assert bns and all(l.synchronized for l in bns)\n'
      '@tf.function\n'
      'def step(x):\n'
      '  return strategy.run(lambda x: model(x, training=True), args=(x,))\n'
      'out = step(tf.zeros([2, 33, 33, 3]))\n'
      'print("ok", out.shape)\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={'PYTHONPATH': ROOT,
                                                       'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'ok (2, 33, 33, 3)' in result.stdout


@pytest.mark.parametrize('kwargs,message', [
    ({'model_size': 'XL'}, 'model_size=XL'),
    ({'model_size': None, 'filter_multiplier': 0}, 'filter_multiplier=0'),
])
def test_bad_sizes(kwargs, message):
  with pytest.raises(UserInputError, match=message):
    segmenter.build_segmenter(PAPER_GENOTYPE, 19, **kwargs)


def test_a_path_starting_at_level_1_takes_low_level_features_from_the_stem():
  # Google's nas_network accepts backbone[0] == 1 (the first cell strides); the decoder then reads
  # the stem's stride-4 output, as nas_pnasnet's 'Stem' end point.
  geno = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(1, 0, 1))
  assert backbone.low_level_cell(geno.path) is None
  model = segmenter.build_segmenter(geno, 3, filter_multiplier=2)
  assert model.backbone.low_level_channels() == backbone.STEM_FILTERS[-1]
  assert model.backbone.cells[0].stride == 2
  assert model(tf.zeros([1, 37, 45, 3])).shape == (1, 37, 45, 3)


def test_backbone_ends_with_relu_before_aspp():
  model = segmenter.build_segmenter(GENOTYPES['deep_end'], 3, filter_multiplier=2)
  features, _ = model.backbone(tf.random.normal([2, 40, 40, 3]), training=True)
  assert float(tf.reduce_min(features)) >= 0.0


def test_l2_gradient_is_the_papers_weight_decay():
  # TF-slim's l2_regularizer(4e-5) in Google's code: d/dw = 4e-5 * w (PyTorch's weight_decay too).
  model = segmenter.build_segmenter(GENOTYPES['deep_end'], 3, filter_multiplier=2,
                                    weight_decay=4e-5)
  kernel = model.decoder.classifier.kernel
  with tf.GradientTape() as tape:
    penalty = tf.add_n(model.losses)
  grad = tape.gradient(penalty, kernel)
  np.testing.assert_allclose(grad, 4e-5 * kernel.numpy(), rtol=1e-5)


def test_fused_batch_norm_matches_keras():
  from official.autodeeplab.modeling import batch_norm
  x = tf.random.normal([4, 6, 5, 3]) * 3 + 1
  fused = batch_norm.BatchNormalization(momentum=0.9, epsilon=1e-3)
  plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
  for layer in (fused, plain):
    layer.build(x.shape)
    layer.gamma.assign([1.5, 0.5, 2.0])
    layer.beta.assign([0.1, -0.2, 0.3])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    outputs = [layer(x, training=True) for layer in (fused, plain)]
  np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)
  np.testing.assert_allclose(tape.gradient(outputs[0], x), tape.gradient(outputs[1], x), atol=1e-4)
  np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, atol=1e-5)
  # Moving variance from the unbiased batch variance (TF-slim's fused batch norm), Keras' biased.
  n = 4 * 6 * 5
  np.testing.assert_allclose((fused.moving_variance.numpy() - 0.9) * (n - 1),
                             (plain.moving_variance.numpy() - 0.9) * n, rtol=1e-4)
  plain.moving_variance.assign(fused.moving_variance)
  np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-4)
