"""Install divdet: Divide and Co-training for MMDetection 3 and mmpretrain."""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'",
                    (ROOT / 'divdet' / 'version.py').read_text()).group(1)


def extensions() -> dict:
    """The torch operator divdet::weighted_boxes_fusion with its C++ CPU kernel.

    Built against the installed torch (``pip install --no-build-isolation``);
    without torch at build time divdet installs without it and fuses with its
    torch implementation. -O3 vectorises the IoU loop; no FMA contraction, so
    that the kernel stays bitwise equal to the torch implementation.
    """
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return {}
    sources = ['divdet/fusion/csrc/wbf_kernel.cpp', 'divdet/fusion/csrc/wbf_op.cpp']
    ext = CppExtension('divdet.fusion._C', sources, py_limited_api=False,
                       extra_compile_args=['-O3', '-g0', '-ffp-contract=off', '-std=c++20'])
    return dict(ext_modules=[ext], cmdclass=dict(build_ext=BuildExtension.with_options(
        no_python_abi_suffix=False)))


setup(
    name='divdet',
    version=VERSION,
    description='Divide and Co-training for MMDetection 3 and mmpretrain',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.9',
    **extensions(),
    # Honest ranges: what `import divdet` needs (tests/test_install.py checks that
    # every package divdet imports is declared here or comes with one that is).
    # requirements/*.txt pin the verified environment, and tools/setup_env.sh
    # builds mmcv with its ops.
    install_requires=[
        'torch>=2.0',
        'torchvision>=0.15',
        'mmengine>=0.10.0,<0.11',
        'mmcv>=2.0.0,<2.2.0',
        'mmdet>=3.3.0,<3.4',
        'mmpretrain>=1.2.0,<1.3',
        'pycocotools>=2.0',
        'numpy',
        'packaging',
    ],
    extras_require={
        # the tools' plots (study, classification demo) and the digits data set
        'tools': ['matplotlib', 'scikit-learn'],
        # ensemble-boxes: the reference the tests and the benchmark compare WBF with
        # tools/deployment/export.py --format onnx: the exporter and onnxruntime
        'export': ['onnx>=1.17', 'onnxruntime>=1.20', 'onnxscript>=0.5'],
        # mmdet's own analysis tools (mmdet/.mim/tools: benchmark.py needs psutil,
        # analyze_logs.py seaborn), which divdet's configs and checkpoints work with
        'mmdet-tools': ['psutil', 'seaborn'],
        'tests': ['pytest>=8', 'pytest-timeout', 'ruff', 'ensemble-boxes>=1.0.9,<1.1',
                  'matplotlib', 'scikit-learn', 'onnx>=1.17', 'onnxruntime>=1.20',
                  'onnxscript>=0.5'],
    },
    license='Apache-2.0',
)
