"""The batched SSD loss of all members and images equals mmdet's per-image SSDHead loss."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from divdet.models import DividedSSDHead
from divdet.models.dense_heads.batched_ssd_loss import flatten_outputs, supports_batched_loss
from tests.conftest import scoped
from tests.models.dense_heads.test_divided_ssd_head import CHANNELS, _feats
from tests.models.ssd_factory import HEAD, TEST_CFG, TRAIN_CFG, data_samples

_scope = scoped('mmdet')


def _head(num_members=2, head=None, **train_cfg):
    cfg = copy.deepcopy(TRAIN_CFG)
    assigner = train_cfg.pop('assigner', {})
    cfg['assigner'].update(assigner)
    cfg.update(train_cfg)
    torch.manual_seed(0)
    built = DividedSSDHead(num_members, dict(head or HEAD), in_channels=CHANNELS,
                           train_cfg=cfg, test_cfg=TEST_CFG)
    built.init_weights()
    return built


def _boxes(generator, n, size=64):
    xy = torch.rand(n, 2, generator=generator) * size * 0.7
    wh = torch.rand(n, 2, generator=generator) * size * 0.5 + 3
    return torch.cat([xy, (xy + wh).clamp(max=size)], 1).tolist()


def _samples(boxes_per_image, num_classes=3, seed=0):
    samples = data_samples(boxes_per_image)
    g = torch.Generator().manual_seed(seed)
    for s in samples:
        s.gt_instances.labels = torch.randint(0, num_classes, (len(s.gt_instances),),
                                              generator=g)
    return samples


def _mmdet_losses(head, outs, samples):
    """Each member's losses by mmdet's own SSDHead.loss_by_feat and get_targets, summed
    over images."""
    results = [head.loss_member(i, o, copy.deepcopy(samples)) for i, o in enumerate(outs)]
    losses = head.gather_losses(results)
    return {k: sum(v) if isinstance(v, list) else v for k, v in losses.items()}


def _compare(head, samples, batch=None, scale=1.0, grad_rtol=1e-5):
    """Batched and mmdet losses of the same outputs, and their gradients."""
    batch = batch or len(samples)
    feats = [tuple(f.requires_grad_() for f in member)
             for member in _feats(head.num_members, batch=batch)]
    outs = [head.forward_member(i, f) for i, f in enumerate(feats)]
    outs = [([c * scale for c in cls], box) for cls, box in outs]
    ours = head.loss_members(outs, copy.deepcopy(samples))
    theirs = _mmdet_losses(head, outs, samples)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dim() == 0
        torch.testing.assert_close(ours[key], theirs[key].reshape(()), rtol=1e-5, atol=1e-6)
    leaves = [f for member in feats for f in member] + list(head.parameters())
    grads = [torch.autograd.grad(sum(d.values()), leaves, retain_graph=True, allow_unused=True)
             for d in (ours, theirs)]
    for a, b in zip(*grads):
        if b is None:
            assert a is None or not a.any()
            continue
        assert (a - b).norm() <= grad_rtol * b.norm() + 1e-7
    return ours


@pytest.mark.parametrize('num_members', [1, 2, 3])
def test_equals_mmdet_on_images_with_no_one_and_many_boxes(num_members):
    g = torch.Generator().manual_seed(1)
    boxes = [[], _boxes(g, 1), _boxes(g, 40), [], _boxes(g, 5)]
    losses = _compare(_head(num_members), _samples(boxes))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_bbox' + ('_m0' if num_members > 1 else '')] > 0


def test_a_batch_without_any_box():
    losses = _compare(_head(2), _samples([[], [], []]))
    assert losses['loss_bbox_m0'] == 0 and losses['loss_cls_m0'] == 0


@pytest.mark.parametrize('assign_all', [False, True])
def test_ties_in_iou(assign_all):
    """Duplicate ground truth (ties between gts) and boxes that overlap several anchors
    equally (ties between anchors), with min_pos_iou matching low-quality boxes."""
    same = [8.0, 8.0, 24.0, 24.0]
    boxes = [[same, same, [0, 0, 64, 64], [40, 40, 48, 48]],
             [[16, 16, 48, 48], [16, 16, 48, 48], [2, 30, 10, 60]]]
    head = _head(2, assigner=dict(min_pos_iou=0.1, gt_max_assign_all=assign_all))
    _compare(head, _samples(boxes))


def test_assigner_and_sampler_options():
    g = torch.Generator().manual_seed(2)
    boxes = [_boxes(g, 6), _boxes(g, 3), []]
    head = _head(2, assigner=dict(pos_iou_thr=0.4, neg_iou_thr=(0.1, 0.3), min_pos_iou=0.2),
                 pos_weight=2.0, neg_pos_ratio=5, smoothl1_beta=0.5)
    _compare(head, _samples(boxes))


@pytest.mark.parametrize('wrt_candidates', [True, False])
def test_ignored_boxes(wrt_candidates):
    g = torch.Generator().manual_seed(3)
    samples = _samples([_boxes(g, 4), _boxes(g, 2), []])
    for k, s in enumerate(samples):  # the last image has ignored boxes but no ground truth
        s.ignored_instances = InstanceData(bboxes=torch.tensor(_boxes(g, 2 if k != 1 else 0)
                                                               ).reshape(-1, 4),
                                           labels=torch.zeros(2 if k != 1 else 0).long())
    head = _head(2, assigner=dict(ignore_iof_thr=0.3, ignore_wrt_candidates=wrt_candidates))
    _compare(head, samples)


def test_padded_inputs_and_anchors_outside_the_image():
    """Images smaller than the padded batch (invalid anchors) and allowed_border >= 0."""
    g = torch.Generator().manual_seed(4)
    samples = _samples([_boxes(g, 3, size=40), _boxes(g, 5)])
    samples[0].set_metainfo(dict(img_shape=(40, 36), pad_shape=(40, 40)))
    samples[1].set_metainfo(dict(pad_shape=(64, 64)))
    _compare(_head(2, allowed_border=0), samples)
    _compare(_head(2, allowed_border=-1), samples)


def test_ties_in_the_negative_losses():
    """Constant scores give every negative the same loss: the loss value is mmdet's, and
    so is the gradient on the positives and its total over the negatives (which of
    several equal negatives is taken is unspecified in mmdet's topk)."""
    head = _head(1)
    g = torch.Generator().manual_seed(5)
    samples = _samples([_boxes(g, 2), _boxes(g, 1)])
    cls = [torch.zeros(2, 4 * 4, s, s, requires_grad=True) for s in (8, 4, 2)]
    box = [torch.zeros(2, 4 * 4, s, s, requires_grad=True) for s in (8, 4, 2)]
    ours = head.loss_members([(cls, box)], copy.deepcopy(samples))
    theirs = _mmdet_losses(head, [(cls, box)], samples)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key].reshape(()), rtol=1e-6, atol=1e-7)
    flat = [torch.autograd.grad(d['loss_cls'], cls, retain_graph=True) for d in (ours, theirs)]
    flat = [flatten_outputs(list(f), 4) for f in flat]  # (N, A, C + 1)
    for a, b in zip(*flat):
        torch.testing.assert_close(a.sum(0), b.sum(0), rtol=1e-5, atol=1e-7)
        assert int(a.abs().sum(-1).gt(0).sum()) == int(b.abs().sum(-1).gt(0).sum())


