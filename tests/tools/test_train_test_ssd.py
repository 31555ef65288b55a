"""tools/train.py then tools/test.py on generated data: a COCO metrics file with
ensemble and member APs, a predictions dump and painted images."""
import glob
import json
import pickle

import pytest
import torch

from divdet.datasets import make_shapes_dataset

CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'


def _data_options(root, workers: int = 0) -> list:
    root = f'{root}/'
    options = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                                 'test_dataloader')
               for key in ('dataset.data_root=' + root, f'num_workers={workers}',
                           'persistent_workers=False', 'batch_size=4')]
    return options + [f'val_evaluator.ann_file={root}annotations/instances_val.json',
                      f'test_evaluator.ann_file={root}annotations/instances_val.json']


def test_train_then_test_reports_members_and_ensemble(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=8, num_val=4, size=96, seed=1)
    work = tmp_path / 'work'
    options = ['--cfg-options', *_data_options(tmp_path / 'data')]
    tool('tools/train.py', CONFIG, '--work-dir', str(work), *options,
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=1')
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    assert checkpoint.endswith('epoch_1.pth')
    out = tmp_path / 'preds.pkl'
    proc = tool('tools/test.py', CONFIG, checkpoint, '--work-dir', str(work), '--out', str(out),
                '--show-dir', 'painted', *options)
    log = proc.stdout + proc.stderr
    assert 'member 1' in log and 'ensemble' in log  # the side-by-side table
    metrics_files = sorted(glob.glob(str(work / '*' / '*.json')))
    metrics = json.loads(open(metrics_files[-1]).read().strip().splitlines()[-1])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/member0_bbox_mAP',
                'coco/member1_bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, key
    preds = pickle.loads(out.read_bytes())
    assert len(preds) == 4 and 'pred_instances' in preds[0]
    # the reported ensemble AP is pycocotools' AP of the saved (fused) predictions
    assert metrics['coco/bbox_mAP'] == pytest.approx(
        _pycocotools_ap(tmp_path / 'data/annotations/instances_val.json', preds), abs=6e-4)
    assert len(glob.glob(str(work / '*' / 'painted' / '*.jpg'))) == 4


def _pycocotools_ap(ann_file, preds) -> float:
    """COCO box AP of ``tools/test.py --out`` predictions, computed here by pycocotools."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
        cat_of = {c['name']: c['id'] for c in coco.dataset['categories']}
        results = []
        for sample in preds:
            pred = sample['pred_instances']
            for box, score, label in zip(pred['bboxes'].tolist(), pred['scores'].tolist(),
                                         pred['labels'].tolist()):
                results.append(dict(image_id=sample['img_id'], score=score,
                                    category_id=cat_of[sample['classes'][label]],
                                    bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]]))
        if not results:
            return 0.0
        evaluator = COCOeval(coco, coco.loadRes(results), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def test_bad_checkpoint_path_is_a_clear_error(tool):
    proc = tool('tools/test.py', CONFIG, '/nonexistent/epoch_1.pth', check=False)
    assert proc.returncode != 0
    assert "checkpoint '/nonexistent/epoch_1.pth' does not exist" in proc.stderr


def test_demo_training_repeats_with_members_in_threads(tool, tmp_path):
    """The demo config is seeded: two runs give the same weights, members in threads
    and augmentation drawn in two loader workers (unseeded, mmengine draws a new seed
    per run and the README's demo numbers would not repeat)."""
    make_shapes_dataset(tmp_path / 'data', num_train=12, num_val=4, size=96, seed=1)
    options = ['--cfg-options', *_data_options(tmp_path / 'data', workers=2),
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
               'model.member_execution=threads']
    checkpoints = []
    for run in ('a', 'b'):
        tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / run), *options)
        checkpoints.append(torch.load(tmp_path / run / 'epoch_1.pth', map_location='cpu',
                                      weights_only=False))
    first, second = (c['state_dict'] for c in checkpoints)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert checkpoints[0]['meta']['seed'] == 0
