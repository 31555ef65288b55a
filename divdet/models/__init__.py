"""divdet models: divided backbones, necks, heads, losses, detectors and classifiers."""
from .backbones import *  # noqa: F401,F403
from .classifiers import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .test_time_augs import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
