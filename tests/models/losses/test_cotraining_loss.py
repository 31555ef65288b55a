"""The co-training term: zero for agreeing members, positive otherwise, gradients reach all."""
import math

import pytest
import torch
import torch.nn.functional as F

from divdet.models.losses import CoTrainingLoss, jensen_shannon_divergence


def test_zero_for_identical_members():
    z = torch.randn(16, 81)
    loss = CoTrainingLoss(loss_weight=0.5)([z, z.clone(), z.clone()])
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_positive_and_matches_definition():
    torch.manual_seed(0)
    logits = [torch.randn(8, 5) for _ in range(3)]
    p = torch.stack([z.softmax(-1) for z in logits])
    entropy = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    expected = (entropy(p.mean(0)) - entropy(p).mean(0)).mean()
    loss = CoTrainingLoss(loss_weight=1.0)(logits)
    assert loss.item() > 0
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_bounded_by_log_num_members():
    # Confident, disjoint members: JS approaches log(S).
    logits = [torch.full((1, 4), -50.0).index_fill_(1, torch.tensor([i]), 50.0) for i in range(4)]
    assert jensen_shannon_divergence(logits).item() == pytest.approx(math.log(4), rel=1e-4)


def test_gradient_reaches_every_member():
    logits = [torch.randn(4, 10, requires_grad=True) for _ in range(3)]
    CoTrainingLoss()(logits).backward()
    for z in logits:
        assert z.grad is not None and z.grad.abs().sum() > 0


def test_float32_under_half_inputs_and_weight_buffer():
    logits = [torch.randn(4, 10).half() for _ in range(2)]
    loss_fn = CoTrainingLoss(loss_weight=0.5)
    assert loss_fn(logits).dtype == torch.float32
    loss_fn.weight.fill_(0.0)
    assert loss_fn(logits).item() == 0.0
    assert 'weight' in loss_fn.state_dict()


def test_single_member_and_shape_mismatch():
    assert CoTrainingLoss()([torch.randn(3, 4)]).item() == 0.0
    with pytest.raises(ValueError, match='equal logit shapes'):
        CoTrainingLoss()([torch.randn(3, 4), torch.randn(3, 5)])


def test_best_member_teaches_the_others_and_gets_no_gradient():
    from divdet.models.losses import BestMemberDistillationLoss
    torch.manual_seed(0)
    logits = [torch.randn(6, 5, requires_grad=True) for _ in range(3)]
    loss_fn = BestMemberDistillationLoss(loss_weight=0.5)
    loss = loss_fn(logits, member_losses=torch.tensor([0.9, 0.3, 0.7]))
    assert int(loss_fn.last_teacher) == 1  # the lowest supervised loss
    p_t = F.softmax(logits[1].detach(), -1)
    expected = sum(F.kl_div(F.log_softmax(logits[i], -1), p_t, reduction='batchmean')
                   for i in (0, 2)) / 2
    torch.testing.assert_close(loss, 0.5 * expected)
    loss.backward()
    assert torch.equal(logits[1].grad, torch.zeros_like(logits[1]))  # the teacher: none
    assert logits[0].grad.abs().sum() > 0 and logits[2].grad.abs().sum() > 0
    with pytest.raises(ValueError, match='needs the supervised loss of each of the 3 members'):
        loss_fn(logits)


def test_best_member_distillation_in_both_heads_and_under_the_hook():
    from mmdet.registry import MODELS as DET
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as CLS

    from divdet.engine.hooks import CoTrainingHook
    from tests.models.classifiers.test_divided_image_classifier import _batch, _cfg
    from tests.models.ssd_factory import data_samples, detector_cfg
    cot = dict(type='BestMemberDistillationLoss', loss_weight=0.5)
    init_default_scope('mmdet')
    det = DET.build(ConfigDict(detector_cfg(2, loss_cot=cot)))
    # the hook warms the distillation weight up as it does the Jensen-Shannon term's
    from types import SimpleNamespace

    from mmengine.logging import MessageHub
    runner = SimpleNamespace(model=det, epoch=1, iter=0,
                             message_hub=MessageHub.get_instance('distill-test'))
    CoTrainingHook(warmup=4).before_train_epoch(runner)
    assert float(det.bbox_head.loss_cot.weight) == pytest.approx(0.125)  # 0.5 * 1/4
    images = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    for worse in (0, 1):  # the teacher is the member with the lower supervised loss
        with torch.no_grad():
            for m in range(2):
                head = det.bbox_head.members[m]
                for convs in head.cls_convs:
                    conv = [c for c in convs.modules() if isinstance(c, torch.nn.Conv2d)][-1]
                    bias = conv.bias.view(-1, head.cls_out_channels)
                    bias.zero_()
                    if m == worse:  # every anchor confidently a foreground class: high loss
                        bias[:, 0] = 8.0
        losses = det(images, samples, mode='loss')
        assert losses['loss_cot'] > 0
        totals = [float(losses[f'loss_cls_m{m}'] + losses[f'loss_bbox_m{m}']) for m in range(2)]
        assert totals[worse] > totals[1 - worse]
        assert int(det.bbox_head.loss_cot.last_teacher) == 1 - worse
    init_default_scope('mmpretrain')
    cfg = _cfg()
    cfg['head']['loss_cot'] = cot
    cls = CLS.build(cfg)
    data = cls.data_preprocessor(_batch(2), training=True)
    assert cls(**data, mode='loss')['loss_cot'] > 0


