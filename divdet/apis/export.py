"""The whole fused detector as one artifact: ``torch.export`` (pt2) and ONNX.

``mode='tensor'`` exports only the members' raw outputs (for S=2 at six levels,
24 tensors); decoding, NMS and fusion would have to be rebuilt outside.
:class:`ExportableDetector` wraps a divided detector's whole ``predict`` in a
module of tensors in, tensors out:

- in: ``images`` (N, 3, H, W) float, the test pipeline's output (BGR as
  ``LoadImageFromFile`` reads, resized, not normalised), ``scale_factor`` (N, 2)
  float64 (w, h) and ``ori_shape`` (N, 2) (h, w) as in mmdet's metainfo;
- inside: the data preprocessor's normalisation, the members one after another,
  the batched decoding and score filter
  (:func:`~divdet.models.dense_heads.batched_post_process.member_candidates`, the
  same code as eager ``predict``), one NMS per (member, image) with
  ``max_per_img``, and the fusion of ``test_cfg.ensemble``;
- out: ``boxes`` (D, 4) in the original images' pixels, ``scores`` (D,),
  ``labels`` (D,) and ``counts`` (N,): image by image (``counts[j]``
  detections of image j), each by descending score.

The batch size N and the input size are fixed when the model is exported (the
loop over (member, image) rows is unrolled); the number of detections is
data-dependent.

Which fusion each format carries:

- ``pt2``: Weighted Boxes Fusion (``torch.ops.divdet.weighted_boxes_fusion``,
  which has a fake kernel for export; load the program after ``import
  divdet.fusion``, which registers the operator) or :class:`NMSFusion`;
- ``onnx``: :class:`NMSFusion` only (concatenation of the members' detections
  and one class-aware NMS per image, as mmdet's test-time augmentation merges
  views); ONNX has no operator for WBF's clustering.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import nms as tv_nms

from divdet.fusion import NMSFusion, WeightedBoxesFusion, build_fuser
from divdet.models.dense_heads.batched_post_process import (
    max_per_img_of,
    member_candidates,
    supports_batched,
)
from divdet.utils.errors import ConfigError

#: the fusers each format carries
FORMAT_FUSERS = {'pt2': (WeightedBoxesFusion, NMSFusion), 'onnx': (NMSFusion, )}
INPUT_NAMES = ('images', 'scale_factor', 'ori_shape')
OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'counts')


class ExportableDetector(nn.Module):
    """A divided detector's whole ``predict`` as one traceable module (module doc).

    Args:
        model: a divided single-stage detector (``DividedSingleStageDetector``).
            Its members are switched to run one after another in the default
            memory format (what export traces); its weights are shared, not copied.
        fusion: a fuser config to use instead of ``test_cfg.ensemble`` (e.g.
            ``dict(type='NMSFusion', iou_thr=0.5)`` for ONNX), or None.
        fmt: ``'pt2'`` or ``'onnx'``: which fusers are allowed.

    Raises:
        ConfigError: a head or test config the batched post-processing does not
            cover, or a fuser the format cannot carry.
    """

    def __init__(self, model: nn.Module, fusion: Optional[dict] = None,
                 fmt: str = 'pt2') -> None:
        super().__init__()
        from divdet.models.divided.runtime import MemberRuntime
        if fmt not in FORMAT_FUSERS:
            raise ConfigError(f"export format must be 'pt2' or 'onnx', found {fmt!r}")
        head = model.bbox_head
        self.indices = list(model.test_members or range(model.num_members))
        self.cfg = head.head_of(self.indices[0]).test_cfg
        reason = supports_batched(head.head_of(self.indices[0]), self.cfg)
        if reason is not None:
            raise ConfigError(f'export: the batched post-processing does not cover this head '
                              f'({reason})')
        self.fusion = fusion
        fuser = build_fuser(fusion) if fusion is not None else head.fuser()
        if not isinstance(fuser, FORMAT_FUSERS[fmt]) and len(self.indices) > 1:
            names = ' or '.join(f.__name__ for f in FORMAT_FUSERS[fmt])
            raise ConfigError(f'export to {fmt}: the fusion must be {names}, found '
                              f'{type(fuser).__name__} (choose one with --fusion)')
        self.fuser = fuser.subset(self.indices)
        self.max_per_img = (head.test_cfg or {}).get('max_per_img', 200)
        model.runtime = MemberRuntime('sequential', model.num_members)
        model.runtime.attach(model.backbone, model.neck if model.with_neck else None, head)
        model.channels_last = False
        model._relayout()
        self.model = model.eval()
        pre = model.data_preprocessor
        self.register_buffer('mean', pre.mean.detach().clone().view(1, -1, 1, 1), False)
        self.register_buffer('std', pre.std.detach().clone().view(1, -1, 1, 1), False)
        self.bgr_to_rgb = bool(getattr(pre, '_channel_conversion', False))

    def forward(self, images: Tensor, scale_factor: Tensor, ori_shape: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detections of every image (module doc)."""
        x = images.float()
        if self.bgr_to_rgb:
            x = x[:, [2, 1, 0]]
        x = (x - self.mean) / self.std
        outs = self.model._run_members(x, indices=self.indices)
        num_images, height, width = images.shape[0], images.shape[2], images.shape[3]
        shapes = x.new_tensor([[height, width]]).expand(num_images, 2)
        inverse = (1.0 / scale_factor.to(torch.float64)).to(torch.float32)
        members = self._member_detections(outs, shapes, inverse, num_images)
        sizes = ori_shape.to(torch.float32).flip(1).repeat(1, 2)  # (N, 4): w, h, w, h
        if len(self.indices) == 1:
            dets = members[0]
        elif isinstance(self.fuser, WeightedBoxesFusion):
            return self._wbf(members, sizes, num_images)
        else:
            dets = [self._nms_fusion([m[j] for m in members]) for j in range(num_images)]
        counts = torch.stack([_count(d[1]) for d in dets])
        return (torch.cat([d[0] for d in dets]), torch.cat([d[1] for d in dets]),
                torch.cat([d[2] for d in dets]), counts)

    def _member_detections(self, outs, shapes, inverse, num_images) -> list[list[tuple]]:
        """Per member, per image: (boxes, scores, labels) after NMS and max_per_img, as
        :func:`batched_post_process` (one NMS per row)."""
        boxes, scores, labels, keep, shifted = member_candidates(
            self.model.bbox_head.head_of(self.indices[0]), outs, shapes, inverse, self.cfg)
        iou = float(self.cfg['nms']['iou_threshold'])
        top = max_per_img_of(self.cfg)
        rows = []
        for r in range(boxes.shape[0]):
            kept = keep[r]
            row_scores = scores[r][kept]
            order = _nms(shifted[r][kept], row_scores, iou)
            if top:
                order = order[:top]
            rows.append((boxes[r][kept][order], row_scores[order], labels[r][kept][order]))
        return [rows[m * num_images:(m + 1) * num_images] for m in range(len(outs))]

    def _wbf(self, members, sizes, num_images):
        """WeightedBoxesFusion.fuse_checked on tensors: the operator on the images'
        detections (image-major, then member), normalised by the original sizes."""
        from divdet.fusion.wbf import fuse_flat
        fuser = self.fuser
        flat = [m[j] for j in range(num_images) for m in members]
        counts = torch.stack([_count(d[1]) for d in flat]).view(num_images, len(members))
        norm = torch.cat([d[0] / sizes[j] for j in range(num_images)
                          for d in (m[j] for m in members)])
        weights = (torch.ones(len(members), dtype=torch.float64) if fuser.weights is None
                   else torch.tensor(fuser.weights, dtype=torch.float64))
        boxes, scores, labels, fused = fuse_flat(
            counts, norm.to(torch.float64), torch.cat([d[1] for d in flat]).to(torch.float64),
            torch.cat([d[2] for d in flat]).long(), weights.to(norm.device), fuser.iou_thr,
            fuser.skip_box_thr, fuser.conf_type, fuser.allows_overflow)
        # the first max_per_img of each image (each image's boxes by descending score)
        ends = fused.cumsum(0)
        image = torch.searchsorted(ends, torch.arange(scores.shape[0], device=ends.device),
                                   right=True)
        keep = (torch.arange(scores.shape[0], device=ends.device) - (ends - fused)[image]
                < self.max_per_img) if self.max_per_img else torch.ones_like(image, dtype=bool)
        boxes = (boxes[keep] * sizes[image[keep]].to(boxes.dtype)).to(torch.float32)
        counts = fused.clamp(max=self.max_per_img) if self.max_per_img else fused
        return boxes, scores[keep].to(torch.float32), labels[keep], counts

    def _nms_fusion(self, results: Sequence[tuple]) -> tuple:
        """NMSFusion.fuse_image + max_per_img on one image's members' detections."""
        fuser = self.fuser
        scales = ([w / max(fuser.weights) for w in fuser.weights] if fuser.weights is not None
                  else [1.0] * len(results))
        boxes = torch.cat([r[0] for r in results])
        scores = torch.cat([r[1] * s if s != 1.0 else r[1] for r, s in zip(results, scales)])
        labels = torch.cat([r[2] for r in results])
        # mmcv's batched_nms: labels offset apart by the largest coordinate + 1 (the boxes
        # are clipped to the image, so the largest is >= 0 and a zero keeps it for none)
        largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
        shifted = boxes + (labels.to(boxes) * (largest + 1))[:, None]
        keep = _nms(shifted, scores, fuser.iou_thr)
        if self.max_per_img:
            keep = keep[:self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]


