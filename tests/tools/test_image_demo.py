"""image_demo.py draws the fused detections on every image of a folder."""
import numpy as np
import torch

from divdet.datasets import SHAPES_CLASSES, make_shapes_dataset
from tests.conftest import ROOT

CONFIG = ROOT / 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'


def _checkpoint(tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(CONFIG)).model)
    path = tmp_path / 'ssd.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=SHAPES_CLASSES))), path)
    return path


def test_folder_of_images(tool, tmp_path):
    import mmcv
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=2, size=96)
    out = tmp_path / 'out'
    proc = tool('tools/demo/image_demo.py', str(tmp_path / 'data' / 'val'), str(CONFIG),
                str(_checkpoint(tmp_path)), '--out-dir', str(out), '--score-thr', '0.0',
                '--device', 'cpu')
    lines = [x for x in proc.stdout.splitlines() if 'fused detections' in x]
    assert len(lines) == 2
    for name in ('000000.jpg', '000001.jpg'):
        source = mmcv.imread(str(tmp_path / 'data' / 'val' / name))
        drawn = mmcv.imread(str(out / name))
        assert drawn.shape == source.shape
        # detections (score >= 0) were drawn: the image changed
        assert np.abs(drawn.astype(int) - source.astype(int)).mean() > 1.0
    assert not list(out.glob('.*.part'))


def test_folder_without_images_is_a_clear_error(tool, tmp_path):
    (tmp_path / 'empty').mkdir()
    proc = tool('tools/demo/image_demo.py', str(tmp_path / 'empty'), str(CONFIG), 'x.pth',
                check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'no images (.jpg' in proc.stderr


def test_unreadable_image_is_skipped_and_the_rest_processed(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=3, size=96)
    folder = tmp_path / 'data' / 'val'
    (folder / '000001.jpg').write_bytes(b'')  # sorted between two good images
    out = tmp_path / 'out'
    proc = tool('tools/demo/image_demo.py', str(folder), str(CONFIG), str(_checkpoint(tmp_path)),
                '--out-dir', str(out), '--device', 'cpu')
    assert 'Traceback' not in proc.stderr
    assert sorted(p.name for p in out.glob('*.jpg')) == ['000000.jpg', '000002.jpg']
    assert 'divdet: skipped ' in proc.stderr and '000001.jpg: could not be decoded' in proc.stderr
    assert '1 of 3 images skipped as unreadable' in proc.stderr


def test_no_readable_image_is_an_error(tool, tmp_path):
    (tmp_path / 'imgs').mkdir()
    (tmp_path / 'imgs' / 'a.jpg').write_bytes(b'')
    proc = tool('tools/demo/image_demo.py', str(tmp_path / 'imgs'), str(CONFIG),
                str(_checkpoint(tmp_path)), '--device', 'cpu', '--out-dir', str(tmp_path / 'o'),
                check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'divdet: error: none of the 1 images could be read' in proc.stderr
