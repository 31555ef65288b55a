"""Weights from elsewhere into divdet models.

Two sources:

* The reference implementation's released classification checkpoints
  (``SplitNet``): ``state_dict`` keys ``[module.]models.<i>.<name>``, one
  torchvision-style ResNet per member, with ``layer0`` the stem
  (ImageNet: conv-bn-relu x 3 then max-pool, indices 0/1, 3/4, 6/7; CIFAR:
  conv-bn at 0/1), ``layer1..4`` the stages and ``fc`` the classifier.
* A torchvision ResNet-50 state dict (``conv1``, ``bn1``, ``layer1..4``,
  ``fc``): one undivided member of divdet's ``resnet50`` arch.

The converted keys are checked against the model a config builds: every
backbone tensor must be present with the model's shape, and nothing may be
left over, so a converted checkpoint either loads completely or the converter
says which tensors do not fit.
"""
from __future__ import annotations

import io
import os.path as osp
import re
from typing import Callable, Mapping

import torch

from divdet.apis.cli import ArgumentParser
from divdet.models.divided.checks import describe_mismatch
from divdet.utils.errors import CheckpointMismatchError, MissingFileError

#: Reference ImageNet deep stem (layer0) index -> divdet (mmpretrain ResNetV1d) module.
DEEP_STEM = {'0': 'stem.0.conv', '1': 'stem.0.bn', '3': 'stem.1.conv', '4': 'stem.1.bn',
             '6': 'stem.2.conv', '7': 'stem.2.bn'}
#: Reference CIFAR stem (layer0) index -> divdet (mmpretrain ResNet_CIFAR) module.
CIFAR_STEM = {'0': 'conv1', '1': 'bn1'}
REFERENCE_KEY = re.compile(r'^(?:module\.)?models\.(\d+)\.(.+)$')


def unwrap_state_dict(checkpoint, path: str = 'the checkpoint') -> dict:
    """The tensors of a checkpoint saved as a state dict or as ``{'state_dict': ...}``.

    Raises:
        CheckpointMismatchError: the file holds something else (a list, a tensor)
            or names that are not all tensors.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f'{path}: expected a state dict (name -> tensor) or '
                                      f"{{'state_dict': ...}}, found a {type(checkpoint).__name__}")
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    bad = [k for k, v in checkpoint.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointMismatchError(f'{path}: expected a state dict of tensors; {len(bad)} '
                                      f'entries are not (first: {bad[0]!r})')
    return dict(checkpoint)


def reference_to_divdet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference ``SplitNet`` state dict to divdet classifier keys.

    ``models.<i>.layer0.*`` becomes ``backbone.members.<i>.stem.*`` (ImageNet)
    or ``backbone.members.<i>.conv1/bn1`` (CIFAR), ``layer1..4`` keep their
    names under ``backbone.members.<i>.``, and ``fc`` goes to
    ``head.members.<i>.fc``.

    Raises:
        CheckpointMismatchError: a key outside ``[module.]models.<i>.``.
    """
    deep = any(re.match(r'^(?:module\.)?models\.\d+\.layer0\.3\.', k) for k in state)
    stem = DEEP_STEM if deep else CIFAR_STEM
    out = {}
    for key, value in state.items():
        match = REFERENCE_KEY.match(key)
        if match is None:
            raise CheckpointMismatchError(
                f'{key!r} is not a reference SplitNet key; expected [module.]models.<i>.<name>')
        i, name = match.groups()
        if name.startswith('fc.'):
            out[f'head.members.{i}.{name}'] = value
            continue
        if name.startswith('layer0.'):
            index, rest = name[len('layer0.'):].split('.', 1)
            if index not in stem:
                raise CheckpointMismatchError(f'{key!r}: layer0.{index} is not a conv or norm of '
                                              'the reference stem')
            name = f'{stem[index]}.{rest}'
        out[f'backbone.members.{i}.{name}'] = value
    return out


