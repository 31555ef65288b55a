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


def test_out_dir_holding_the_inputs_is_refused(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=2, size=96)
    folder = tmp_path / 'data' / 'val'
    before = {p.name: p.read_bytes() for p in folder.glob('*.jpg')}
    proc = tool('tools/demo/image_demo.py', str(folder), str(CONFIG), str(_checkpoint(tmp_path)),
                '--out-dir', str(folder), '--device', 'cpu', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'holds the input images' in proc.stderr and 'would overwrite them' in proc.stderr
    assert {p.name: p.read_bytes() for p in folder.glob('*.jpg')} == before


def test_out_dir_that_cannot_be_written_is_one_line(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=1, size=96)
    (tmp_path / 'file').write_text('x')
    proc = tool('tools/demo/image_demo.py', str(tmp_path / 'data' / 'val'), str(CONFIG),
                str(_checkpoint(tmp_path)), '--out-dir', str(tmp_path / 'file' / 'out'),
                '--device', 'cpu', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert "divdet: error: --out-dir '" in proc.stderr and 'cannot create the folder' in proc.stderr


def test_cuda_device_without_cuda_is_one_line(tool, tmp_path):
    if torch.cuda.is_available():
        import pytest
        pytest.skip('the CPU path')
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=1, size=96)
    proc = tool('tools/demo/image_demo.py', str(tmp_path / 'data' / 'val'), str(CONFIG),
                str(_checkpoint(tmp_path)), '--out-dir', str(tmp_path / 'out'), '--device',
                'cuda', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert '--device cuda: no CUDA device is available' in proc.stderr


def test_demo_detections_equal_the_test_pipelines(tmp_path):
    """The demo sees the pixels tools/test.py sees (BGR, as LoadImageFromFile loads);
    reading RGB gave other detections on the same image."""
    import importlib.util

    from mmdet.apis import init_detector
    from mmengine.config import Config
    from mmengine.runner import Runner

    from tests.conftest import ROOT
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=2, size=96, empty_fraction=0.0)
    spec = importlib.util.spec_from_file_location('image_demo',
                                                  ROOT / 'tools/demo/image_demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    ckpt = _checkpoint(tmp_path)
    cfg = Config.fromfile(str(CONFIG))
    model = init_detector(cfg, str(ckpt), device='cpu')
    loader = Runner.build_dataloader(dict(
        cfg.test_dataloader, batch_size=1, num_workers=0, persistent_workers=False,
        dataset=dict(cfg.test_dataloader.dataset, data_root=str(tmp_path / 'data') + '/')))
    compared = 0
    for batch in loader:
        with torch.no_grad():
            expected = model.test_step(batch)[0].pred_instances
        path = batch['data_samples'][0].img_path
        got = demo.detect(model, demo.read_image(path)).pred_instances
        assert len(got) == len(expected) > 0
        torch.testing.assert_close(got.bboxes, expected.bboxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-5)
        compared += 1
    assert compared == 2
