"""The whole fused detector exported (torch.export and ONNX) gives eager predict's detections."""
import pytest
import torch
from mmengine.config import Config

from divdet.apis import export as ex
from divdet.datasets import SHAPES_CLASSES, make_shapes_dataset
from divdet.utils.errors import ConfigError
from tests.conftest import ROOT

CONFIG = ROOT / 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
RETINANET = ROOT / 'configs/demo/retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A config on three generated images and a seeded, untrained S=2 detector with a
    score threshold that keeps many boxes (busy NMS and fusion)."""
    root = tmp_path_factory.mktemp('export')
    make_shapes_dataset(root / 'data', num_train=1, num_val=3, size=96, seed=3)
    cfg = Config.fromfile(str(CONFIG))
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': f'{root}/data/',
                         'test_evaluator.ann_file': f'{root}/data/annotations/instances_val.json',
                         'model.test_cfg.score_thr': 0.2})
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    checkpoint = root / 'ssd.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=SHAPES_CLASSES))), checkpoint)
    config = root / 'config.py'
    cfg.dump(str(config))
    return cfg, model, checkpoint, config


def _check_equal(module, run, samples):
    diff = ex.compare_with_eager(module, run, samples)
    assert diff['detections'] > 10  # something to compare
    assert diff['same_counts'] and diff['labels'], diff
    assert diff['boxes'] < 1e-4 and diff['scores'] < 1e-5, diff


def test_pt2_with_wbf_equals_eager_predict(setup, tmp_path):
    cfg, model, _, _ = setup
    module = ex.ExportableDetector(model)  # the config's WBF
    inputs, samples = ex.sample_inputs(cfg, batch_size=2)
    path = str(tmp_path / 'ssd.pt2')
    ex.export(module, inputs, path, 'pt2')
    run = ex.load_runner(path)
    _check_equal(module, run, samples)
    # the same program on other images (the number of detections is data-dependent)
    _, others = ex.sample_inputs(cfg, batch_size=2, start=1)
    _check_equal(module, run, others)


def test_onnx_with_nms_fusion_equals_eager_in_onnxruntime(setup, tmp_path):
    pytest.importorskip('onnxruntime')
    cfg, model, _, _ = setup
    module = ex.ExportableDetector(model, dict(type='NMSFusion', iou_thr=0.5), 'onnx')
    inputs, samples = ex.sample_inputs(cfg, batch_size=2)
    path = str(tmp_path / 'ssd.onnx')
    ex.export(module, inputs, path, 'onnx')
    _check_equal(module, ex.load_runner(path), samples)


def test_exported_nms_takes_any_number_of_boxes(tmp_path):
    """torchvision's nms traces with at least 2 kept boxes assumed; the exported
    post-processing keeps working with 0 and 1 boxes (an image without detections)."""
    from torchvision.ops import nms

    class Nms(torch.nn.Module):
        def forward(self, boxes, scores, thr):  # a data-dependent number of boxes, as after
            keep = scores > thr  # the score filter
            return ex._nms(boxes[keep], scores[keep], 0.5)
    torch.manual_seed(0)
    xy = torch.rand(6, 2) * 50
    boxes, scores = torch.cat([xy, xy + 10 + torch.rand(6, 2) * 20], 1), torch.rand(6)
    program = torch.export.export(Nms(), (boxes, scores, torch.tensor(0.0)),
                                  strict=False).module()
    ranked = scores.sort(descending=True).values
    for n in (6, 3, 1, 0):
        thr = ranked[n] if n < 6 else torch.tensor(-1.0)
        keep = scores > thr
        assert int(keep.sum()) == n
        got = program(boxes, scores, thr)
        assert torch.equal(got, nms(boxes[keep], scores[keep], 0.5)), n


def test_fusers_a_format_cannot_carry_are_refused(setup):
    _, model, _, _ = setup
    with pytest.raises(ConfigError, match='the fusion must be NMSFusion, found '
                                          'WeightedBoxesFusion'):
        ex.ExportableDetector(model, None, 'onnx')
    with pytest.raises(ConfigError, match='found SoftNMSFusion'):
        ex.ExportableDetector(model, dict(type='SoftNMSFusion'), 'pt2')


def test_export_tool_writes_checks_and_evaluates(tool, setup, tmp_path):
    _, _, checkpoint, config = setup
    out = tmp_path / 'deployed.pt2'
    proc = tool('tools/deployment/export.py', str(config), str(checkpoint), '--format', 'pt2',
                '--out', str(out), '--evaluate')
    assert out.is_file()
    assert 'same counts: True' in proc.stdout and 'labels equal: True' in proc.stdout
    assert 'exported model on the test set' in proc.stdout and 'bbox_mAP' in proc.stdout
    bad = tool('tools/deployment/export.py', str(config), str(checkpoint), '--format', 'onnx',
               '--fusion', 'config', check=False)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert 'carries NMSFusion only' in bad.stderr


@pytest.mark.parametrize('fmt,kind', [('pt2', 'retinanet'), ('onnx', 'retinanet'),
                                      ('pt2', 'fcos')])
def test_sigmoid_fpn_detector_exports(tmp_path, fmt, kind):
    """A divided RetinaNet (FPN, sigmoid classifier, anchors at five levels) and FCOS
    (points, centerness) export like the SSD: the same detections as eager predict."""
    if fmt == 'onnx':
        pytest.importorskip('onnxruntime')
    make_shapes_dataset(tmp_path / 'data', num_train=1, num_val=2, size=128, seed=5)
    cfg = Config.fromfile(str(RETINANET))
    cfg.merge_from_dict({'test_dataloader.dataset.data_root': f'{tmp_path}/data/',
                         'test_dataloader.dataset.metainfo': dict(classes=SHAPES_CLASSES),
                         'model.bbox_head.head.num_classes': len(SHAPES_CLASSES),
                         'model.test_cfg.score_thr': 0.3})
    if kind == 'fcos':
        cfg.model.bbox_head.head = dict(
            type='FCOSHead', num_classes=len(SHAPES_CLASSES), in_channels=128,
            stacked_convs=2, feat_channels=128, strides=[8, 16, 32, 64, 128],
            norm_cfg=dict(type='GN', num_groups=32, requires_grad=True))
        cfg.model.train_cfg = None
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    for head in model.bbox_head.members:  # a trained head's spread of class scores
        classifier = head.retina_cls if kind == 'retinanet' else head.conv_cls
        torch.nn.init.normal_(classifier.weight, std=0.05)
        torch.nn.init.zeros_(classifier.bias)
        if kind == 'fcos':  # boxes of some size around the points
            torch.nn.init.normal_(head.conv_reg.weight, std=0.05)
            torch.nn.init.constant_(head.conv_reg.bias, 1.0)
    fusion = dict(type='NMSFusion', iou_thr=0.5) if fmt == 'onnx' else None
    module = ex.ExportableDetector(model, fusion, fmt)
    inputs, samples = ex.sample_inputs(cfg, batch_size=2)
    path = str(tmp_path / f'{kind}.{fmt}')
    ex.export(module, inputs, path, fmt)
    _check_equal(module, ex.load_runner(path), samples)
