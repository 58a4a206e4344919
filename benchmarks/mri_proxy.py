r"""The real-image proxy of benchmarks/search_trust.py: axial slices of a real T1 MRI brain volume,
segmented into a handful of regions, as a folder dataset (8-bit grey PNGs, `dataset.json`).

  python benchmarks/mri_proxy.py --output_dir=runs/search_trust_mri/mri_folder

Source: Debian's `mricron-data` package (installs offline from the package registry; fetched
with `apt-get download` and unpacked here when /usr/share/mricron is not installed): `ch2`
(the Colin27 single-subject T1 volume, 1 mm, MNI space) and `aal` (the AAL atlas's 116 regions on
the same grid). Regions are merged by their AAL code into 7 classes: background, frontal,
parietal, temporal, occipital, deep grey matter + insula + limbic, cerebellum. Slices are resized
to 40% (1 mm -> 2.5 mm: 72 x 87 px; images bilinear, labels nearest). Neighbouring slices are
nearly the same image, so val is a contiguous slab of `val_slices` slices in the middle of the
brain, kept `gap` slices away from every train slice; train is every other brain slice (at least
`min_brain` of its pixels labelled).

Its one extra dependency, `nibabel` (reads NIfTI), is installed by this script into the running
Python when missing: `make test` does not need it.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

flags.DEFINE_string('output_dir', 'runs/search_trust_mri/mri_folder', 'The folder dataset.')
flags.DEFINE_integer('val_slices', 16, 'Slices in the val slab.')
flags.DEFINE_integer('gap', 6, 'Slices left out on each side of the val slab.')
flags.DEFINE_float('scale', 0.4, 'Resize factor of each slice.')
flags.DEFINE_float('min_brain', 0.15, 'Fraction of labelled pixels a slice needs.')
FLAGS = flags.FLAGS

NIBABEL = 'nibabel==5.4.2'
TEMPLATES = '/usr/share/mricron/templates'
CLASSES = ['background', 'frontal', 'parietal', 'temporal', 'occipital', 'deep_grey_limbic',
           'cerebellum']
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
           [245, 130, 48], [145, 30, 180]]
# AAL codes by thousands: 2 frontal, 3 insula, 4 limbic (cingulate, hippocampus, amygdala),
# 5 occipital (incl. fusiform), 6 parietal, 7 deep grey (basal ganglia, thalamus), 8 temporal,
# 9 cerebellum and vermis.
CLASS_OF_THOUSANDS = {2: 1, 6: 2, 8: 3, 5: 4, 3: 5, 4: 5, 7: 5, 9: 6}


def _nibabel():
  try:
    import nibabel
  except ImportError:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', NIBABEL], check=True)
    import nibabel
  return nibabel


def _templates() -> str:
  """The directory holding ch2.nii.gz and aal.nii.gz: installed, or unpacked from the
  package into a cache."""
  if os.path.exists(os.path.join(TEMPLATES, 'aal.nii.gz')):
    return TEMPLATES
  cache = os.path.join(os.path.expanduser('~'), '.cache', 'autodeeplab', 'mricron-data')
  found = os.path.join(cache, 'usr', 'share', 'mricron', 'templates')
  if not os.path.exists(os.path.join(found, 'aal.nii.gz')):
    with tempfile.TemporaryDirectory() as download:
      subprocess.run(['apt-get', 'download', 'mricron-data'], cwd=download, check=True,
                     stdout=subprocess.DEVNULL)
      deb, = glob.glob(os.path.join(download, 'mricron-data_*.deb'))
      os.makedirs(cache, exist_ok=True)
      subprocess.run(['dpkg-deb', '-x', deb, cache], check=True)
  return found


def _classes(aal, codes_path: str):
  """The atlas's region indices mapped to the merged classes (unlisted values: background)."""
  import numpy as np
  lookup = np.zeros(int(aal.max()) + 1, np.uint8)
  with open(codes_path) as f:
    for line in f:
      parts = line.split()
      if len(parts) == 3 and int(parts[0]) < len(lookup):
        lookup[int(parts[0])] = CLASS_OF_THOUSANDS.get(int(parts[2]) // 1000, 0)
  return lookup[aal]


def main(argv):
  del argv
  import numpy as np
  from PIL import Image
  nibabel = _nibabel()
  templates = _templates()
  t1 = nibabel.load(os.path.join(templates, 'ch2.nii.gz'))
  atlas = nibabel.load(os.path.join(templates, 'aal.nii.gz'))
  if t1.shape != atlas.shape or not np.allclose(t1.affine, atlas.affine, atol=1e-3):
    sys.exit(f'ch2 {t1.shape} and aal {atlas.shape} are not on the same grid')
  volume = np.asarray(t1.dataobj, np.float32)
  labels = _classes(np.asarray(atlas.dataobj).astype(np.int64),
                    os.path.join(templates, 'aal.nii.txt'))
  top = np.percentile(volume[labels > 0], 99.5)
  grey = np.clip(volume / top * 255, 0, 255).astype(np.uint8)
  brain = [z for z in range(volume.shape[2]) if np.mean(labels[:, :, z] > 0) >= FLAGS.min_brain]
  middle = brain[len(brain) // 2]
  val = set(range(middle - FLAGS.val_slices // 2, middle - FLAGS.val_slices // 2 +
                  FLAGS.val_slices))
  near = set(range(min(val) - FLAGS.gap, max(val) + FLAGS.gap + 1))
  splits = {'val': sorted(val), 'train': [z for z in brain if z not in near]}
  # A rotated slice has the volume's y axis as rows and x as columns.
  width, height = (round(FLAGS.scale * s) for s in volume.shape[:2])
  counts = np.zeros(len(CLASSES), np.int64)
  for split, slices in splits.items():
    for kind in ('images', 'labels'):
      os.makedirs(os.path.join(FLAGS.output_dir, kind, split), exist_ok=True)
    for z in slices:
      # Radiological display: rows anterior -> posterior (the volume's y axis flipped).
      image = Image.fromarray(np.rot90(grey[:, :, z])).resize((width, height), Image.BILINEAR)
      label = Image.fromarray(np.rot90(labels[:, :, z])).resize((width, height), Image.NEAREST)
      image.save(os.path.join(FLAGS.output_dir, 'images', split, f'slice{z:03d}.png'))
      label.save(os.path.join(FLAGS.output_dir, 'labels', split, f'slice{z:03d}.png'))
      if split == 'train':
        counts += np.bincount(np.asarray(label).ravel(), minlength=len(CLASSES))
  spec = {'name': 'colin27_aal_lobes', 'class_names': CLASSES, 'palette': PALETTE,
          'label_format': 'ids'}
  with open(os.path.join(FLAGS.output_dir, 'dataset.json'), 'w') as f:
    json.dump(spec, f, indent=1)
  print(json.dumps({'output_dir': FLAGS.output_dir, 'train_slices': len(splits['train']),
                    'val_slices': splits['val'], 'gap': FLAGS.gap, 'size': [height, width],
                    'train_class_fractions': (counts / counts.sum()).round(4).tolist()}))


if __name__ == '__main__':
  app.run(main)
