"""Run a divided detector on an image or a folder and draw its fused detections.

Usage:
    python tools/demo/image_demo.py IMG_OR_DIR CONFIG CHECKPOINT [--out-dir DIR]
        [--score-thr 0.3] [--device cpu|cuda]

Each image is written to ``DIR`` under its own name with the ensemble's
(fused, e.g. WBF) detections drawn; one line per image lists them. mmdet's
``init_detector`` / ``inference_detector`` and ``DetLocalVisualizer`` do the
work; files are written whole (temporary file, then rename).
"""
import glob
import os.path as osp
import sys

from divdet.apis import run_main
from divdet.apis.cli import ArgumentParser, number
from divdet.utils.errors import ConfigError, ImageError, MissingFileError, first_items, one_line

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_images(path: str) -> list[str]:
    """``path`` itself, or the images directly inside the folder ``path``."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise MissingFileError(f'{path!r} is neither an image file nor a folder')
    images = sorted(p for p in glob.glob(osp.join(path, '*'))
                    if p.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise MissingFileError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {path!r}')
    return images


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', default='outputs/image_demo')
    parser.add_argument('--score-thr', type=number('[0, 1]'), default=0.3)
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    args = parser.parse_args()

    import cv2
    import mmcv
    import torch
    from mmdet.apis import init_detector
    from mmdet.registry import VISUALIZERS

    from divdet.apis.runner import read_config
    from divdet.utils.files import check_output_dir, write_output

    images = list_images(args.inputs)
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            raise MissingFileError(f'{path!r} does not exist')
    check_out_dir(args.out_dir, images)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {device}: no CUDA device is available on this machine; '
                          'use --device cpu')
    check_output_dir(args.out_dir, '--out-dir')
    model = init_detector(read_config(args.config), args.checkpoint, device=device)
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='divdet_image_demo'))
    visualizer.dataset_meta = model.dataset_meta
    classes = model.dataset_meta['classes']
    skipped = []
    for path in images:
        try:
            image = read_image(path)
        except ImageError as err:
            print(f'divdet: skipped {err}', file=sys.stderr, flush=True)
            skipped.append(path)
            continue
        result = detect(model, image)
        visualizer.add_datasample(osp.basename(path), mmcv.bgr2rgb(image), data_sample=result,
                                  draw_gt=False,
                                  show=False, pred_score_thr=args.score_thr)
        drawn = cv2.cvtColor(visualizer.get_image(), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(osp.splitext(path)[1] or '.jpg', drawn)
        out = osp.join(args.out_dir, osp.basename(path))
        write_output(encoded.tobytes(), out, '--out-dir')
        pred = result.pred_instances[result.pred_instances.scores >= args.score_thr]
        found = ', '.join(f'{classes[int(label)]} {float(score):.2f}'
                          for label, score in zip(pred.labels, pred.scores)) or 'nothing'
        print(f'{path}: {len(pred)} fused detections ({found}) -> {out}')
    if skipped:
        if len(skipped) == len(images):
            raise ImageError(f'none of the {len(images)} images could be read '
                             f'({first_items(skipped)})')
        print(f'divdet: {len(skipped)} of {len(images)} images skipped as unreadable: '
              f'{first_items(skipped)}', file=sys.stderr, flush=True)


def detect(model, image):
    """The model's ``DetDataSample`` for a BGR image, through the config's test pipeline
    (mmdet's ``inference_detector``; its ``LoadImageFromNDArray`` expects BGR, as
    ``LoadImageFromFile`` loads, so ``tools/test.py`` sees the same pixels)."""
    from mmdet.apis import inference_detector
    return inference_detector(model, image)


def check_out_dir(out_dir: str, images: list[str]) -> None:
    """Refuse an output folder that holds the inputs: the drawings would replace them.

    Raises:
        ConfigError: some input image lies directly in ``out_dir``.
    """
    target = osp.realpath(out_dir)
    inside = [p for p in images if osp.dirname(osp.realpath(p)) == target]
    if inside:
        raise ConfigError(f'--out-dir {out_dir!r} holds the input images ({first_items(inside)});'
                          ' the drawings would overwrite them. Give another --out-dir')


def read_image(path: str):
    """The image at ``path`` as a BGR array (what mmdet's ``LoadImageFromFile`` gives).

    Raises:
        ImageError: the file is empty, corrupt or not an image.
    """
    import mmcv
    try:
        image = mmcv.imread(path)
    except Exception as err:  # cv2 raises on empty buffers
        raise ImageError(f'{path}: could not be decoded, the file is empty, corrupt or not an '
                         f'image ({one_line(err)})') from None
    if image is None:
        raise ImageError(f'{path}: could not be decoded, the file is empty, corrupt or not an '
                         'image')
    return image


if __name__ == '__main__':
    run_main(main)
