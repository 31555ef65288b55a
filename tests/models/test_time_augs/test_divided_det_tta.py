"""DividedDetTTAModel merges every member's test-time views as mmdet's DetTTAModel
merges the ensemble's; DividedCocoMetric drops member rows that were not merged."""
import json

import pytest
import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_flip
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from divdet.datasets import make_shapes_dataset
from divdet.evaluation import DividedCocoMetric
from divdet.models import DividedDetTTAModel

TTA_CFG = ConfigDict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


class _Module(torch.nn.Module):
    """Stands for the detector: the views' predictions are given directly."""

    def test_step(self, data):
        raise AssertionError('not called')


def _views(img, gts, shifts):
    """Two views (flipped first, as mmdet's TestTimeAug lists them) of one image whose
    ensemble is perfect and whose member m is the truth moved by ``shifts[m]`` pixels."""
    shape = (img['height'], img['width'])
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in gts)],
                         dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([a['category_id'] - 1 for a in gts], dtype=torch.long)

    def inst(b):
        return InstanceData(bboxes=b, scores=torch.ones(len(b)), labels=labels)

    views = []
    for flip in (True, False):
        def seen(b, flip=flip):
            return bbox_flip(b, shape, 'horizontal') if flip else b
        sample = DetDataSample(metainfo=dict(img_id=img['id'], ori_shape=shape, img_shape=shape,
                                             flip=flip, flip_direction='horizontal'))
        sample.pred_instances = inst(seen(boxes))
        sample.member_pred_instances = [inst(seen(boxes + s)) for s in shifts]
        views.append(sample)
    return views, boxes


@pytest.fixture
def shapes(tmp_path):
    ann = make_shapes_dataset(tmp_path, num_train=0, num_val=5, size=64, seed=3,
                              empty_fraction=0.0)['val']
    coco = json.loads(ann.read_text())
    per_image = [(img, [a for a in coco['annotations'] if a['image_id'] == img['id']])
                 for img in coco['images']]
    return ann, per_image


def test_every_member_is_merged_unflipped(shapes):
    _, per_image = shapes
    tta = DividedDetTTAModel(module=_Module(), tta_cfg=TTA_CFG)
    for img, gts in per_image:
        views, boxes = _views(img, gts, shifts=(0.0, 3.0))
        merged = tta.merge_preds([views])[0]
        order = boxes[:, 0].argsort()
        for m, shift in enumerate((0.0, 3.0)):
            got = merged.member_pred_instances[m].bboxes
            assert got.shape == boxes.shape  # the two views' duplicates merged into one
            assert torch.allclose(got[got[:, 0].argsort()], (boxes + shift)[order], atol=1e-4)
        assert merged.metainfo['tta_members_merged'] is True


def _evaluate(ann, samples):
    metric = DividedCocoMetric(ann_file=str(ann), metric='bbox')
    metric.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def test_merged_members_score_as_their_views_do(shapes):
    ann, per_image = shapes
    tta = DividedDetTTAModel(module=_Module(), tta_cfg=TTA_CFG)
    results = _evaluate(ann, [tta.merge_preds([_views(img, gts, (0.0, 0.0))[0]])[0]
                              for img, gts in per_image])
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/member0_bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/member1_bbox_mAP'] == pytest.approx(1.0)


def test_unmerged_members_of_mmdets_tta_are_left_out_with_a_warning(shapes, monkeypatch):
    """mmdet's DetTTAModel keeps the members of the first (flipped) view: their AP would
    be near 0 though every member is perfect. Their rows are dropped instead."""
    ann, per_image = shapes
    tta = DetTTAModel(module=_Module(), tta_cfg=TTA_CFG)
    samples = [tta.merge_preds([_views(img, gts, (0.0, 0.0))[0]])[0] for img, gts in per_image]
    assert samples[0].flip  # the kept view is the flipped one
    from mmengine.logging import MMLogger
    warned = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', warned.append)
    results = _evaluate(ann, samples)
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert not any('member' in k for k in results)
    assert len(warned) == 1 and 'not merged' in warned[0]


def test_detection_configs_use_the_divided_tta_model():
    """Every divided detector config with a tta_model merges the members' views (an mmdet
    base's DetTTAModel, as RetinaNet's, would drop the member rows); --tta on one without
    gets DividedDetTTAModel from tools/test.py."""
    from mmengine.config import Config

    from divdet.apis.runner import apply_tta
    from tests.conftest import ROOT
    for name in ('configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py',
                 'configs/ssd_divided_resnet50_coco.py'):
        cfg = Config.fromfile(str(ROOT / name))
        flips = cfg.tta_pipeline[-1]['transforms'][1]
        assert [t['prob'] for t in flips] == [1.0, 0.0]
    checked = 0
    for path in sorted((ROOT / 'configs').rglob('*.py')):
        cfg = Config.fromfile(str(path))
        if cfg.get('default_scope', 'mmdet') != 'mmdet' or 'bbox_head' not in cfg.model:
            continue
        if 'tta_model' not in cfg:
            apply_tta(cfg)
            assert cfg.model.type == 'DividedDetTTAModel', path.name
        else:
            assert cfg.tta_model.type == 'DividedDetTTAModel', path.name
        checked += 1
    assert checked >= 20
