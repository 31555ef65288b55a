"""DividedCocoMetric: pycocotools AP for the ensemble and each member, side by side."""
import pytest
import torch
from mmengine.structures import InstanceData

from divdet.datasets import make_shapes_dataset
from divdet.evaluation import DividedCocoMetric


def _fused(members, shape, cfg, top):
    """The fusion of ``members`` by the fuser of ``cfg``, capped at ``top`` boxes."""
    from divdet.fusion import build_fuser
    fused = build_fuser(cfg).fuse(list(members), shape)
    return fused[fused.scores.topk(top).indices] if len(fused) > top else fused


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


def _pycocotools_ap(ann_file, detections):
    """COCO box AP computed directly with pycocotools, no mmdet in between."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(str(ann_file))
    dt = gt.loadRes(detections)
    ev = COCOeval(gt, dt, 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0]


def test_first_k_member_ensembles_equal_pycocotools(tmp_path):
    """S=4: the ensembles of the first 2 and 3 members, fused by the detector's head
    with WBF, reported as ens2_/ens3_ keys, equal pycocotools on the same boxes."""
    import json

    ann = make_shapes_dataset(tmp_path, num_train=0, num_val=8, size=64, seed=5)['val']
    coco = json.loads(ann.read_text())
    cat_of_label = {i: c['id'] for i, c in enumerate(coco['categories'])}
    metric = DividedCocoMetric(ann_file=str(ann), metric='bbox')
    metric.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    gen = torch.Generator().manual_seed(0)
    samples, direct = [], {2: [], 3: []}
    cfg = dict(type='WeightedBoxesFusion', iou_thr=0.55, skip_box_thr=0.0, conf_type='avg')
    for img in coco['images']:
        gts = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in gts)],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([a['category_id'] - 1 for a in gts], dtype=torch.long)
        members = [InstanceData(bboxes=boxes + torch.randn(boxes.shape, generator=gen) * 3 * i,
                                scores=torch.rand(len(gts), generator=gen) * 0.5 + 0.5,
                                labels=labels) for i in range(4)]
        shape = (img['height'], img['width'])
        first_k = [_fused(members[:k], shape, cfg, 100) for k in (2, 3)]
        for k, fused in zip((2, 3), first_k):
            direct[k] += [dict(image_id=img['id'], category_id=cat_of_label[int(lab)],
                               bbox=[float(b[0]), float(b[1]), float(b[2] - b[0]),
                                     float(b[3] - b[1])], score=float(s))
                          for b, s, lab in zip(fused.bboxes, fused.scores, fused.labels)]
        samples.append(dict(img_id=img['id'], ori_shape=shape,
                            pred_instances=_fused(members, shape, cfg, 100),
                            member_pred_instances=members, first_k_pred_instances=first_k))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    for k in (2, 3):
        assert results[f'coco/ens{k}_bbox_mAP'] == pytest.approx(
            _pycocotools_ap(ann, direct[k]), abs=5e-4)  # mmdet rounds to 3 decimals
    assert 0 < results['coco/ens3_bbox_mAP'] < 1
    assert results['coco/ens2_bbox_mAP'] != results['coco/ens3_bbox_mAP']
    assert 'coco/ens4_bbox_mAP' not in results and 'coco/ens1_bbox_mAP' not in results


def test_members_of_a_subset_are_named_by_their_indices(tmp_path):
    import json
    ann = make_shapes_dataset(tmp_path, num_train=0, num_val=3, size=64, seed=3)['val']
    coco = json.loads(ann.read_text())
    metric = DividedCocoMetric(ann_file=str(ann), metric='bbox')
    metric.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    samples = []
    for img in coco['images']:
        gts = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in gts)]
        pred = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            scores=torch.ones(len(gts)),
                            labels=torch.tensor([a['category_id'] - 1 for a in gts]))
        samples.append(dict(img_id=img['id'], ori_shape=(img['height'], img['width']),
                            pred_instances=pred, member_pred_instances=[pred, pred],
                            member_indices=[0, 2]))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert 'coco/member2_bbox_mAP' in results and 'coco/member1_bbox_mAP' not in results


def test_a_model_without_detections_has_ap_zero_not_no_metric(tmp_path):
    """mmdet reports nothing when no image has a detection (an undertrained sigmoid head
    below score_thr); the run would end with exit 0 and no numbers. AP is 0.0."""
    import json

    from mmengine.logging import MMLogger
    ann = make_shapes_dataset(tmp_path, num_train=0, num_val=4, size=64, seed=3)['val']
    coco = json.loads(ann.read_text())
    metric = DividedCocoMetric(ann_file=str(ann), metric='bbox')
    metric.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    gt = coco['annotations'][0]
    x, y, w, h = gt['bbox']
    one = _pred([[x, y, x + w, y + h]])
    one.labels = torch.tensor([gt['category_id'] - 1])
    samples = [dict(img_id=img['id'], ori_shape=(img['height'], img['width']),
                    pred_instances=_pred([]),  # the ensemble: nothing anywhere
                    member_pred_instances=[_pred([]), one if img['id'] == gt['image_id']
                                           else _pred([])])
               for img in coco['images']]
    metric.process({}, samples)
    logger = MMLogger.get_current_instance()
    with pytest.MonkeyPatch.context() as mp:
        warnings = []
        mp.setattr(logger, 'warning', lambda msg, *a, **k: warnings.append(msg))
        results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == 0.0 and results['coco/member0_bbox_mAP'] == 0.0
    assert results['coco/member1_bbox_mAP'] > 0.0  # one right box: evaluated as usual
    assert any('the ensemble: no detection in any of the 4 images' in w for w in warnings)
