"""CheckedCocoDataset: mmdet's CocoDataset that says what is wrong with its input.

mmdet's ``CocoDataset`` trusts its annotation file. A malformed file fails deep
inside ``json`` or pycocotools; an image that is missing on disk fails in the
middle of an epoch; annotations whose category is unknown, or config classes
that match no category name, are dropped without a word, and the model then
trains on empty ground truth. This subclass reads the same files the same way
and differs only in what it checks:

========================================  ======================================
fault                                     behaviour
========================================  ======================================
annotation file missing                   :class:`AnnotationError` (path, data_root)
annotation file not valid JSON            :class:`AnnotationError` (line, column)
``images``/``annotations``/``categories``
missing or of the wrong type              :class:`AnnotationError`
image entry without id/file_name/size     :class:`AnnotationError` (entry index)
config ``classes`` not among categories   :class:`AnnotationError` (missing names)
duplicate image or annotation ids         :class:`AnnotationError` (the ids)
categories in another order than classes  labels follow the config's order (by name)
annotation without ``iscrowd``/``area``   filled as COCO's result loader does
                                          (0; bbox width x height), logged once
annotation with an unknown category id    :class:`AnnotationError` (annotation id)
bbox not 4 finite numbers                 :class:`AnnotationError` (annotation id)
degenerate box (w or h < 1, area <= 0)    skipped, counted, logged once
box entirely outside its image            skipped, counted, logged once
listed image missing on disk              :class:`ImageError` (count, first paths)
image unreadable at start-up (0 bytes,
not an image)                             :class:`ImageError` (count, first paths)
image size differs from width/height      :class:`AnnotationError` (image, both sizes)
image unreadable (corrupt) when loaded    :class:`ImageError` (image id, path)
no images left after filtering            :class:`AnnotationError`
========================================  ======================================

Skipping degenerate and out-of-image boxes is what mmdet already does; the
count is what this class adds. mmdet maps labels in the order the *file* lists
its categories, so a file whose categories are in another order than the
config's ``classes`` would silently permute every label; here label ``i`` is
always the category named ``classes[i]``. The checks cost one pass over the
annotations and, per image, reading its header (size, EXIF orientation) at
start-up (``check_images=False`` turns the latter off, e.g. for remote
storage).
"""
from __future__ import annotations

import json
import logging
import math
import os.path as osp
from typing import Optional

import mmcv
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.logging import print_log

from divdet.registry import register_dataset
from divdet.utils.errors import AnnotationError, DivdetError, ImageError, first_items, one_line

REQUIRED_SECTIONS = {'images': list, 'annotations': list, 'categories': list}
SINGULAR = {'images': 'image', 'annotations': 'annotation', 'categories': 'category'}
REQUIRED_IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
REQUIRED_ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox')
DEGENERATE = 'degenerate boxes (width or height < 1, or area <= 0)'
OUTSIDE = 'boxes entirely outside their image'


