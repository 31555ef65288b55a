"""Non-finite losses stop training before the update; mismatched checkpoints are refused."""
import re

import pytest
import torch
from mmengine.logging import MessageHub

from divdet.utils import CheckpointMismatchError, NonFiniteLossError
from tests.conftest import scoped
from tests.models.ssd_factory import data_samples, detector_cfg

_scope = scoped('mmdet')


def _build(num_members=2, arch='resnet18-d'):
    from mmdet.registry import MODELS
    cfg = detector_cfg(num_members)
    cfg['backbone']['arch'] = arch
    return MODELS.build(cfg)


def test_nan_loss_raises_before_the_update():
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    model = _build()
    MessageHub.get_current_instance().update_info('iter', 36)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = dict(inputs=[torch.full((3, 64, 64), float('nan'))],
                data_samples=data_samples([[[8, 8, 40, 40]]]))
    with pytest.raises(NonFiniteLossError, match=r'the training loss is nan at iteration 37 '
                       r'\(loss_cls_m0=nan, .*loss_cot=nan\); the update was not applied'):
        model.train_step(data, optim)
    for k, v in model.state_dict().items():
        if v.is_floating_point() and 'running' not in k:
            torch.testing.assert_close(v, before[k], equal_nan=True, msg=k)


def test_finite_loss_trains_as_before():
    from mmengine.optim import OptimWrapper
    model = _build()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    data = dict(inputs=[torch.rand(3, 64, 64) * 255],
                data_samples=data_samples([[[8, 8, 40, 40]]]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_vars = model.train_step(data, optim)
    assert torch.isfinite(log_vars['loss'])
    # the update was applied: every member's weights moved, by a finite amount
    after = model.state_dict()
    for m in range(2):
        key = f'backbone.members.{m}.stem.0.conv.weight'
        if key not in after:
            key = next(k for k in after if k.startswith(f'backbone.members.{m}.')
                       and k.endswith('weight') and after[k].dim() == 4)
        assert torch.isfinite(after[key]).all() and not torch.equal(after[key], before[key])
    head = next(k for k in after if k.startswith('bbox_head.') and k.endswith('weight'))
    assert not torch.equal(after[head], before[head])


def test_checkpoint_with_other_num_members_is_refused():
    source = _build(num_members=4).state_dict()
    with pytest.raises(CheckpointMismatchError, match=r'the checkpoint has 4 members '
                       r'\(backbone\.members\.0\.\.3\), the config builds num_members=2'):
        _build(num_members=2).load_state_dict(source, strict=False)


def test_checkpoint_with_other_arch_is_refused_through_mmengine():
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    source = dict(state_dict=_build(arch='resnet34-d').state_dict())
    with pytest.raises(CheckpointMismatchError, match=r"backbone does not match the config's "
                       r"\(arch='resnet18-d', num_members=2\): .*unexpected: backbone\.members"):
        _load_checkpoint_to_model(_build(), source, strict=False)


def test_undivided_backbone_points_to_the_converters():
    source = {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7)}
    with pytest.raises(CheckpointMismatchError,
                       match=r'backbone is not divided .*torchvision2divdet'):
        _build().load_state_dict(source, strict=False)


def test_matching_checkpoint_and_other_head_load():
    model = _build()
    state = _build().state_dict()
    model.load_state_dict(state)
    for k, v in state.items():
        torch.testing.assert_close(model.state_dict()[k], v)
    # fine-tuning with another head (tools/train.py --partial-load): the backbone must fit,
    # the rest is mmengine's business
    head_only_differs = {k: v for k, v in state.items() if not k.startswith('bbox_head.')}
    model.partial_checkpoint = True
    model.load_state_dict(head_only_differs, strict=False)


@pytest.mark.parametrize('change', ['missing', 'unexpected'])
def test_neck_or_head_tensors_missing_or_unexpected_are_refused(change):
    """mmengine would only warn and test partly random weights (e.g. a checkpoint of a
    shared head, or of a neck without norm layers)."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    state = _build().state_dict()
    if change == 'missing':
        key = next(k for k in state if k.startswith('neck.'))
        del state[key]
    else:
        key = 'bbox_head.shared.weight'
        state[key] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match=rf'1 {change}: {re.escape(key)}'):
        _load_checkpoint_to_model(_build(), dict(state_dict=state), strict=False)
    partial = _build()
    partial.partial_checkpoint = True  # --partial-load: loads, mmengine lists the rest
    _load_checkpoint_to_model(partial, dict(state_dict=state), strict=False)


@pytest.mark.parametrize('part', ['neck.', 'bbox_head.'])
def test_neck_or_head_tensor_of_another_shape_is_refused(part):
    """mmengine would load the rest, warn, and the run would test random weights."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    state = _build().state_dict()
    key = next(k for k, v in state.items() if k.startswith(part) and v.dim() == 4)
    state[key] = torch.zeros(state[key].shape[0] + 3, *state[key].shape[1:])
    with pytest.raises(CheckpointMismatchError, match=(
            r'do not fit the config\'s model outside the backbone \(1 differ in shape: '
            + key.replace('.', r'\.') + r': \(\d+, ')):
        _load_checkpoint_to_model(_build(), dict(state_dict=state), strict=False)


def test_infinite_loss_is_refused_as_nan_is():
    from divdet.models.divided.checks import check_finite_loss
    inf = torch.tensor(float('inf'))
    with pytest.raises(NonFiniteLossError, match=r'the training loss is inf .*\(loss_bbox=inf\); '
                                                 'the update was not applied'):
        check_finite_loss(inf, dict(loss=inf, loss_cls=torch.tensor(1.0), loss_bbox=inf))
    check_finite_loss(torch.tensor(3.0), dict(loss=torch.tensor(3.0)))
