"""Divided RetinaNet, FCOS and ATSS: S=1 is mmdet's detector (same losses and predictions
with the same weights); S>1 trains with the sigmoid co-training term and predicts the
members, their fusion, a subset and the first-k ensembles."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

from tests.conftest import ROOT

DEMO = ROOT / 'configs/demo/retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py'
NUM_CLASSES = 8


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmdet')


#: mmdet's own configs of the three detectors (heads and training configs)
MMDET = {'retinanet': 'retinanet/retinanet_r50_fpn_1x_coco.py',
         'fcos': 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
         'atss': 'atss/atss_r50_fpn_1x_coco.py'}


def _mmdet_model(kind: str):
    import os.path as osp

    import mmdet
    return Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                                    MMDET[kind])).model


def _train_cfg(kind: str):
    cfg = _mmdet_model(kind).get('train_cfg')  # FCOS has none
    return cfg.to_dict() if cfg is not None else None


def _head(kind: str) -> dict:
    """mmdet's head of ``kind``, small: 64 channels, 2 stacked convs, 8 classes."""
    return dict(_mmdet_model(kind).bbox_head.to_dict(), num_classes=NUM_CLASSES,
                in_channels=64, stacked_convs=2, feat_channels=64)


TEST_CFG = dict(nms_pre=200, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms',
                iou_threshold=0.5), max_per_img=50)


def _divided(kind: str, num_members: int) -> nn.Module:
    cfg = Config.fromfile(str(DEMO)).model
    cfg.num_members = num_members
    cfg.member_execution = 'sequential'
    cfg.channels_last = False
    cfg.neck.out_channels = 64
    cfg.bbox_head.head = _head(kind)
    cfg.train_cfg = _train_cfg(kind)
    cfg.test_cfg = dict(TEST_CFG, ensemble=dict(type='WeightedBoxesFusion', iou_thr=0.5,
                                                skip_box_thr=1e-4))
    torch.manual_seed(0)
    return MODELS.build(cfg)


class _Member(nn.Module):
    """The divided backbone's only member as a plain mmdet backbone."""

    def __init__(self, divided):
        super().__init__()
        self.divided = divided

    def forward(self, x):
        return self.divided.forward_member(0, x)


def _stock_twin(divided: nn.Module, kind: str) -> nn.Module:
    """mmdet's own single-stage detector (RetinaNet / FCOS / ATSS) with the S=1 divided
    detector's weights: its backbone member, FPN and head."""
    member_channels = divided.backbone.member_out_channels
    neck = dict(type='FPN', in_channels=list(member_channels), out_channels=64,
                add_extra_convs='on_input', num_outs=5)
    cfg = dict(type={'retinanet': 'RetinaNet', 'fcos': 'FCOS', 'atss': 'ATSS'}[kind],
               data_preprocessor=copy.deepcopy(Config.fromfile(str(DEMO)).model.data_preprocessor),
               backbone=dict(type='ResNet', depth=18), neck=neck,
               bbox_head=_head(kind), train_cfg=_train_cfg(kind),
               test_cfg=TEST_CFG)
    cfg['data_preprocessor']['type'] = 'DetDataPreprocessor'
    stock = MODELS.build(ConfigDict(cfg))
    stock.backbone = _Member(divided.backbone)
    stock.neck.load_state_dict(divided.neck.members[0].state_dict())
    stock.bbox_head.load_state_dict(divided.bbox_head.members[0].state_dict())
    return stock


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for n in (3, 0, 7):  # an image without boxes, one with many
        inputs.append((torch.rand(3, 128, 128, generator=g) * 255).to(torch.uint8))
        xy = torch.rand(n, 2, generator=g) * 90
        wh = torch.rand(n, 2, generator=g) * 30 + 8
        sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                             scale_factor=(1.0, 1.0), pad_shape=(128, 128),
                                             batch_input_shape=(128, 128)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, NUM_CLASSES, (n, ), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _total(value):
    return sum(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize('kind', ['retinanet', 'fcos', 'atss'])
def test_one_member_is_mmdets_detector(kind):
    divided = _divided(kind, 1)
    stock = _stock_twin(divided, kind)
    divided.train(), stock.train()
    data = divided.data_preprocessor(_batch(), True)
    ours = divided.loss(data['inputs'], data['data_samples'])
    theirs = stock.loss(data['inputs'], data['data_samples'])
    assert sorted(ours) == sorted(theirs) and 'loss_cot' not in ours
    for key in theirs:
        torch.testing.assert_close(_total(ours[key]), _total(theirs[key]), rtol=1e-5, atol=1e-6,
                                   msg=key)
    divided.eval(), stock.eval()
    with torch.no_grad():
        data = divided.data_preprocessor(_batch(1), False)
        ours = divided.predict(data['inputs'], copy.deepcopy(data['data_samples']))
        theirs = stock.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    assert sum(len(r.pred_instances) for r in theirs) > 10
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes)
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores)
        assert torch.equal(a.pred_instances.labels, b.pred_instances.labels)


@pytest.mark.parametrize('kind', ['retinanet', 'fcos', 'atss'])
def test_two_members_train_with_the_sigmoid_co_training_term(kind):
    model = _divided(kind, 2)
    assert model.bbox_head.loss_cot.activation == 'sigmoid'
    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {'loss_cls_m0', 'loss_cls_m1', 'loss_bbox_m0', 'loss_bbox_m1', 'loss_cot'} <= set(losses)
    assert float(losses['loss_cot']) > 0  # differently initialised members disagree
    total = sum(_total(v) for v in losses.values())
    total.backward()
    for i in range(2):  # every member's head receives a gradient
        grads = [p.grad for p in model.bbox_head.members[i].parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_member_widths_follow_the_division_rule():
    """FPN and head widths divide by sqrt(S) (GroupNorm heads: a multiple of 32), so S
    members have about the parameters of one network."""
    one, two = _divided('atss', 1), _divided('atss', 2)
    assert two.bbox_head.members[0].feat_channels == 32  # 64 / sqrt(2) = 45 -> 32 (GN 32)
    retina = _divided('retinanet', 2)
    assert retina.bbox_head.members[0].feat_channels == 48  # 64 / sqrt(2) = 45 -> 48
    assert retina.neck.member_out_channels == (48, ) * 5
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    one_r = _divided('retinanet', 1)
    ratio = count(retina.neck) / count(one_r.neck)
    assert 0.8 < ratio < 1.3, ratio
    assert count(one) > 0


def test_subset_and_first_k_ensembles():
    model = _divided('retinanet', 4).eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(2), False)
        results = model.predict(data['inputs'], data['data_samples'])
    assert len(results[0].member_pred_instances) == 4
    assert len(results[0].first_k_pred_instances) == 2  # k = 2, 3
    model.test_members = (2, 0)
    with torch.no_grad():
        data = model.data_preprocessor(_batch(2), False)
        subset = model.predict(data['inputs'], data['data_samples'])
    assert subset[0].metainfo['member_indices'] == [2, 0]
    # member 2 alone gives the same detections in the full run and in the subset run
    torch.testing.assert_close(subset[0].member_pred_instances[0].bboxes,
                               results[0].member_pred_instances[2].bboxes)