class CheckedCOCO(COCO):
    """mmdet's COCO API wrapper that validates the file before indexing it.

    Raises:
        AnnotationError: missing file, invalid JSON, missing sections or keys,
            or (from :meth:`get_cat_ids`) class names not among the categories.
    """

    def __init__(self, annotation_file: str) -> None:
        if not osp.isfile(annotation_file):
            raise AnnotationError(f'annotation file {annotation_file!r} not found '
                                  '(expected a COCO-format JSON file)')
        try:
            with open(annotation_file, encoding='utf-8') as f:
                dataset = json.load(f)
        except json.JSONDecodeError as err:
            raise AnnotationError(f'annotation file {annotation_file!r} is not valid JSON: '
                                  f'{err.msg} at line {err.lineno}, column {err.colno}') from None
        except UnicodeDecodeError as err:
            raise AnnotationError(f'annotation file {annotation_file!r} is not UTF-8 text '
                                  f'({err.reason} at byte {err.start})') from None
        except OSError as err:
            raise AnnotationError(f'annotation file {annotation_file!r} cannot be read '
                                  f'({err.strerror or one_line(err)})') from None
        self._validate(dataset, annotation_file)
        self._fill_defaults(dataset, annotation_file)
        super().__init__(None)
        self.dataset = dataset
        self.createIndex()
        self.img_ann_map = self.imgToAnns
        self.cat_img_map = self.catToImgs
        self.annotation_file = annotation_file

    @staticmethod
    def _validate(dataset, path: str) -> None:
        if not isinstance(dataset, dict):
            raise AnnotationError(f'{path}: expected a JSON object with {sorted(REQUIRED_SECTIONS)}'
                                  f', found a {type(dataset).__name__}')
        for key, kind in REQUIRED_SECTIONS.items():
            if not isinstance(dataset.get(key), kind):
                found = type(dataset[key]).__name__ if key in dataset else 'nothing'
                raise AnnotationError(f'{path}: expected {key!r} to be a {kind.__name__}, '
                                      f'found {found}')
        for section, keys in (('images', REQUIRED_IMAGE_KEYS), ('annotations', REQUIRED_ANN_KEYS)):
            for i, entry in enumerate(dataset[section]):
                missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
                if missing:
                    raise AnnotationError(f'{path}: {section}[{i}] lacks {missing}; every entry '
                                          f'needs {list(keys)}')
        for i, cat in enumerate(dataset['categories']):
            if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
                raise AnnotationError(f"{path}: categories[{i}] needs 'id' and 'name', "
                                      f'found {cat!r}')
        for section in ('images', 'annotations', 'categories'):
            repeated = _repeated(entry['id'] for entry in dataset[section])
            if repeated:
                one = SINGULAR[section]
                raise AnnotationError(
                    f'{path}: {len(repeated)} {one} id(s) appear more than once '
                    f'({first_items(repeated, 5)}); every {one} needs its own id')
        for i, img in enumerate(dataset['images']):
            bad = {k: img[k] for k in ('width', 'height') if isinstance(img[k], bool) or
                   not isinstance(img[k], (int, float)) or not img[k] > 0}
            if bad:
                raise AnnotationError(f"{path}: images[{i}] (id {img['id']!r}) has {bad}; width "
                                      'and height must be positive numbers of pixels')
        images = {img['id']: img for img in dataset['images']}
        orphans = [ann['id'] for ann in dataset['annotations'] if ann['image_id'] not in images]
        if orphans:
            raise AnnotationError(
                f'{path}: {len(orphans)} annotations have an image_id that is not an image of the '
                f'file (annotation ids {first_items(orphans, 5)}); their boxes would be dropped')
        _check_box_format(dataset['annotations'], images, path)

    @staticmethod
    def _fill_defaults(dataset, path: str) -> None:
        """Give annotations without ``iscrowd`` / ``area`` the values COCO's result
        loader (``COCO.loadRes``) uses: 0 and the bbox area; pycocotools' evaluation
        would otherwise stop with a ``KeyError`` after the whole inference pass."""
        filled = {'iscrowd': 0, 'area': 0}
        for ann in dataset['annotations']:
            if 'iscrowd' not in ann:
                ann['iscrowd'] = 0
                filled['iscrowd'] += 1
            if 'area' not in ann and _is_box(ann['bbox']):
                ann['area'] = float(ann['bbox'][2] * ann['bbox'][3])
                filled['area'] += 1
        done = [f'{key} in {n}' for key, n in filled.items() if n]
        if done:
            print_log(f'{path}: filled missing {" and ".join(done)} annotations as COCO\'s '
                      'result loader does (iscrowd=0, area=bbox width x height)',
                      logger='current', level=logging.WARNING)

    def get_cat_ids(self, cat_names=[], sup_names=[], cat_ids=[]):
        """As mmdet's, but every requested class name must be a category name, and
        the ids come in the order of ``cat_names`` (mmdet's follow the file).

        mmdet's datasets and ``CocoMetric`` turn these ids into labels by
        position, so the order decides which class each label means.
        """
        known = [c['name'] for c in self.dataset['categories']]
        missing = [name for name in cat_names if name not in known]
        if missing:
            missing, known = [repr(m) for m in missing], [repr(k) for k in known]
            raise AnnotationError(
                f'{self.annotation_file}: the config\'s classes {first_items(missing)} are not '
                f'among the file\'s category names {first_items(known, 10)}; set '
                'metainfo.classes to names from the file')
        if not cat_names or sup_names or cat_ids:
            return super().get_cat_ids(cat_names, sup_names, cat_ids)
        ids = {}
        for cat in self.dataset['categories']:
            ids.setdefault(cat['name'], []).append(cat['id'])
        shared = [f'{name!r} (ids {ids[name]})' for name in cat_names if len(ids[name]) > 1]
        if shared:
            raise AnnotationError(f'{self.annotation_file}: several categories share the name '
                                  f'{first_items(shared)}; the config\'s classes must name one '
                                  'category each')
        return [ids[name][0] for name in cat_names]


