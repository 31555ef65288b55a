"""The split factor S, written once on a detector or classifier, passed to its parts.

How the members run is :mod:`divdet.models.utils.runtime`."""
from __future__ import annotations

from divdet.utils.errors import ConfigError


def with_members(cfg: dict, num_members: int, where: str, owner: str, **overrides) -> dict:
    """A copy of a part's config with ``num_members`` (and ``overrides``) set.

    S is written once, on the detector or classifier; a part that gives its own,
    different ``num_members`` is a config error.

    Args:
        cfg: the part's config (backbone, neck or head).
        num_members: the owner's S.
        where: the part's key, for the error message (``'backbone'``).
        owner: ``'detector'`` or ``'classifier'``, for the error message.
        **overrides: other keys to set (e.g. ``fused``).

    Raises:
        ValueError: the part's ``num_members`` disagrees with the owner's.
    """
    given = cfg.get('num_members', num_members)
    if given != num_members:
        raise ConfigError(f'S is set once, on the {owner}: model.{where}.num_members={given} '
                         f'disagrees with model.num_members={num_members}')
    return dict(cfg, num_members=num_members, **overrides)
