"""Convert a checkpoint released with the reference implementation to divdet.

Usage:
    python tools/model_converters/reference2divdet.py CONFIG SRC DST

CONFIG is the divdet classification config with the same arch and S (e.g.
``configs/classification/resnet50-d-s2_8xb32-120e_in1k.py`` for the reference's
``resnet50`` with ``split_factor=2``). The keys ``[module.]models.<i>.*`` become
member ``i`` of the backbone and head; every tensor is checked against the
model's. Use DST as ``load_from``, or for a detector's backbone as
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
from divdet.apis import run_main
from divdet.apis.converters import converter_main, reference_to_divdet

if __name__ == '__main__':
    run_main(lambda: converter_main(reference_to_divdet, 'reference SplitNet'))