def torchvision_to_divdet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state dict to one divdet member (member 0).

    The classifier ``fc`` goes to ``head.members.0.fc`` (kept only if the
    target model has that head, see :func:`fit_to_model`).
    """
    out = {}
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        part = 'head' if key.startswith('fc.') else 'backbone'
        out[f'{part}.members.0.{key}'] = value
    return out


def _unused_part(key: str, own: Mapping) -> bool:
    """A classifier head or backbone stage the model does not build at all."""
    match = re.match(r'^(head\.|backbone\.members\.\d+\.layer\d+\.)', key)
    return match is not None and not any(k.startswith(match.group(1)) for k in own)


def fit_to_model(converted: Mapping[str, torch.Tensor], model: torch.nn.Module,
                 source: str, drop_unused: bool = False) -> dict[str, torch.Tensor]:
    """Check converted tensors against ``model`` and return those it takes.

    Args:
        converted: divdet-named tensors.
        model: the model the config builds.
        source: what was converted, for messages (``'torchvision ResNet-50'``).
        drop_unused: drop the tensors of parts the model does not build at all
            (a detector has no classifier, SSD uses three backbone stages)
            instead of refusing them.

    Raises:
        CheckpointMismatchError: a backbone tensor is missing, a tensor has
            another shape than the model's, or a tensor has no place.
    """
    own = model.state_dict()
    if drop_unused:
        converted = {k: v for k, v in converted.items() if k in own or not _unused_part(k, own)}
    required = [k for k in own if k.startswith('backbone.')
                and not k.endswith('num_batches_tracked')]
    parts = describe_mismatch(converted, own, required)
    if parts:
        arch = getattr(getattr(model, 'backbone', None), 'arch', '?')
        num = getattr(model, 'num_members', '?')
        raise CheckpointMismatchError(
            f'the {source} weights do not fit the config\'s model (arch={arch!r}, '
            f'num_members={num}): ' + '; '.join(parts))
    return dict(converted)


def convert_checkpoint(config: str, src: str, dst: str, rename: Callable[[dict], dict],
                       source: str) -> dict:
    """Rename ``src``'s tensors, fit them to ``config``'s model, write ``dst``.

    The checkpoint is read with ``weights_only=True`` (divdet's safe loader)
    and written atomically; its ``meta`` records the source, config, S, arch
    and the source tensors the model has no part for (``unused``).

    Returns:
        The written state dict.
    """
    from mmengine.registry import MODELS, init_default_scope

    from divdet.apis.runner import read_config
    from divdet.utils import load_from_local_safe
    from divdet.utils.files import check_writable, write_output

    for path in (config, src):
        if not osp.isfile(path):
            raise MissingFileError(f'{path!r} does not exist')
    check_writable(dst, 'the destination')
    cfg = read_config(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    state = unwrap_state_dict(load_from_local_safe(src), src)
    renamed = rename(state)
    fitted = fit_to_model(renamed, model, source, drop_unused=True)
    # a whole model converted (every parameter there): divdet's own buffers that no source
    # has (e.g. the co-training weight) get the model's initial values, so that the output
    # loads whole as load_from; a backbone-only conversion stays backbone-only
    params = dict(model.named_parameters())
    if all(k in fitted for k in params):
        fitted.update({k: v for k, v in model.state_dict().items() if k not in fitted})
    meta = dict(converted_from=osp.abspath(src), source=source, config=config,
                unused=sorted(set(renamed) - set(fitted)),
                num_members=getattr(model, 'num_members', None),
                arch=getattr(model.backbone, 'arch', None))
    buffer = io.BytesIO()
    torch.save(dict(state_dict=fitted, meta=meta), buffer)
    write_output(buffer.getvalue(), dst, 'the destination')
    return fitted


def converter_main(rename: Callable[[dict], dict], source: str) -> None:
    """The command line of ``tools/model_converters/*2divdet.py``: CONFIG SRC DST."""
    parser = ArgumentParser(description=f'{source} checkpoint -> divdet')
    parser.add_argument('config', help='the divdet config whose model receives the weights')
    parser.add_argument('src', help='the source checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the divdet checkpoint (.pth)')
    args = parser.parse_args()
    fitted = convert_checkpoint(args.config, args.src, args.dst, rename, source)
    print(f'{len(fitted)} tensors from {args.src} ({source}) written to {args.dst}')
