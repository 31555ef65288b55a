"""The divided RetinaNet demo config through tools/train.py and tools/test.py: the
ensemble and every member in one COCO table, and a deployed subset of the members."""
import glob
import json

from divdet.datasets import make_hard_shapes_dataset
from tests.tools.test_train_test_ssd import _data_options

CONFIG = 'configs/demo/retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py'


def _metrics(work):
    files = sorted(glob.glob(str(work / '*' / '*.json')))
    return json.loads(open(files[-1]).read().strip().splitlines()[-1])


def test_train_then_test_reports_members_and_ensemble(tool, tmp_path):
    make_hard_shapes_dataset(tmp_path / 'data', num_train=8, num_val=4, size=128, seed=1)
    work = tmp_path / 'work'
    options = ['--cfg-options', *_data_options(tmp_path / 'data')]
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(work), *options,
                'train_cfg.max_epochs=1', 'train_cfg.val_interval=1')
    assert 'loss_cot' in proc.stdout + proc.stderr  # the sigmoid co-training term is logged
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    test = tmp_path / 'test'
    # after 2 iterations the focal-loss prior (0.01) keeps every score low: evaluate them all
    options.append('model.test_cfg.score_thr=0.0')
    proc = tool('tools/test.py', CONFIG, checkpoint, '--work-dir', str(test), *options)
    log = proc.stdout + proc.stderr
    assert 'ensemble' in log and 'member 0' in log and 'member 1' in log
    assert 'no detection in any' not in log  # every row evaluated detections
    metrics = _metrics(test)
    for key in ('coco/bbox_mAP', 'coco/member0_bbox_mAP', 'coco/member1_bbox_mAP'):
        assert 0.0 <= metrics[key] <= 1.0, key
    # member 1 deployed alone: its AP is the member-1 row of the full run
    alone = tmp_path / 'alone'
    tool('tools/test.py', CONFIG, checkpoint, '--work-dir', str(alone), *options,
         'model.test_cfg.members=[1]')
    assert _metrics(alone)['coco/bbox_mAP'] == metrics['coco/member1_bbox_mAP']
