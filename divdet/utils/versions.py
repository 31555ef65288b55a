"""Check at import that the OpenMMLab packages divdet runs on are supported."""
from importlib import import_module

from packaging.version import Version

#: package -> (minimum inclusive, maximum exclusive, what to install)
SUPPORTED_VERSIONS: dict[str, tuple[str, str, str]] = {
    'mmcv': ('2.0.0', '2.2.0',
             'mmcv 2.1.0 built with its ops: run `bash tools/setup_env.sh`'),
    'mmengine': ('0.10.0', '0.11.0', 'pip install "mmengine==0.10.7"'),
    'mmdet': ('3.3.0', '3.4.0', 'pip install "mmdet==3.3.0"'),
    'mmpretrain': ('1.2.0', '1.3.0', 'pip install "mmpretrain==1.2.0"'),
}


def check_dependencies() -> None:
    """Raise ImportError naming the package, the found version and the fix.

    Raises:
        ImportError: if a package is missing or outside its supported range.
    """
    problems = []
    for name, (low, high, fix) in SUPPORTED_VERSIONS.items():
        try:
            found = import_module(name).__version__
        except ImportError as exc:
            problems.append(f'{name} is not installed ({exc}); expected '
                            f'{name}>={low},<{high}. Fix: {fix}')
            continue
        if not Version(low) <= Version(found) < Version(high):
            problems.append(f'{name} {found} is installed; divdet supports '
                            f'{name}>={low},<{high}. Fix: {fix}')
    if problems:
        raise ImportError('divdet cannot start:\n  ' + '\n  '.join(problems))