def _nms(boxes: Tensor, scores: Tensor, iou: float) -> Tensor:
    """torchvision's ``nms`` (kept indices, best first), traceable whatever the number of
    boxes: its fake kernel assumes at least 2 kept boxes, so two boxes beyond all the
    others with the lowest scores go in (always kept, suppressing nothing) and their
    indices, last, come out."""
    far = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max() + 1
    pads = torch.stack([far, far, far + 1, far + 1]).unsqueeze(0) + boxes.new_tensor([[0.0], [2.0]])
    low = torch.cat([scores.reshape(-1), scores.new_zeros(1)]).min()
    order = tv_nms(torch.cat([boxes, pads]), torch.cat([scores, torch.stack([low - 1, low - 2])]),
                   iou)
    return order[:-2]


def _count(t: Tensor) -> Tensor:
    """The length of ``t`` as a 0-d int64 tensor (traceable when it is data-dependent)."""
    return torch.ones_like(t, dtype=torch.long).sum()


def sample_inputs(cfg, batch_size: int, start: int = 0) -> tuple[tuple[Tensor, ...], list]:
    """``batch_size`` images of the config's test set from index ``start`` (wrapping
    around) through its test pipeline: the export inputs and the packed samples."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    if len(dataset) == 0:
        raise ConfigError('export: the test set of the config has no images')
    samples = [dataset[(start + i) % len(dataset)] for i in range(batch_size)]
    return export_inputs(pseudo_collate(samples)), samples


def export_inputs(batch: dict) -> tuple[Tensor, Tensor, Tensor]:
    """(images, scale_factor, ori_shape) of a collated test batch (``inputs`` and
    ``data_samples`` as the test dataloader gives them)."""
    shapes = {tuple(t.shape) for t in batch['inputs']}
    if len(shapes) != 1:
        raise ConfigError(f'export: the test pipeline gives images of several sizes '
                          f'{sorted(shapes)}; an exported model takes one size (use a '
                          'Resize with keep_ratio=False)')
    images = torch.stack(batch['inputs']).float()
    metas = [s.metainfo for s in batch['data_samples']]
    for meta in metas:
        if tuple(meta['img_shape'][:2]) != tuple(images.shape[2:]):
            raise ConfigError(f'export: image {meta.get("img_path")} is '
                              f'{meta["img_shape"][:2]} after the pipeline but padded to '
                              f'{tuple(images.shape[2:])}; use a Resize with keep_ratio=False')
    scale = torch.tensor([list(m['scale_factor']) for m in metas], dtype=torch.float64)
    ori = torch.tensor([list(m['ori_shape'][:2]) for m in metas], dtype=torch.long)
    return images, scale, ori


def build_model(cfg, checkpoint: str) -> nn.Module:
    """The config's detector with the checkpoint's weights (strict), in eval mode."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'bbox_head') or not hasattr(model.bbox_head, 'head_of'):
        raise ConfigError(f'export: {type(model).__name__} is not a divided single-stage '
                          'detector')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval()