def test_unsupported_configs_fall_back_to_mmdet_logged_once(monkeypatch):
    import divdet.models.dense_heads.divided_ssd_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: logged.append(msg))
    head = _head(2, head=dict(HEAD, reg_decoded_bbox=True))
    assert 'reg_decoded_bbox' in supports_batched_loss(head.head_of(0))
    g = torch.Generator().manual_seed(6)
    samples = _samples([_boxes(g, 3), []])
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(2))]
    for _ in range(2):
        losses = head.loss_members(outs, copy.deepcopy(samples))
    assert isinstance(losses['loss_cls_m0'], list)  # mmdet's per-image losses
    expected = _mmdet_losses(head, outs, samples)
    torch.testing.assert_close(sum(losses['loss_cls_m1']), expected['loss_cls_m1'])
    assert len(logged) == 1 and 'not batched: reg_decoded_bbox' in logged[0]


def test_operators_do_not_grow_with_the_batch_or_the_members():
    from divdet.apis.complexity import LOSS_RANGE, count_ops_by_range
    g = torch.Generator().manual_seed(7)
    counts = {}
    for num_members in (1, 2):
        head = _head(num_members)
        for batch in (2, 8):
            samples = _samples([_boxes(g, 1 + k % 5) for k in range(batch)])
            outs = [head.forward_member(i, f) for i, f in
                    enumerate(_feats(num_members, batch=batch))]

            def loss(head=head, outs=outs, samples=samples):
                losses = head.loss_members(outs, samples)
                sum(losses.values()).backward()
            counts[num_members, batch] = count_ops_by_range(loss)[LOSS_RANGE]
    assert counts[1, 8] == counts[1, 2]
    assert counts[2, 8] == counts[2, 2]
    assert counts[2, 8] <= 1.2 * counts[1, 8]
    # mmdet's per-image loss grows with the batch: what this replaces
    head = _head(1, head=dict(HEAD, reg_decoded_bbox=True))
    per_image = {}
    for batch in (2, 8):
        samples = _samples([_boxes(g, 2) for _ in range(batch)])
        outs = [head.forward_member(0, _feats(1, batch=batch)[0])]
        per_image[batch] = count_ops_by_range(
            lambda h=head, o=outs, s=samples: h.loss_members(o, s))[LOSS_RANGE]
    assert per_image[8] > per_image[2] + 6 * 50