def _repeated(values) -> list:
    seen, repeated = set(), []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


#: more than this fraction of a file's boxes past their image's right or bottom edge
#: means the boxes are not COCO's [x, y, width, height]
PAST_EDGE_FRACTION = 0.5


def _check_box_format(annotations: list, images: dict, path: str) -> None:
    """Refuse a file whose boxes mostly run past their image: boxes written as
    (x1, y1, x2, y2) instead of COCO's (x, y, width, height) look like that, and
    would otherwise be clipped or dropped one by one with a generic warning."""
    past, counted = [], 0
    for ann in annotations:
        img = images[ann['image_id']]
        if not _is_box(ann['bbox']) or not isinstance(img.get('width'), (int, float)):
            continue
        counted += 1
        x, y, w, h = ann['bbox']
        if x + w > img['width'] + 1 or y + h > img['height'] + 1:
            past.append(ann['id'])
    if counted >= 4 and len(past) > PAST_EDGE_FRACTION * counted:
        raise AnnotationError(
            f'{path}: {len(past)} of {counted} boxes run past the right or bottom edge of their '
            f'image (annotation ids {first_items(past, 5)}): the file is probably not COCO '
            '[x, y, width, height] (boxes written as [x1, y1, x2, y2]?)')


def _is_box(bbox) -> bool:
    return (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox))


