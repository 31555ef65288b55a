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
