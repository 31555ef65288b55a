"""DividedImageClassifier: S once, per-member views, a full training step."""
import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from tests.conftest import scoped

_scope = scoped('mmpretrain')


def _cfg(num_members=2, **kwargs):
    return dict(type='DividedImageClassifier', num_members=num_members,
                data_preprocessor=dict(num_classes=10, mean=[0] * 3, std=[1] * 3),
                backbone=dict(type='DividedResNet', arch='resnet110-cifar'),
                neck=dict(type='DividedNeck', neck=dict(type='GlobalAveragePooling')),
                head=dict(type='DividedClsHead', head=dict(
                    type='LinearClsHead', num_classes=10, loss=dict(type='CrossEntropyLoss'))),
                **kwargs)


def _batch(num_views, n=4):
    views = [torch.randint(0, 255, (n, 3, 16, 16), dtype=torch.uint8) for _ in range(num_views)]
    return dict(inputs=views if num_views > 1 else views[0],
                data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])


def test_train_step_with_member_views():
    from mmengine.optim import OptimWrapper
    model = MODELS.build(_cfg(train_cfg=dict(augments=dict(type='Mixup', alpha=0.2))))
    model.init_weights()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = model.train_step(_batch(2), wrapper)
    assert {'loss_m0', 'loss_m1', 'loss_cot'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    after = dict(model.named_parameters())
    for i in range(2):  # every member's stem and classifier moved
        for name in (f'backbone.members.{i}.conv1.weight', f'head.members.{i}.fc.weight'):
            assert not torch.equal(before[name], after[name]), name


def test_predict_single_view_and_member_scores():
    model = MODELS.build(_cfg())
    model.eval()
    out = model.val_step(_batch(1))
    assert out[0].member_pred_scores.shape == (2, 10)


def test_wrong_number_of_views_is_a_clear_error():
    model = MODELS.build(_cfg())
    data = model.data_preprocessor(_batch(3), training=True)
    with pytest.raises(ValueError, match='3 views per image for 2 members'):
        model(**data, mode='loss')


def test_num_members_set_once():
    cfg = _cfg()
    cfg['head']['num_members'] = 4
    with pytest.raises(ValueError, match='set once, on the classifier'):
        MODELS.build(cfg)


@pytest.mark.parametrize('execution,extra', [
    ('threads', {}), ('streams', {}), ('devices', dict(member_devices=['cpu', 'cpu'])),
    ('auto', dict(compile_members=dict(backend='aot_eager')))],
    ids=['threads', 'streams', 'devices', 'compiled'])
def test_executors_give_the_sequential_training_step(execution, extra):
    import copy

    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    seq = MODELS.build(_cfg(member_execution='sequential'))
    seq.init_weights()
    threaded = MODELS.build(_cfg(member_execution=execution, **extra))
    threaded.load_state_dict(seq.state_dict())
    batch = _batch(2)
    losses = []
    for model in (seq, threaded):
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        losses.append(model.train_step(copy.deepcopy(batch), wrapper))
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(seq.state_dict().items(), threaded.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_unknown_execution_is_refused():
    from divdet.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="member_execution must be one of .*found 'grouped'"):
        MODELS.build(_cfg(member_execution='grouped'))


def test_member_scales_give_each_member_its_resolution_in_training_and_test():
    from mmengine.optim import OptimWrapper
    model = MODELS.build(_cfg(member_scales=(1.0, 0.75)))
    seen = {0: [], 1: []}
    for i, member in enumerate(model.backbone.members):
        member.register_forward_pre_hook(lambda m, args, i=i: seen[i].append(args[0].shape[-2:]))
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    losses = model.train_step(_batch(2), wrapper)  # one view per member, then rescaled
    assert torch.isfinite(losses['loss_cot'])
    model.eval()
    out = model.val_step(_batch(1))
    assert out[0].member_pred_scores.shape == (2, 10)
    assert seen[0] == [(16, 16)] * 2 and seen[1] == [(12, 12)] * 2


def test_member_scales_reach_tensor_mode_and_the_flop_count():
    from divdet.apis.complexity import complexity
    from divdet.models.heads.divided_cls_head import combine_logits
    torch.manual_seed(0)
    model = MODELS.build(_cfg(member_scales=(1.0, 0.5))).eval()
    inputs = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        probs = model(inputs, mode='tensor')
        expected = combine_logits(model.member_logits(inputs), model.head.ensemble)
        feats = model.extract_feat(inputs, stage='backbone')
    torch.testing.assert_close(probs, expected)
    assert feats[0][-1].shape[-1] == 4 and feats[1][-1].shape[-1] == 2  # 16 / 4, 8 / 4
    full = complexity(MODELS.build(_cfg()), (3, 16, 16))
    scaled = complexity(model, (3, 16, 16))
    assert scaled['members'][0]['flops'] == full['members'][0]['flops']
    # a half-size input costs about a quarter of the convolutions
    assert scaled['members'][1]['flops'] < 0.3 * full['members'][1]['flops']


@pytest.mark.parametrize('num_members,scaling,expected', [
    (1, None, 0.4), (2, None, 0.2), (2, 'sqrt', 0.4 / 2 ** 0.5), (2, 'none', 0.4)])
def test_head_dropout_is_scaled_by_the_backbone_rule(num_members, scaling, expected):
    cfg = _cfg(num_members)
    cfg['backbone']['dropout_scaling'] = scaling  # None: the family's (linear for ResNet)
    cfg['head']['head'].update(type='DropoutLinearClsHead', dropout_rate=0.4)
    model = MODELS.build(cfg)
    rates = [head.dropout.p for head in model.head.members]
    assert rates == pytest.approx([expected] * num_members)


@pytest.mark.parametrize('scales', [(1.0, ), (1.0, 0.0), (1.0, 'x'), 0.5])
def test_member_scales_are_checked(scales):
    from divdet.utils.errors import ConfigError
    with pytest.raises(ConfigError, match=r'one scale in \(0, 4\] per member \(2\)'):
        MODELS.build(_cfg(member_scales=scales))