@pytest.mark.cuda
def test_cuda_equals_cpu():
    head = _head(2)
    g = torch.Generator().manual_seed(8)
    samples = _samples([_boxes(g, 30), [], _boxes(g, 2)])
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(2, batch=3))]
    cpu = head.loss_members(outs, copy.deepcopy(samples))
    gpu_head = copy.deepcopy(head).cuda()
    on_cuda = [([c.detach().cuda() for c in cls], [b.detach().cuda() for b in box])
               for cls, box in outs]
    gpu = gpu_head.loss_members(on_cuda, [s.cuda() for s in copy.deepcopy(samples)])
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key].detach(), rtol=1e-5, atol=1e-6)


def test_the_detector_trains_through_the_batched_loss():
    from mmdet.registry import MODELS

    from tests.models.ssd_factory import detector_cfg
    model = MODELS.build(ConfigDict(detector_cfg(2)))
    g = torch.Generator().manual_seed(9)
    samples = _samples([_boxes(g, 2), _boxes(g, 1)])
    losses = model.loss(torch.rand(2, 3, 64, 64) * 255, samples)
    assert {k for k, v in losses.items() if v.dim() == 0} == set(losses)
    assert supports_batched_loss(model.bbox_head.head_of(0)) is None


def test_batched_loss_false_runs_mmdet_per_image_loss():
    torch.manual_seed(0)
    head = DividedSSDHead(2, dict(HEAD), in_channels=CHANNELS, train_cfg=TRAIN_CFG,
                          test_cfg=TEST_CFG, batched_loss=False)
    g = torch.Generator().manual_seed(10)
    samples = _samples([_boxes(g, 3), []])
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(2))]
    losses = head.loss_members(outs, copy.deepcopy(samples))
    assert isinstance(losses['loss_cls_m0'], list) and len(losses['loss_cls_m0']) == 2
    head.batched_loss = True
    batched = head.loss_members(outs, copy.deepcopy(samples))
    torch.testing.assert_close(batched['loss_cls_m0'], sum(losses['loss_cls_m0']).reshape(()))


def _retina_head(**train_cfg):
    from mmdet.registry import MODELS
    cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                             min_pos_iou=0, ignore_iof_thr=-1),
               sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
               debug=False)
    assigner = train_cfg.pop('assigner', {})
    cfg['assigner'].update(assigner)
    cfg.update(train_cfg)
    return MODELS.build(dict(
        type='RetinaHead', num_classes=4, in_channels=16, stacked_convs=1, feat_channels=16,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2, scales_per_octave=2,
                              ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
        train_cfg=ConfigDict(cfg)))


