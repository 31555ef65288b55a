"""Converters: a state dict with the source's key layout and computation, converted,
gives the same outputs in divdet; weights that do not fit are refused clearly."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS

from divdet.apis.converters import (
    convert_checkpoint,
    reference_to_divdet,
    torchvision_to_divdet,
)
from divdet.utils import CheckpointMismatchError, load_from_local_safe
from tests.conftest import ROOT, scoped

_scope = scoped('mmpretrain')
CLS_S2 = ROOT / 'configs/classification/resnet50-d-s2_8xb32-120e_in1k.py'
CLS_S1 = ROOT / 'configs/classification/resnet50-d-s1_8xb32-120e_in1k.py'


# ---- the reference's SplitNet layout (model/resnet.py, ImageNet branch) -----------------
class RefBasic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class RefResNet(nn.Module):
    """layer0 = deep stem (conv/bn/relu x3 at 0..8, max-pool at 9); ResNet-D downsampling."""

    def __init__(self, w, layers=(2, 2, 2, 2), num_classes=10):
        super().__init__()
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1))
        cin = 2 * w
        for k, (n, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = w * 2**k
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or cin != planes):
                    conv = [nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)]
                    pool = [nn.AvgPool2d(2, s, ceil_mode=True, count_include_pad=False)]
                    down = nn.Sequential(*(pool + conv if s != 1 else conv))
                blocks.append(RefBasic(cin, planes, s, down))
                cin = planes
            setattr(self, f'layer{k + 1}', nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        return self.fc(x.mean((2, 3)))


class RefBottleneck(nn.Module):
    """The reference's bottleneck (torchvision's): 1x1, grouped 3x3 with the stride, 1x1."""
    expansion = 4

    def __init__(self, cin, planes, stride, downsample, width):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width[0], 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width[0])
        self.conv2 = nn.Conv2d(width[0], width[0], 3, stride, 1, groups=width[1], bias=False)
        self.bn2 = nn.BatchNorm2d(width[0])
        self.conv3 = nn.Conv2d(width[0], planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class RefBottleneckNet(RefResNet):
    """The reference's ResNeXt-50 (``groups`` x ``width_per_group``) and WRN-50-k
    (``width_factor``) members: deep stem 64-64-128, ResNet-D downsampling."""

    def __init__(self, groups=1, width_per_group=64, width_factor=1, num_classes=10):
        nn.Module.__init__(self)
        w = 64
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1))
        cin = 2 * w
        for k, (n, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
            planes = w * 2**k
            mid = int(planes * width_per_group / 64) * groups * width_factor
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if b == 0:
                    conv = [nn.Conv2d(cin, planes * 4, 1, bias=False),
                            nn.BatchNorm2d(planes * 4)]
                    pool = [nn.AvgPool2d(s, s, ceil_mode=True, count_include_pad=False)]
                    down = nn.Sequential(*(pool + conv if s != 1 else conv))
                blocks.append(RefBottleneck(cin, planes, s, down, (mid, groups)))
                cin = planes * 4
            setattr(self, f'layer{k + 1}', nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _config(tmp_path, base, **model):
    path = tmp_path / 'cfg.py'
    path.write_text(f'_base_ = {str(base)!r}\nmodel = {model!r}\n')
    return str(path)


def _member_logits(model, i, x):
    feats = model.backbone.members[i](x)[-1]
    return model.head.members[i].fc(feats.mean((2, 3)))


def test_reference_checkpoint_gives_the_reference_outputs(tmp_path):
    torch.manual_seed(0)
    refs = [_randomize_bn(RefResNet(w=44)) for _ in range(2)]  # S=2: base width 44
    container = nn.Module()
    container.models = nn.ModuleList(refs)
    src = tmp_path / 'ref.pth.tar'
    state = {f'module.{k}': v for k, v in container.state_dict().items()}  # saved from DDP
    torch.save(dict(epoch=300, arch='resnet18', state_dict=state, best_acc1=torch.tensor(70.0)),
               src)
    config = _config(tmp_path, CLS_S2, backbone=dict(arch='resnet18-d'),
                     head=dict(head=dict(num_classes=10)))
    dst = tmp_path / 'divdet.pth'
    convert_checkpoint(config, str(src), str(dst), reference_to_divdet, 'reference SplitNet')
    saved = load_from_local_safe(str(dst))
    assert saved['meta']['num_members'] == 2 and saved['meta']['arch'] == 'resnet18-d'
    model = MODELS.build(Config.fromfile(config).model)
    model.load_state_dict(saved['state_dict'], strict=True)  # whole: usable as load_from
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for i, ref in enumerate(refs):
            torch.testing.assert_close(_member_logits(model, i, x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('arch, num_members, layout', [
    ('resnext50-32x4d', 2, dict(groups=16, width_per_group=4)),  # S=2: cardinality 32 / 2
    ('wide-resnet50-2', 1, dict(width_factor=2)),
    ('wide-resnet50-2', 2, dict(width_factor=1)),  # S=2: two ResNet-50-D members
])
def test_reference_resnext_and_wrn_layouts(tmp_path, arch, num_members, layout):
    torch.manual_seed(0)
    refs = [_randomize_bn(RefBottleneckNet(**layout)) for _ in range(num_members)]
    container = nn.Module()
    container.models = nn.ModuleList(refs)
    src = tmp_path / 'ref.pth.tar'
    torch.save(dict(state_dict={f'module.{k}': v for k, v in container.state_dict().items()}),
               src)
    base = CLS_S2 if num_members == 2 else CLS_S1
    config = _config(tmp_path, base, backbone=dict(arch=arch),
                     head=dict(head=dict(num_classes=10)))
    dst = tmp_path / 'divdet.pth'
    convert_checkpoint(config, str(src), str(dst), reference_to_divdet, 'reference SplitNet')
    model = MODELS.build(Config.fromfile(config).model)
    model.load_state_dict(load_from_local_safe(str(dst))['state_dict'], strict=True)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for i, ref in enumerate(refs):
            torch.testing.assert_close(_member_logits(model, i, x), ref(x), rtol=1e-4, atol=1e-4)


def test_reference_keys_outside_models_are_refused():
    with pytest.raises(CheckpointMismatchError, match=r"'encoder.weight' is not a reference"):
        reference_to_divdet({'encoder.weight': torch.zeros(1)})


def test_reference_with_other_split_factor_is_refused(tmp_path):
    container = nn.Module()
    container.models = nn.ModuleList([RefResNet(w=32) for _ in range(2)])  # widths of S=4
    src = tmp_path / 'ref.pth'
    torch.save(dict(state_dict=container.state_dict()), src)
    config = _config(tmp_path, CLS_S2, backbone=dict(arch='resnet18-d'),
                     head=dict(head=dict(num_classes=10)))
    with pytest.raises(CheckpointMismatchError, match=r"do not fit the config's model "
                       r"\(arch='resnet18-d', num_members=2\): .* differ in shape: "
                       r'backbone\.members\.0\.stem\.0\.conv\.weight: \(32, 3, 3, 3\) vs model '
                       r'\(44, 3, 3, 3\)'):
        convert_checkpoint(config, str(src), str(tmp_path / 'out.pth'), reference_to_divdet, 'ref')
    assert not (tmp_path / 'out.pth').exists()


def test_torchvision_resnet50_gives_torchvision_outputs(tmp_path):
    import torchvision
    torch.manual_seed(0)
    tv = _randomize_bn(torchvision.models.resnet50(num_classes=1000))
    src = tmp_path / 'resnet50.pth'
    torch.save(tv.state_dict(), src)
    config = _config(tmp_path, CLS_S1, backbone=dict(arch='resnet50'))
    dst = tmp_path / 'divdet.pth'
    convert_checkpoint(config, str(src), str(dst), torchvision_to_divdet, 'torchvision ResNet-50')
    model = MODELS.build(Config.fromfile(config).model)
    model.load_state_dict(load_from_local_safe(str(dst))['state_dict'])
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(_member_logits(model, 0, x), tv(x), rtol=1e-4, atol=1e-4)


def test_torchvision_into_a_detector_and_into_a_divided_one(tool, tmp_path):
    import torchvision
    src = tmp_path / 'resnet50.pth'
    torch.save(torchvision.models.resnet50().state_dict(), src)
    ssd = ROOT / 'configs/ssd_divided_resnet50_coco.py'
    s1 = tmp_path / 's1.py'
    s1.write_text(f"_base_ = {str(ssd)!r}\nmodel = dict(num_members=1, "
                  "backbone=dict(arch='resnet50'))\n")
    proc = tool('tools/model_converters/torchvision2divdet.py', str(s1), str(src),
                str(tmp_path / 'ssd_s1.pth'))
    assert '(torchvision ResNet-50) written to' in proc.stdout
    saved = load_from_local_safe(str(tmp_path / 'ssd_s1.pth'))['state_dict']
    assert all(k.startswith('backbone.members.0.') for k in saved)  # fc dropped
    s2 = tmp_path / 's2.py'
    s2.write_text(f"_base_ = {str(ssd)!r}\nmodel = dict(backbone=dict(arch='resnet50'))\n")
    proc = tool('tools/model_converters/torchvision2divdet.py', str(s2), str(src),
                str(tmp_path / 'ssd_s2.pth'), check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'num_members=2): ' in proc.stderr and 'backbone.members.1.' in proc.stderr
    assert not (tmp_path / 'ssd_s2.pth').exists()
