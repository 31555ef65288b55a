"""plot_accuracy.py: points from work directories (metrics file + dumped config) to a PNG."""
import json
import shutil

import pytest

from divdet.apis.plot import member_key, run_points
from divdet.utils import ConfigError, MissingFileError
from tests.conftest import ROOT

CONFIG = ROOT / 'configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py'


def _work_dir(tmp_path, name, num_members, metrics):
    work = tmp_path / name
    (work / '20260101_000000').mkdir(parents=True)
    text = CONFIG.read_text().replace('num_members=2,', f'num_members={num_members},')
    (work / CONFIG.name).write_text(text)  # what mmengine dumps into the work dir
    lines = [json.dumps({'accuracy/top1': 1.0}), json.dumps(metrics)]
    (work / '20260101_000000' / '20260101_000000.json').write_text('\n'.join(lines) + '\n')
    return work


def test_member_key():
    assert member_key('coco/bbox_mAP', 1) == 'coco/member1_bbox_mAP'
    assert member_key('accuracy/top1', 0) == 'accuracy/member0_top1'


def test_points_of_divided_and_single_runs(tmp_path):
    s2 = _work_dir(tmp_path, 's2', 2, {'accuracy/top1': 98.0, 'accuracy/member0_top1': 97.0,
                                       'accuracy/member1_top1': 96.0})
    s1 = _work_dir(tmp_path, 's1', 1, {'accuracy/top1': 97.5})
    two = run_points(str(s2), 'S=2', 'accuracy/top1', 'params', (16, 16))
    one = run_points(str(s1), 'S=1', 'accuracy/top1', 'flops', (16, 16))
    assert [p.name for p in two] == ['ensemble', 'member 0', 'member 1']
    assert [p.value for p in two] == [98.0, 97.0, 96.0]
    assert two[1].cost == pytest.approx(two[0].cost / 2)
    # ResNet-110 members of width 12: 2 x (12/16)^2 of the width-16 network
    single_params = run_points(str(s1), 'S=1', 'accuracy/top1', 'params', (16, 16))[0].cost
    assert two[0].cost / single_params == pytest.approx(2 * (12 / 16) ** 2, rel=0.05)
    assert [p.name for p in one] == ['model'] and one[0].cost > 0


def test_missing_metric_and_missing_config(tmp_path):
    s1 = _work_dir(tmp_path, 's1', 1, {'accuracy/top1': 97.5})
    with pytest.raises(ConfigError, match=r"no metric 'coco/bbox_mAP'; the run has "
                       r"\['accuracy/top1'\]"):
        run_points(str(s1), 'S=1', 'coco/bbox_mAP', 'params')
    (s1 / CONFIG.name).unlink()
    with pytest.raises(MissingFileError, match=r'expected one config \(\*\.py'):
        run_points(str(s1), 'S=1', 'accuracy/top1', 'params')
    shutil.rmtree(s1 / '20260101_000000')
    with pytest.raises(MissingFileError, match='no metrics file under'):
        run_points(str(s1), 'S=1', 'accuracy/top1', 'params')


def test_tool_writes_a_png(tool, tmp_path):
    from PIL import Image
    s2 = _work_dir(tmp_path, 's2', 2, {'accuracy/top1': 98.0, 'accuracy/member0_top1': 97.0,
                                       'accuracy/member1_top1': 96.0})
    s1 = _work_dir(tmp_path, 's1', 1, {'accuracy/top1': 97.5})
    out = tmp_path / 'plot.png'
    proc = tool('tools/analysis_tools/plot_accuracy.py', str(s1), str(s2), '--labels', 'S=1',
                'S=2', '--shape', '16', '16', '--out', str(out))
    assert 'S=2         member 1' in proc.stdout
    with Image.open(out) as image:
        assert image.format == 'PNG' and image.size == (720, 504)
    bad = tool('tools/analysis_tools/plot_accuracy.py', str(s1), '--metric', 'coco/bbox_mAP',
               '--out', str(tmp_path / 'bad.png'), check=False)
    assert bad.returncode == 2 and "no metric 'coco/bbox_mAP'" in bad.stderr
    assert not (tmp_path / 'bad.png').exists()