# ---- sigmoid classifiers (RetinaNet, FCOS, ATSS): a Bernoulli distribution per class ----

def _bernoulli_entropy(q):
    return -(q * q.log() + (1 - q) * (1 - q).log())


def test_sigmoid_zero_when_members_agree():
    z = torch.randn(16, 8)
    loss = CoTrainingLoss(loss_weight=0.5, activation='sigmoid')([z, z.clone(), z.clone()])
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_sigmoid_equals_a_hand_computation():
    """Entropy of the mean minus the mean entropy of each class's Bernoulli pair,
    summed over the classes, averaged over the samples."""
    torch.manual_seed(1)
    logits = [torch.randn(6, 4) * 2 for _ in range(3)]
    p = torch.stack([z.sigmoid() for z in logits]).double()  # (S, N, C)
    per_class = _bernoulli_entropy(p.mean(0)) - _bernoulli_entropy(p).mean(0)
    expected = per_class.sum(-1).mean()
    loss = CoTrainingLoss(loss_weight=1.0, activation='sigmoid')(logits)
    assert loss.item() > 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # not the softmax term: the two differ on the same logits
    assert CoTrainingLoss(loss_weight=1.0)(logits).item() != pytest.approx(loss.item(), rel=1e-3)
    # two confident members that disagree on one class: log 2 for that class only
    a, b = torch.full((1, 3), -40.0), torch.full((1, 3), -40.0)
    b[0, 1] = 40.0
    assert jensen_shannon_divergence([a, b], 'sigmoid').item() == pytest.approx(math.log(2),
                                                                                 rel=1e-4)


def test_sigmoid_gradient_reaches_every_member_and_float32_under_half():
    logits = [torch.randn(5, 7, requires_grad=True) for _ in range(2)]
    CoTrainingLoss(activation='sigmoid')(logits).backward()
    for z in logits:
        assert z.grad is not None and z.grad.abs().sum() > 0
    half = [torch.randn(4, 7).half() for _ in range(2)]
    assert CoTrainingLoss(activation='sigmoid')(half).dtype == torch.float32
    with pytest.raises(ValueError, match="activation must be one of"):
        CoTrainingLoss(activation='softplus')


def test_sigmoid_best_member_distillation_is_bernoulli_kl():
    from divdet.models.losses import BestMemberDistillationLoss
    torch.manual_seed(2)
    logits = [torch.randn(6, 4, requires_grad=True) for _ in range(3)]
    loss_fn = BestMemberDistillationLoss(loss_weight=1.0, activation='sigmoid')
    loss = loss_fn(logits, torch.tensor([0.9, 0.3, 0.5]))  # member 1 teaches
    assert int(loss_fn.last_teacher) == 1
    t = logits[1].detach().sigmoid().double()
    kl = [(t * (t / z.detach().sigmoid().double()).log()
           + (1 - t) * ((1 - t) / (1 - z.detach().sigmoid().double())).log()).sum(-1).mean()
          for i, z in enumerate(logits) if i != 1]
    assert loss.item() == pytest.approx((sum(kl) / 2).item(), rel=1e-5)
    loss.backward()
    assert logits[1].grad is None or logits[1].grad.abs().sum() == 0  # the teacher learns nothing
    assert logits[0].grad.abs().sum() > 0 and logits[2].grad.abs().sum() > 0
