"""DividedCocoMetric: pycocotools AP for the ensemble and each member, side by side."""
import pytest
import torch
from mmengine.structures import InstanceData

from divdet.datasets import make_shapes_dataset
from divdet.evaluation import DividedCocoMetric


def _pred(boxes, scores=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return InstanceData(bboxes=boxes, scores=torch.ones(len(boxes)) if scores is None else
                        torch.tensor(scores), labels=torch.zeros(len(boxes), dtype=torch.long))


def test_ensemble_and_member_rows(tmp_path):
    import json
    ann = make_shapes_dataset(tmp_path, num_train=0, num_val=6, size=64, seed=3)['val']
    coco = json.loads(ann.read_text())
    metric = DividedCocoMetric(ann_file=str(ann), metric='bbox',
                               outfile_prefix=str(tmp_path / 'out' / 'res'))
    metric.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    samples = []
    for img in coco['images']:
        gts = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in gts)]
        labels = torch.tensor([a['category_id'] - 1 for a in gts], dtype=torch.long)
        perfect = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                               scores=torch.ones(len(gts)), labels=labels)
        shifted = InstanceData(bboxes=perfect.bboxes + 8, scores=perfect.scores, labels=labels)
        samples.append(dict(img_id=img['id'], ori_shape=(img['height'], img['width']),
                            pred_instances=perfect, member_pred_instances=[perfect, shifted]))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/member0_bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/member1_bbox_mAP'] < 0.9  # shifted boxes score lower
    assert (tmp_path / 'out' / 'res.member1.bbox.json').exists()
    table = DividedCocoMetric.summary_table([('ensemble', {'bbox_mAP': 0.5}),
                                             ('member 0', {'bbox_mAP': 0.25})])
    assert 'ensemble' in table and '50.0' in table and '25.0' in table
