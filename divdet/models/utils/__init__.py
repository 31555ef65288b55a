"""What the divided heads and the fusers share: NMS computed without holding the GIL."""
from .nms import nms, resolve_nms_cfg

__all__ = ['nms', 'resolve_nms_cfg']
