"""The exports beside the SavedModel, each a file its standard client loads as it is, written into
`{export_dir}/{model_name}/` with `labels.json` (class names, palette, dataset ids) and
`model.json` (what the model is and what it takes) beside it:

* LiteRT (`serving/tflite.py`): `{model_name}_{H}x{W}[_{quantize}].tflite`, with MediaPipe's
  image segmenter metadata when MediaPipe can describe the model (`tflite_metadata.py`);
* ONNX (`serving/onnx_export.py`): `{model_name}_{H}x{W}.onnx`, or `{model_name}.onnx` with
  dynamic height and width, for onnxruntime and TensorRT;
* Keras (`modeling/segmentation_model.py`): `{model_name}.keras`, raw pixel values in, logits
  out, for `keras.saving.load_model` and `model.fit`.
Every file is written whole or not at all.
"""
from __future__ import annotations

import os
import shutil

from official.autodeeplab import files
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.serving import export
from official.autodeeplab.serving import onnx_export
from official.autodeeplab.serving import tflite
from official.autodeeplab.serving import tflite_metadata


def _companions(directory: str, model, spec, description: dict, dataset_ids, **extra) -> None:
  """labels.json and model.json beside an export file."""
  files.write_json(os.path.join(directory, 'labels.json'), export.labels_document(
      model.num_classes, spec.class_names if spec else None, spec.palette if spec else None,
      dataset_ids))
  files.write_json(os.path.join(directory, 'model.json'), {**description, **extra})


def _class_names(model, spec) -> list[str]:
  """The labels the metadata and labels.json give: the dataset's, one per class the model
  predicts."""
  if spec is None:
    return [f'class_{i}' for i in range(model.num_classes)]
  if len(spec.class_names) != model.num_classes:
    raise UserInputError(f'the dataset names {len(spec.class_names)} classes, the model '
                         f'predicts {model.num_classes}: labels that do not match')
  return list(spec.class_names)


def write_tflite(model, directory: str, model_name: str, size: tuple[int, int], quantize: str,
                 calibration, image, spec, description: dict, dataset_ids,
                 version: str, log=print) -> str:
  """The LiteRT model, with MediaPipe's metadata when MediaPipe can describe it (else said in
  one line through `log`). Returns its path."""
  names = _class_names(model, spec)
  data = tflite.convert(model, *size, quantize, calibration, image)
  why_not = tflite_metadata.describable(image)
  if why_not is None:
    data = tflite_metadata.add_metadata(data, model_name, version, _description(description),
                                        names)
  else:
    log(f'[export] written without MediaPipe metadata: {why_not}')
  path = tflite.write_model(data, os.path.join(directory, tflite.model_file_name(
      model_name, *size, quantize)))
  _companions(directory, model, spec, description, dataset_ids, image=image.to_dict(),
              input_size=list(size), quantize=quantize, mediapipe_metadata=why_not is None)
  return path


def write_onnx(model, directory: str, model_name: str, size: tuple[int, int] | None, image,
               spec, description: dict, dataset_ids) -> str:
  """The ONNX model. Returns its path."""
  _class_names(model, spec)
  data = onnx_export.convert(model, image, size)
  path = files.write_bytes(os.path.join(directory, onnx_export.file_name(model_name, size)), data)
  _companions(directory, model, spec, description, dataset_ids, image=image.to_dict(),
              **onnx_export.describe(image, size))
  return path


def write_keras(model, directory: str, model_name: str, image, spec, description: dict,
                dataset_ids) -> str:
  """The `.keras` archive: the segmenter with the normalisation in front. Returns its path."""
  from official.autodeeplab.modeling import segmentation_model
  wrapped = segmentation_model.SegmentationModel(model, image.to_dict(),
                                                 _class_names(model, spec))
  wrapped.build((None, None, None, image.channels))
  path = os.path.join(directory, f'{model_name}.keras')
  tmp = f'{path}.tmp-{os.getpid()}.keras'
  os.makedirs(directory, exist_ok=True)
  try:
    wrapped.save(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp) if os.path.isfile(tmp) else shutil.rmtree(tmp)
  _companions(directory, model, spec, description, dataset_ids, image=image.to_dict(),
              format='keras', input='float32 [N, H, W, channels] raw values (normalised inside)',
              output='logits float32 [N, H, W, classes]')
  return path


def _description(description: dict) -> str:
  """The metadata's description: what the model is."""
  genotype = description.get('genotype', {})
  return (f'Auto-DeepLab semantic segmentation (F={description.get("filter_multiplier")}, '
          f'{description.get("num_classes")} classes, path {genotype.get("path")}), trained on '
          f'{description.get("dataset") or "unknown data"}; uint8 RGB in, per-class scores out')