def export(module: ExportableDetector, inputs: tuple, path: str, fmt: str) -> None:
    """Trace ``module`` on ``inputs`` and write it to ``path`` in format ``fmt``."""
    from divdet.utils.files import check_writable
    check_writable(path, '--out')
    module.eval()
    with torch.no_grad():
        if fmt == 'pt2':
            program = torch.export.export(module, inputs, strict=False)
            tmp = osp.join(osp.dirname(osp.abspath(path)), f'.{osp.basename(path)}.export.part')
            torch.export.save(program, tmp)
            import os
            os.replace(tmp, path)
        else:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                program = torch.onnx.export(module, inputs, dynamo=True, input_names=list(
                    INPUT_NAMES), output_names=list(OUTPUT_NAMES), verbose=False)
            program.save(path)


def load_runner(path: str):
    """A callable ``(images, scale_factor, ori_shape) -> (boxes, scores, labels, counts)``
    of numpy arrays or tensors, for an exported ``.pt2`` or ``.onnx`` file."""
    if path.endswith('.onnx'):
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
        names = [i.name for i in session.get_inputs()]

        def run(*inputs):
            arrays = [t.numpy() if isinstance(t, Tensor) else t for t in inputs]
            return tuple(torch.from_numpy(o) for o in session.run(None, dict(zip(names, arrays))))
        return run
    import divdet.fusion  # noqa: F401  (registers torch.ops.divdet.weighted_boxes_fusion)
    program = torch.export.load(path).module()

    def run(*inputs):
        with torch.no_grad():
            return tuple(program(*inputs))
    return run


