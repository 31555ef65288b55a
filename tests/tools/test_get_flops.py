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
    assert rows['total'][0] == pytest.approx(22.89, rel=0.10)  # within +-10% of the S=1 SSD
    assert rows['member 0'][0] == pytest.approx(rows['member 1'][0])
    assert rows['total'][1] > rows['member 0'][1] * 2 * 0.99
