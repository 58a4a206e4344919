"""Datasets: specs, converters to TFRecords and the tf.data input pipeline."""