def eager_predict(module: ExportableDetector, samples: list) -> list:
    """The wrapped model's eager ``predict`` (with the module's fusion) on packed
    samples: per image (boxes, scores, labels)."""
    from mmengine.config import ConfigDict
    from mmengine.dataset import pseudo_collate
    model, head = module.model, module.model.bbox_head
    saved = head.test_cfg
    if module.fusion is not None:  # the fusion the module carries
        head.test_cfg = ConfigDict(dict(saved or {}, ensemble=module.fusion))
    try:
        with torch.no_grad():
            results = model.test_step(pseudo_collate(samples))
    finally:
        head.test_cfg = saved
    return [(r.pred_instances.bboxes, r.pred_instances.scores, r.pred_instances.labels)
            for r in results]


def split_outputs(outputs: Sequence[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """The exported model's flat outputs -> per image (boxes, scores, labels)."""
    boxes, scores, labels, counts = outputs
    sizes = [int(c) for c in counts]
    return list(zip(boxes.split(sizes), scores.split(sizes), labels.split(sizes)))


def compare_with_eager(module: ExportableDetector, run, samples: list) -> dict:
    """The largest differences between the exported model's outputs and eager
    ``predict``'s on ``samples``."""
    from mmengine.dataset import pseudo_collate
    inputs = export_inputs(pseudo_collate(samples))
    exported = split_outputs(run(*inputs))
    eager = eager_predict(module, samples)
    diff = dict(detections=sum(len(e[1]) for e in eager), boxes=0.0, scores=0.0, labels=True,
                same_counts=all(len(x[1]) == len(e[1]) for x, e in zip(exported, eager)))
    for x, e in zip(exported, eager):
        if len(x[1]) != len(e[1]) or not len(e[1]):
            continue
        diff['boxes'] = max(diff['boxes'], float((x[0] - e[0]).abs().max()))
        diff['scores'] = max(diff['scores'], float((x[1] - e[1]).abs().max()))
        diff['labels'] = diff['labels'] and bool(torch.equal(x[2].long(), e[2].long()))
    return diff


def evaluate(run, cfg, batch_size: int) -> dict:
    """COCO box AP of an exported model (``run`` from :func:`load_runner`) on the
    config's test set, with mmdet's ``CocoMetric`` and the config's annotation file."""
    from mmdet.evaluation import CocoMetric
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    ann_file = cfg.test_evaluator.get('ann_file') if isinstance(cfg.test_evaluator, dict) \
        else None
    if not ann_file:
        raise ConfigError('export --evaluate needs test_evaluator.ann_file')
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dataset.metainfo
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[(start + i) % len(dataset)] for i in range(batch_size)]
        batch = pseudo_collate(samples)
        outputs = split_outputs(run(*export_inputs(batch)))
        real = min(batch_size, len(dataset) - start)  # the last batch wraps around
        metric.process({}, [dict(img_id=s.img_id, ori_shape=s.ori_shape, pred_instances=dict(
            bboxes=b, scores=sc, labels=lab)) for s, (b, sc, lab) in zip(
                batch['data_samples'][:real], outputs[:real])])
    result = metric.evaluate(len(dataset))
    return {k.split('/')[-1]: v for k, v in result.items()
            if k.split('/')[-1] in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')}
