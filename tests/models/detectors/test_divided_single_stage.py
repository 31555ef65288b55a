"""DividedSingleStageDetector: S set once, S=1 is mmdet's SSD, members' predictions kept."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

from divdet.models.dense_heads import DEFAULT_ENSEMBLE
from tests.conftest import scoped
from tests.models.ssd_factory import HEAD, TEST_CFG, TRAIN_CFG, data_samples, detector_cfg

_scope = scoped('mmdet')


def _fused(members, shape, cfg, top):
    """The fusion of ``members`` by the fuser of ``cfg``, capped at ``top`` boxes."""
    from divdet.fusion import build_fuser
    return build_fuser(cfg).fuse_batch([list(members)], [shape], max_per_img=top)[0]


def _stock_ssd() -> torch.nn.Module:
    """The same network built from stock mmdet/mmpretrain parts only."""
    return MODELS.build(ConfigDict(
        type='SingleStageDetector',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='mmpretrain.ResNetV1d', depth=18, stem_channels=128,
                      base_channels=64, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                      out_indices=(1, 2)),
        neck=dict(type='SSDNeck', in_channels=(128, 256), out_channels=(128, 256, 128),
                  level_strides=(2, ), level_paddings=(1, ), l2_norm_scale=None),
        bbox_head=dict(copy.deepcopy(HEAD), in_channels=(128, 256, 128)),
        train_cfg=copy.deepcopy(TRAIN_CFG), test_cfg=copy.deepcopy(TEST_CFG)))


def test_single_member_is_mmdet_ssd():
    torch.manual_seed(0)
    divided = MODELS.build(detector_cfg(num_members=1))
    divided.init_weights()
    stock = _stock_ssd()
    stock.bbox_head.loss_cls = None  # the mmdet 3.3.0 SSDHead bug (mmdetection#11780)
    state = {k.replace('.members.0', ''): v for k, v in divided.state_dict().items()}
    stock.load_state_dict(state)
    inputs = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[4, 8, 30, 60], [30, 30, 60, 50]]])
    losses = divided.loss(inputs, copy.deepcopy(samples))
    stock_losses = stock.loss(inputs, copy.deepcopy(samples))
    assert losses.keys() == stock_losses.keys()
    for key in losses:
        ours = losses[key] if torch.is_tensor(losses[key]) else sum(losses[key])
        torch.testing.assert_close(ours, sum(stock_losses[key]).reshape(()))
    divided.eval(), stock.eval()
    ours = divided.predict(inputs, copy.deepcopy(samples))
    theirs = stock.predict(inputs, copy.deepcopy(samples))
    for a, b in zip(ours, theirs):
        for field in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(a.pred_instances[field], b.pred_instances[field])
        assert 'member_pred_instances' not in a


def test_predict_keeps_member_predictions():
    model = MODELS.build(detector_cfg(num_members=2))
    model.init_weights()
    model.eval()
    out = model.predict(torch.rand(1, 3, 64, 64) * 255, data_samples([[]]))
    assert len(out[0].member_pred_instances) == 2
    assert out[0].pred_instances.bboxes.shape[-1] == 4


@pytest.mark.parametrize('execution', ['sequential', 'threads'])
def test_predict_fuses_the_first_k_members(execution):
    """S=4: first_k_pred_instances[k - 2] is the fusion of members 0..k-1 (k = 2, 3)."""
    torch.manual_seed(0)
    cfg = detector_cfg(num_members=4)
    cfg['member_execution'] = execution
    cfg['test_cfg'] = dict(cfg.get('test_cfg') or {}, score_thr=0.0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    samples = data_samples([[], []])
    with torch.no_grad():  # inputs in [0, 1]: unsaturated scores, so no ties in the fusion
        out = model.predict(torch.rand(2, 3, 64, 64), samples)
    test_cfg = model.bbox_head.test_cfg
    for sample in out:
        members = sample.member_pred_instances
        assert len(members) == 4 and len(sample.first_k_pred_instances) == 2
        assert len(members[0]) > 0
        for k, fused in zip((2, 3), sample.first_k_pred_instances):
            expected = _fused(members[:k], sample.ori_shape,
                              test_cfg.get('ensemble', DEFAULT_ENSEMBLE),
                              test_cfg.get('max_per_img', 200))
            for field in ('bboxes', 'scores', 'labels'):
                torch.testing.assert_close(fused[field], expected[field])
    two = MODELS.build(detector_cfg(num_members=2))
    two.eval()
    with torch.no_grad():
        assert 'first_k_pred_instances' not in two.predict(torch.rand(1, 3, 64, 64),
                                                           data_samples([[]]))[0]


def test_test_members_run_and_fuse_a_subset():
    """test_cfg.members=(0, 2) of S=4: the same detections as members 0 and 2 of a full
    run, fused with their own WBF weights; only those members run."""
    torch.manual_seed(0)
    cfg = detector_cfg(num_members=4)
    cfg['test_cfg'] = dict(cfg['test_cfg'], score_thr=0.0,
                           ensemble=dict(type='WeightedBoxesFusion', iou_thr=0.55,
                                         weights=[1, 2, 3, 4]))
    full = MODELS.build(cfg)
    full.init_weights()
    full.eval()
    subset = MODELS.build(dict(cfg, test_cfg=dict(cfg['test_cfg'], members=[0, 2])))
    subset.load_state_dict(full.state_dict())
    subset.eval()
    ran = []
    for i, member in enumerate(subset.backbone.members):
        member.register_forward_hook(lambda *args, i=i: ran.append(i))
    inputs = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        everything = full.predict(inputs, data_samples([[], []]))
        two = subset.predict(inputs, data_samples([[], []]))
    assert sorted(set(ran)) == [0, 2]
    for a, b in zip(everything, two):
        assert b.metainfo['member_indices'] == [0, 2]
        for mine, theirs in zip(b.member_pred_instances, [a.member_pred_instances[i]
                                                          for i in (0, 2)]):
            torch.testing.assert_close(mine.bboxes, theirs.bboxes)
        expected = _fused(
            [a.member_pred_instances[0], a.member_pred_instances[2]], a.ori_shape,
            dict(type='WeightedBoxesFusion', iou_thr=0.55, weights=[1, 3]), 50)
        torch.testing.assert_close(b.pred_instances.bboxes, expected.bboxes)
        torch.testing.assert_close(b.pred_instances.scores, expected.scores)


@pytest.mark.parametrize('members', [[], [0, 0], [4], [-1], 'ab', [1.0]])
def test_bad_test_members_are_refused(members):
    from divdet.utils import ConfigError
    cfg = detector_cfg(num_members=4)
    cfg['test_cfg'] = dict(cfg['test_cfg'], members=members)
    with pytest.raises(ConfigError, match=r'test_cfg.members must list distinct member '
                       r'indices in 0\.\.3'):
        MODELS.build(cfg)


def test_num_members_is_set_once():
    cfg = detector_cfg(num_members=2)
    cfg['backbone']['num_members'] = 4
    with pytest.raises(ValueError, match='set once, on the detector'):
        MODELS.build(cfg)


def test_member_widths_are_wired_through():
    model = MODELS.build(detector_cfg(num_members=2))
    assert model.backbone.member_out_channels == (88, 176)
    assert model.neck.member_out_channels == (88, 176, 64)
    assert model.bbox_head.members[0].in_channels == (88, 176, 64)


@pytest.mark.parametrize('fusion', ['NMSFusion', 'SoftNMSFusion', 'ConcatFusion'])
def test_any_registered_fuser_merges_the_members(fusion):
    cfg = detector_cfg(num_members=2)
    cfg['test_cfg'] = dict(cfg['test_cfg'], score_thr=0.0, ensemble=dict(type=fusion))
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 64, 64), data_samples([[]]))[0]
    expected = _fused(out.member_pred_instances, out.ori_shape, dict(type=fusion), 50)
    torch.testing.assert_close(out.pred_instances.scores, expected.scores)
    assert len(out.pred_instances) > 0


def test_fusion_configs_are_checked_when_the_model_is_built():
    from divdet.utils.errors import ConfigError
    cfg = detector_cfg(num_members=2)
    cfg['test_cfg'] = dict(cfg['test_cfg'], ensemble=dict(type='WeightedBoxesFusion',
                                                          weights=[1, 2, 3]))
    with pytest.raises(ConfigError, match=r'one weight per member \(2\), found 3'):
        MODELS.build(cfg)
    cfg['test_cfg']['ensemble'] = dict(type='Median')
    with pytest.raises(ConfigError, match="registered fuser .*found 'Median'"):
        MODELS.build(cfg)
    cfg['test_cfg']['ensemble'] = dict(type='wbf', iou_thr=0.5)
    with pytest.warns(FutureWarning, match="'wbf' is deprecated"):
        MODELS.build(cfg)


def test_any_divided_backbone_feeds_the_divided_ssd():
    """The neck takes its input widths from any divided backbone's members; one
    training step gives finite losses and gradients to every member's backbone."""
    cfg = detector_cfg(2)  # EfficientNet-B0 members: stride 8 and 16 maps, as the anchors
    cfg['backbone'] = dict(type='DividedBackbone', arch='efficientnet-b0', num_stages=5,
                           out_indices=(2, 4))
    model = MODELS.build(ConfigDict(cfg))
    model.init_weights()
    member_channels = model.backbone.member_out_channels
    assert model.neck.member_out_channels[:2] == member_channels
    inputs = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[4, 4, 30, 30]], [[10, 20, 50, 60]]])
    data = model.data_preprocessor(dict(inputs=list(inputs), data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if torch.is_tensor(v) else sum(v) for k, v in losses.items()
                if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    for member in model.backbone.members:
        grads = [p.grad for p in member.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        (result, ) = model.predict(data['inputs'][:1], data['data_samples'][:1])
    assert len(result.member_pred_instances) == 2 and "pred_instances" in result


@pytest.mark.cuda
def test_an_amp_training_step_on_cuda_is_finite_and_updates_every_member():
    from mmengine.optim import AmpOptimWrapper
    torch.manual_seed(0)
    model = MODELS.build(detector_cfg(2)).cuda()
    model.init_weights()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                              loss_scale='dynamic')
    images = [(torch.rand(3, 64, 64) * 255).to(torch.uint8).cuda() for _ in range(2)]
    samples = [s.cuda() for s in data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])]
    model.train()
    for _ in range(5):  # the dynamic loss scale skips steps whose fp16 gradients overflow
        log = model.train_step(dict(inputs=images, data_samples=copy.deepcopy(samples)), wrapper)
        assert all(torch.isfinite(v).all() for v in log.values()), log
        if wrapper.loss_scaler.get_scale() == 65536.0:
            break  # a step was taken at the initial scale
    changed = {k.split('.members.')[1][0] for k, v in model.named_parameters()
               if '.members.' in k and not torch.equal(v, before[k])}
    assert changed == {'0', '1'}  # both members were updated