@pytest.mark.parametrize('case', ['plain', 'border-and-padding', 'ignored-and-pos-weight'])
def test_batched_anchor_targets_equal_mmdets_get_targets(case):
    """RetinaNet's targets (AnchorHead.get_targets with MaxIoUAssigner and PseudoSampler)
    for all images at once: mmdet's per-level labels, weights, box targets and positives."""
    from divdet.models.dense_heads.batched_ssd_loss import (
        batched_get_targets,
        supports_batched_targets,
    )
    options = {'plain': {}, 'border-and-padding': dict(allowed_border=0),
               'ignored-and-pos-weight': dict(pos_weight=2.0,
                                              assigner=dict(ignore_iof_thr=0.5))}[case]
    head = _retina_head(**options)
    assert supports_batched_targets(head) is None
    g = torch.Generator().manual_seed(3)
    boxes = [_boxes(g, 6), [], _boxes(g, 25), _boxes(g, 1)]
    samples = _samples(boxes, num_classes=4, seed=2)
    metas = []
    for k, s in enumerate(samples):  # images narrower than the padded batch
        img = (64, 64 - 8 * k) if case == 'border-and-padding' else (64, 64)
        s.set_metainfo(dict(img_shape=img, pad_shape=(64, 64), batch_input_shape=(64, 64)))
        metas.append(s.metainfo)
    gts = [s.gt_instances for s in samples]
    ignores = None
    if case == 'ignored-and-pos-weight':
        ignores = [InstanceData(bboxes=torch.tensor(_boxes(g, n)).reshape(-1, 4))
                   for n in (2, 0, 3, 1)]
    sizes = [(8, 8), (4, 4), (2, 2)]
    anchors, valid = head.get_anchors(sizes, metas, device='cpu')
    ours = batched_get_targets(head, head.get_targets, anchors, valid, gts, metas, ignores)
    theirs = head.get_targets(anchors, valid, gts, metas, ignores)
    for name, a, b in zip(('labels', 'label_weights', 'bbox_targets', 'bbox_weights'),
                          ours[:4], theirs[:4]):
        assert len(a) == len(b) == 3
        for level_a, level_b in zip(a, b):
            assert level_a.shape == level_b.shape, name
            torch.testing.assert_close(level_a.to(level_b.dtype), level_b, rtol=1e-5,
                                       atol=1e-6, msg=name)
    assert float(ours[4]) == theirs[4] > 0
    if case == 'border-and-padding':  # some anchors are outside: weight 0
        assert any(bool((w == 0).any()) for w in theirs[1])
    if case == 'ignored-and-pos-weight':
        assert any(bool((w == 2.0).any()) for w in theirs[1])


def test_anchor_heads_with_their_own_targets_are_not_batched():
    from mmdet.registry import MODELS

    from divdet.models.dense_heads.batched_ssd_loss import supports_batched_targets
    atss = MODELS.build(dict(type='ATSSHead', num_classes=4, in_channels=32, stacked_convs=1,
                             feat_channels=32, anchor_generator=dict(
                                 type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                                 scales_per_octave=1, strides=[8, 16])))
    assert supports_batched_targets(atss) == 'ATSSHead assigns its own targets'
    head = _retina_head()
    head.sampler = type('RandomSampler', (), {})()
    assert 'sampler RandomSampler' in supports_batched_targets(head)


def test_batched_anchors_equal_mmdets_and_retinanet_loss_ops_do_not_grow_with_the_batch():
    """The valid flags once per padded shape: mmdet's anchors and flags; a divided
    RetinaNet's loss (targets for all images at once) dispatches about the same number of
    operators at batch 8 as at batch 2, where mmdet's image-by-image targets grow."""
    from divdet.apis.complexity import count_ops_by_range
    from divdet.models.dense_heads import DividedDenseHead
    from divdet.models.dense_heads.batched_ssd_loss import batched_get_anchors
    from tests.models.dense_heads.test_divided_dense_head import _head as mmdet_head
    from tests.models.dense_heads.test_divided_dense_head import _train_cfg
    head = _retina_head()
    metas = [dict(pad_shape=(64, 64)), dict(pad_shape=(64, 48)), dict(pad_shape=(64, 64))]
    sizes = [(8, 8), (4, 4), (2, 2)]
    ours, theirs = batched_get_anchors(head, sizes, metas, 'cpu'), head.get_anchors(
        sizes, metas, device='cpu')
    for a, b in zip(ours, theirs):
        for levels_a, levels_b in zip(a, b):
            assert all(torch.equal(x, y) for x, y in zip(levels_a, levels_b))
    assert ours[1][0] is ours[1][2]  # one padded shape, one list of flags

    g = torch.Generator().manual_seed(5)
    counts = {}
    for batched in (True, False):
        torch.manual_seed(0)
        divided = DividedDenseHead(2, mmdet_head('retinanet'), in_channels=[64] * 5,
                                   batched_targets=batched, train_cfg=_train_cfg('retinanet'))
        for batch in (2, 8):
            samples = _samples([_boxes(g, 1 + k % 5, size=128) for k in range(batch)],
                               num_classes=8)
            for s in samples:
                s.set_metainfo(dict(img_shape=(128, 128), pad_shape=(128, 128),
                                    batch_input_shape=(128, 128)))
            feats = [tuple(torch.randn(batch, 64, s, s) for s in (16, 8, 4, 2, 1))
                     for _ in range(2)]
            outs = [divided.forward_member(i, f) for i, f in enumerate(feats)]
            counts[batched, batch] = count_ops_by_range(
                lambda d=divided, o=outs, s=samples: d.loss_members(o, s))['total']
    assert counts[True, 8] <= 1.1 * counts[True, 2]
    assert counts[False, 8] > counts[False, 2] + 6 * 50  # mmdet's targets, image by image