#: EXIF orientations (tag 0x0112) that cv2 undoes by swapping width and height.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image file as mmcv's cv2 loader returns it.

    Reads the header only. cv2 applies the EXIF orientation, so a transposing
    orientation swaps the stored width and height.

    Raises:
        OSError: the file is empty or not an image.
    """
    from PIL import Image
    with Image.open(path) as img:
        width, height = img.size
        try:
            orientation = img.getexif().get(0x0112)
        except Exception:  # a broken EXIF block: cv2 ignores it as well
            orientation = None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return width, height


@register_dataset
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with clear errors for broken input (see module doc).

    Args:
        check_images: check at start-up that every listed image file exists.
        *args, **kwargs: as ``mmdet.datasets.CocoDataset``.
    """

    COCOAPI = CheckedCOCO

    def __init__(self, *args, check_images: bool = True, **kwargs) -> None:
        self.check_images = check_images
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list:
        """Load as mmdet does, then check image files and report skipped boxes."""
        if not osp.isfile(self.ann_file):
            raise AnnotationError(
                f'annotation file {self.ann_file!r} not found (data_root={self.data_root!r}); '
                'expected a COCO-format JSON file')
        self._skipped = {DEGENERATE: [], OUTSIDE: []}
        self._file_cat_ids: Optional[set] = None
        data_list = super().load_data_list()
        if not data_list:
            raise AnnotationError(f'{self.ann_file}: the file lists no images')
        if self.check_images:
            self._check_image_files(data_list)
        for reason, ann_ids in self._skipped.items():
            if ann_ids:
                print_log(f'{self.ann_file}: skipped {len(ann_ids)} {reason} '
                          f'(annotation ids {first_items(ann_ids)})', logger='current',
                          level=logging.WARNING)
        return data_list

    def _check_image_files(self, data_list: list) -> None:
        missing = [info['img_path'] for info in data_list if not osp.isfile(info['img_path'])]
        if missing:
            raise ImageError(
                f'{self.ann_file}: {len(missing)} of {len(data_list)} listed images are missing '
                f'on disk: {first_items(missing)}; check data_root and data_prefix '
                f'(data_prefix={self.data_prefix!r})')
        unreadable, resized = [], []
        for info in data_list:
            try:
                size = image_size(info['img_path'])
            except OSError as err:
                unreadable.append(f"{info['img_path']} ({one_line(err)})")
                continue
            if size != (info['width'], info['height']):
                resized.append(f"image id {info['img_id']} ({info['img_path']}): "
                               f"{info['width']}x{info['height']} in the file, "
                               f'{size[0]}x{size[1]} on disk')
        if unreadable:
            raise ImageError(f'{self.ann_file}: {len(unreadable)} listed images cannot be read: '
                             f'{first_items(unreadable, sep="; ")}')
        if resized:
            raise AnnotationError(
                f'{self.ann_file}: {len(resized)} images differ in size from their width/height '
                f'(width x height): {first_items(resized, sep="; ")}; boxes outside the '
                'recorded size would be dropped. Fix width and height in the file')

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Check each annotation, count the boxes mmdet skips, then parse as mmdet."""
        if self._file_cat_ids is None:
            self._file_cat_ids = set(self.coco.cats)
        img_info = raw_data_info['raw_img_info']
        for ann in raw_data_info['raw_ann_info']:
            where = (f"{self.ann_file}: annotation id {ann['id']} (image id {img_info['id']}, "
                     f"{img_info['file_name']})")
            if ann['category_id'] not in self._file_cat_ids:
                raise AnnotationError(f"{where} has category_id {ann['category_id']!r}, which is "
                                      f'not among the file\'s categories '
                                      f'{first_items(sorted(self._file_cat_ids), 10)}')
            bbox = ann['bbox']
            if not _is_box(bbox):
                raise AnnotationError(f'{where} has bbox {bbox!r}; expected [x, y, width, height] '
                                      'with 4 finite numbers')
            x, y, w, h = bbox
            ann.setdefault('area', w * h)
            if ann.get('ignore', False):
                continue
            if w < 1 or h < 1 or ann['area'] <= 0:
                self._skipped[DEGENERATE].append(ann['id'])
            elif (min(x + w, img_info['width']) <= max(x, 0)
                  or min(y + h, img_info['height']) <= max(y, 0)):
                self._skipped[OUTSIDE].append(ann['id'])
        return super().parse_data_info(raw_data_info)

    def filter_data(self) -> list:
        """Filter as mmdet does; an empty result is an error, not an empty epoch."""
        data_list = super().filter_data()
        if not data_list:
            raise AnnotationError(
                f'{self.ann_file}: no images left after filtering ({len(self.data_list)} listed, '
                f'filter_cfg={self.filter_cfg}); images without boxes of the config\'s classes '
                'are removed by filter_empty_gt=True')
        return data_list

    def prepare_data(self, idx: int):
        """Run the pipeline; an image that cannot be decoded is an :class:`ImageError`."""
        try:
            return super().prepare_data(idx)
        except DivdetError:
            raise
        except Exception as err:
            info = self.get_data_info(idx)
            path = info['img_path']
            try:
                readable = mmcv.imread(path) is not None
            except Exception:
                readable = False
            if readable:
                raise  # not an image problem: keep the original error and traceback
            raise ImageError(f'{self.ann_file}: image id {info["img_id"]} ({path}) could not be '
                             'decoded; the file is corrupt or not an image '
                             f'({type(err).__name__}: {one_line(err)})') from None
