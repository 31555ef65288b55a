"""tools/analysis_tools/get_flops.py prints params and FLOPs per member and in total."""
import re

import pytest


def _table(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r'^(member \d+|shared|total)\s+([\d.]+)\s+([\d.]+)$', line.strip())
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


@pytest.mark.parametrize('config,members,member_params', [
    ('configs/classification/resnet50-d-s2_8xb32-120e_in1k.py', 2, 12.59),
    ('configs/classification/resnet50-d-s1_8xb32-120e_in1k.py', 1, 25.68),
])
def test_reference_parameter_counts(tool, config, members, member_params):
    rows = _table(tool('tools/analysis_tools/get_flops.py', config).stdout)
    assert [k for k in rows if k.startswith('member')] == [f'member {i}' for i in range(members)]
    for i in range(members):
        assert rows[f'member {i}'][0] == pytest.approx(member_params, rel=0.01)
        assert rows[f'member {i}'][1] > 0
    total_flops = sum(rows[f'member {i}'][1] for i in range(members)) + rows['shared'][1]
    assert rows['total'][1] == pytest.approx(total_flops, abs=0.02)


def test_ssd_detector_table(tool):
    rows = _table(tool('tools/analysis_tools/get_flops.py',
                       'configs/ssd_divided_resnet50_coco.py').stdout)
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    from tests.conftest import ROOT
    model = MODELS.build(Config.fromfile(str(ROOT / 'configs/ssd_divided_resnet50_coco.py')).model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert rows['total'][0] == pytest.approx(params, abs=0.006)  # the table prints 2 decimals
    assert rows['total'][0] == pytest.approx(21.90, abs=0.006)  # S=2: 21.90 M
    assert rows['member 0'][0] == pytest.approx(rows['member 1'][0])
    assert rows['total'][1] > rows['member 0'][1] * 2 * 0.99


@pytest.mark.parametrize('config,shape', [
    ('configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py', '128x128'),  # Resize
    ('configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py', '16x16'),  # input_size
    ('configs/ssd_divided_resnet50_coco.py', '300x300'),  # mmdet's SSD300 pipeline
    ('configs/classification/resnet50-d-s2_8xb32-120e_in1k.py', '224x224'),  # CenterCrop
])
def test_flops_at_the_size_the_test_pipeline_feeds(tool, config, shape):
    out = tool('tools/analysis_tools/get_flops.py', config).stdout
    assert any(line.endswith(f'(input {shape})') for line in out.splitlines()), out[:500]


def test_pipeline_shape_rules():
    from mmengine.config import Config

    from divdet.apis.complexity import default_input_shape
    def shape(pipeline, **top):
        cfg = Config(dict(test_dataloader=dict(dataset=dict(
            type='RepeatDataset', dataset=dict(pipeline=pipeline))), **top))
        return default_input_shape(cfg, 'x.py')
    assert shape([dict(type='Resize', scale=(200, 100), keep_ratio=False)]) == (100, 200)
    # keep_ratio: the size depends on the image; the config's input_size decides
    assert shape([dict(type='Resize', scale=(200, 100), keep_ratio=True)],
                 input_size=64) == (64, 64)
    assert shape([dict(type='Resize', scale=(300, 300), keep_ratio=False),
                  dict(type='CenterCrop', crop_size=256)]) == (256, 256)
    assert shape([]) == (300, 300)
    assert shape([], default_scope='mmpretrain') == (224, 224)
