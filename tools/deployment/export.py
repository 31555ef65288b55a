"""Export a divided detector's whole predict (members, decoding, NMS, fusion) to one file.

Usage:
    python tools/deployment/export.py CONFIG CHECKPOINT --format pt2|onnx [--out FILE]
        [--batch-size N] [--fusion config|nms] [--nms-iou 0.5] [--evaluate]
        [--cfg-options KEY=VALUE ...]

``pt2``: ``torch.export`` of the whole ``predict`` with the config's fusion (Weighted
Boxes Fusion by default); load with ``import divdet.fusion`` (registers the WBF
operator) and ``torch.export.load(FILE).module()``. ``onnx``: the same with
``NMSFusion`` (concatenation + one class-aware NMS per image), runnable in
onnxruntime. Inputs: ``images`` (N, 3, H, W) float BGR from the test pipeline,
``scale_factor`` (N, 2) float64, ``ori_shape`` (N, 2); outputs: ``boxes``, ``scores``,
``labels`` of all images and ``counts`` per image (``divdet.apis.export``).

After writing the file the tool runs it on a batch of the test set next to eager
``predict`` with the same fusion and prints the largest difference; ``--evaluate``
also runs it over the whole test set and prints its COCO box AP.
"""
import argparse
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from divdet.apis.cli import ArgumentParser, KeyValueAction, integer, number  # noqa: E402
from divdet.apis.runner import run_main  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--format', choices=('pt2', 'onnx'), default='pt2')
    parser.add_argument('--out', help='the exported file (default: next to the checkpoint, '
                        'CHECKPOINT_NAME.pt2 / .onnx)')
    parser.add_argument('--batch-size', type=integer(1), default=1,
                        help='the fixed batch size of the exported model (default: 1)')
    parser.add_argument('--fusion', choices=('config', 'nms'), default=None,
                        help="the config's test_cfg.ensemble (default for pt2) or NMSFusion "
                        '(default and only choice for onnx)')
    parser.add_argument('--nms-iou', type=number('(0, 1]'), default=0.5,
                        help='the IoU threshold of --fusion nms (default: 0.5)')
    parser.add_argument('--evaluate', action='store_true',
                        help='run the exported file over the test set and print its COCO AP')
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from divdet.utils.errors import ConfigError, MissingFileError
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise MissingFileError(f'{what} file {path!r} does not exist')
    fusion = args.fusion or ('nms' if args.format == 'onnx' else 'config')
    if args.format == 'onnx' and fusion != 'nms':
        raise ConfigError('--format onnx carries NMSFusion only (ONNX has no operator for '
                          "Weighted Boxes Fusion); use --fusion nms or --format pt2")
    out = args.out or osp.splitext(args.checkpoint)[0] + f'.{args.format}'
    from divdet.utils.files import check_writable
    check_writable(out, '--out')

    import divdet  # noqa: F401
    from divdet.apis import export as ex
    from divdet.apis.runner import load_config
    cfg = load_config(args.config, argparse.Namespace(cfg_options=args.cfg_options,
                                                      launcher='none', work_dir=None))
    model = ex.build_model(cfg, args.checkpoint)
    fuser = dict(type='NMSFusion', iou_thr=args.nms_iou) if fusion == 'nms' else None
    module = ex.ExportableDetector(model, fuser, args.format)
    inputs, samples = ex.sample_inputs(cfg, args.batch_size)
    start = time.time()
    ex.export(module, inputs, out, args.format)
    print(f'exported {cfg.model.type} (S={model.num_members}, fusion '
          f'{type(module.fuser).__name__}, batch {args.batch_size}, input '
          f'{tuple(inputs[0].shape[1:])}) to {out} in {time.time() - start:.0f} s')

    run = ex.load_runner(out)
    diff = ex.compare_with_eager(module, run, samples)
    print(f'exported vs eager predict on {args.batch_size} test image(s): '
          f'{diff["detections"]} detections, same counts: {diff["same_counts"]}, '
          f'largest difference: boxes {diff["boxes"]:.2e} px, scores {diff["scores"]:.2e}, '
          f'labels equal: {diff["labels"]}')
    if args.evaluate:
        start = time.time()
        metrics = ex.evaluate(run, cfg, args.batch_size)
        print(f'exported model on the test set ({time.time() - start:.0f} s): '
              + ', '.join(f'{k} {v:.3f}' for k, v in metrics.items()))


if __name__ == '__main__':
    run_main(main)
