"""Metrics against hand-computed confusion matrices; flip and multi-scale inference."""
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import evaluation


def test_confusion_matrix_and_scores_by_hand():
  metrics = evaluation.SegmentationMetrics(4)
  labels = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
  predictions = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
  metrics.update(labels, predictions)
  # Rows: ground truth; the two 255 pixels are skipped whatever was predicted there.
  expected = np.array([[1, 1, 0, 0],
                       [0, 2, 0, 0],
                       [1, 0, 1, 0],
                       [0, 0, 0, 0]])
  np.testing.assert_array_equal(metrics.confusion_matrix(), expected)
  result = metrics.result()
  # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (3 + 2 - 2) = 2/3; class 2: 1 / 2;
  # class 3: absent from labels and predictions (the 3 was predicted on an ignored pixel) -> NaN.
  assert result['per_class_iou'][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
  assert math.isnan(result['per_class_iou'][3])
  assert result['miou'] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
  assert result['pixel_accuracy'] == pytest.approx(4 / 6)
  # Most confused, as shares of the true class's pixels: 0 -> 1 and 2 -> 0, half each.
  assert set(evaluation.most_confused(expected, ['c0', 'c1', 'c2', 'c3'])) == {
      ('c0', 'c1', 0.5), ('c2', 'c0', 0.5)}


def test_accumulates_over_batches_and_resets():
  metrics = evaluation.SegmentationMetrics(3)
  metrics.update(tf.constant([[0, 1]]), tf.constant([[0, 1]]))
  metrics.update(tf.constant([[2, 2]]), tf.constant([[1, 2]]))
  np.testing.assert_array_equal(metrics.confusion_matrix(),
                                [[1, 0, 0], [0, 1, 0], [0, 1, 1]])
  # A class predicted but never labelled has IoU 0 and counts in the mean.
  metrics.reset()
  metrics.update(tf.constant([[0, 0]]), tf.constant([[0, 2]]))
  result = metrics.result()
  assert result['per_class_iou'][0] == pytest.approx(0.5)
  assert math.isnan(result['per_class_iou'][1]) and result['per_class_iou'][2] == 0.0
  assert result['miou'] == pytest.approx(0.25)


def test_update_inside_tf_function():
  metrics = evaluation.SegmentationMetrics(2)
  update = tf.function(metrics.update)
  update(tf.constant([[1, 1, 0]]), tf.constant([[1, 0, 0]]))
  update(tf.constant([[1, 255, 0]]), tf.constant([[1, 1, 1]]))
  np.testing.assert_array_equal(metrics.confusion_matrix(), [[1, 1], [1, 2]])


def test_shape_mismatch_and_bad_labels_are_errors():
  metrics = evaluation.SegmentationMetrics(3)
  with pytest.raises(UserInputError, match='same shape'):
    metrics.update(np.zeros([2, 4], np.int32), np.zeros([2, 5], np.int32))
  with pytest.raises(tf.errors.InvalidArgumentError, match='labels must be in 0..2'):
    metrics.update(np.full([1, 2], 7), np.zeros([1, 2], np.int32))


class PointwiseModel(keras.Model):
  """A 1x1 convolution: equivariant to flips and (on constant regions) to resizing."""

  def __init__(self):
    super().__init__()
    self.conv = keras.layers.Conv2D(4, 1)

  def call(self, x, training=False):
    return self.conv(x)


class ColumnsModel(keras.Model):
  """Logits that grow with the column index: not flip-equivariant."""

  def call(self, x, training=False):
    width = tf.shape(x)[2]
    ramp = tf.cast(tf.range(width), tf.float32)[tf.newaxis, tf.newaxis, :, tf.newaxis]
    return tf.concat([x[..., :1] * 0 + ramp, x[..., :1] * 0], -1)


def test_flip_and_scales_are_exact_on_an_equivariant_model():
  model = PointwiseModel()
  images = tf.random.normal([2, 24, 20, 3])
  single = evaluation.predict_probabilities(model, images)
  np.testing.assert_allclose(single, tf.nn.softmax(model(images)), rtol=1e-6)
  flipped = evaluation.predict_probabilities(model, images, flip=True)
  np.testing.assert_allclose(flipped, single, rtol=1e-5, atol=1e-6)
  # A constant image resized to any scale and back is the same image: every scale agrees.
  constant = tf.ones([1, 24, 20, 3]) * tf.constant([0.3, -0.2, 0.5])
  multi = evaluation.predict_probabilities(model, constant, (0.5, 0.75, 1.0, 1.5), flip=True)
  np.testing.assert_allclose(multi, evaluation.predict_probabilities(model, constant),
                             rtol=1e-5, atol=1e-6)


def test_flip_and_scales_average_probabilities():
  model = ColumnsModel()
  images = tf.zeros([1, 4, 6, 3])
  flipped = evaluation.predict_probabilities(model, images, flip=True).numpy()
  straight = tf.nn.softmax(model(images)).numpy()
  expected = (straight + straight[:, :, ::-1]) / 2
  np.testing.assert_allclose(flipped, expected, rtol=1e-6)
  scales = (0.5, 1.0, 2.0)
  multi = evaluation.predict_probabilities(model, images, scales).numpy()
  manual = 0
  for scale in scales:
    logits = model(tf.zeros([1, round(4 * scale), round(6 * scale), 3]))
    manual += tf.nn.softmax(tf.image.resize(logits, [4, 6], method='bilinear')).numpy()
  np.testing.assert_allclose(multi, manual / 3, rtol=1e-5)


def test_evaluator_scores_a_dataset():
  model = PointwiseModel()
  images = tf.random.normal([3, 8, 8, 3])
  labels = tf.argmax(model(images), -1, output_type=tf.int32)  # a perfect model
  labels = tf.tensor_scatter_nd_update(labels, [[0, 0, 0]], [255])
  dataset = tf.data.Dataset.from_tensor_slices({
      'image': images, 'label': labels, 'filename': tf.constant(['a', 'b', 'c']),
      'height': tf.fill([3], 8), 'width': tf.fill([3], 8)}).batch(2)
  seen = []
  evaluator = evaluation.Evaluator(model, 4, flip=False)
  result = evaluator.run(dataset, on_batch=lambda batch, pred, conf: seen.append(pred.shape))
  assert result['pixel_accuracy'] == 1.0 and result['num_images'] == 3
  assert seen == [(2, 8, 8), (1, 8, 8)]
  assert evaluator.run(dataset, max_batches=1)['num_images'] == 2


def test_inference_options_reject_bad_scales():
  with pytest.raises(UserInputError, match='scales='):
    evaluation.Evaluator(PointwiseModel(), 4, scales=(1.0, -0.5))


def test_confusion_plot_for_few_and_many_classes(tmp_path):
  from PIL import Image
  from official.autodeeplab.utils import visualize
  sizes = {}
  for n in (19, 150):
    matrix = np.random.default_rng(n).integers(0, 100, [n, n])
    path = visualize.plot_confusion(matrix, [f'class{i}' for i in range(n)],
                                    str(tmp_path / f'{n}.png'))
    sizes[n] = Image.open(path).size
  assert sizes[150][0] > sizes[19][0] > 500  # the many-class plot is larger, not squeezed
  assert sorted(os.listdir(tmp_path)) == ['150.png', '19.png']  # nothing temporary left
