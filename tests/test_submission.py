"""Benchmark-server submissions: masks in the dataset's own label ids, scored by the official
Cityscapes evaluation (cityscapesScripts), give the mIoU of eval.json; the export carries the
inverse map so the predict tool writes the same files."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import convert
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import run_description
from tests import data_trees
from tests.conftest import randomize_batch_norm, run_tool

GENOTYPE = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(0, 1))


def official_miou(ground_truth_dir: str, prediction_dir: str) -> float:
  """cityscapesScripts' pixel-level evaluation of every gtFine val image against the prediction
  it finds for it (`*{city}_{seq}_{frame}*.png` under prediction_dir)."""
  np.in1d = np.isin  # removed from NumPy 2.4; cityscapesScripts 2.3 still calls it
  from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval
  args = cs_eval.args
  args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
  args.predictionPath, args.predictionWalk = prediction_dir, None
  ground_truth = sorted(os.path.join(root, n) for root, _, names in os.walk(ground_truth_dir)
                        for n in names if n.endswith('_gtFine_labelIds.png'))
  predictions = [cs_eval.getPrediction(args, path) for path in ground_truth]
  results = cs_eval.evaluateImgLists(predictions, ground_truth, args)
  return results['averageScoreClasses']


@pytest.mark.slow
def test_cityscapes_submission_scores_as_eval_json(tmp_path):
  raw = tmp_path / 'cityscapes'
  data_trees.cityscapes(str(raw), split='val', size=(40, 48), seed=3)
  records = str(tmp_path / 'records')
  convert.convert('cityscapes', records, 'val', 1, data_dir=str(raw), progress=False)
  workdir = str(tmp_path / 'workdir')
  tf.keras.utils.set_random_seed(4)
  model = segmenter.build_segmenter(GENOTYPE, 19, filter_multiplier=2)
  randomize_batch_norm(model)
  tf.train.Checkpoint(model=model).save(os.path.join(workdir, checkpoints.CHECKPOINT_DIR, 'ckpt'))
  run_description.check_or_write_model(workdir, run_description.model_description(GENOTYPE, 2, 19,
                                                                      'cityscapes'))
  submission = str(tmp_path / 'submission')
  result = run_tool('evaluate', f'--workdir={workdir}', f'--tfrecord_dir={records}',
                    '--split=val', f'--save_predictions={submission}', '--prediction_ids=dataset')
  assert result.returncode == 0, result.stderr[-3000:]
  files = sorted(os.listdir(submission))
  assert files == ['aachen_000000_000019.png', 'aachen_000001_000019.png',
                   'bonn_000000_000019.png', 'bonn_000001_000019.png']  # nothing else there
  with open(os.path.join(workdir, 'eval.json')) as f:
    report = json.load(f)
  assert official_miou(str(raw / 'gtFine' / 'val'), submission) == pytest.approx(
      report['miou'], abs=1e-9)
  # The export carries the inverse map: the predict tool writes the same files from the images.
  export = run_tool('export', f'--workdir={workdir}', f'--export_dir={tmp_path / "serving"}')
  assert export.returncode == 0, export.stderr[-3000:]
  predicted = str(tmp_path / 'predicted')
  result = run_tool('predict', f'--saved_model={tmp_path / "serving" / "autodeeplab"}',
                    f'--input={raw / "leftImg8bit" / "val"}', f'--output_dir={predicted}',
                    '--prediction_ids=dataset')
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(os.listdir(predicted)) == 4
  assert official_miou(str(raw / 'gtFine' / 'val'), predicted) == pytest.approx(
      report['miou'], abs=1e-9)
