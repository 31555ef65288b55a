"""`pip install --no-deps .` into a fresh virtual environment gives a working divdet
whose declared requirements cover everything `import divdet` imports."""
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Run in the fresh environment: import divdet, and list the distributions that
#: divdet's own modules import but its requirements (with theirs, transitively) omit.
CHECK = textwrap.dedent('''
    import importlib.metadata as md, json, os, re, sys, traceback
    imported = set()  # top-level packages that divdet's own modules import

    class Watch:
        def find_spec(self, name, path=None, target=None):
            frames = [f for f in traceback.extract_stack()[:-1]
                      if '<frozen' not in f.filename and 'importlib' not in f.filename]
            if frames and os.sep + 'divdet' + os.sep in frames[-1].filename:
                imported.add(name.split('.')[0])
            return None

    sys.meta_path.insert(0, Watch())
    import divdet
    from divdet.fusion import wbf
    dist = md.distribution('divdet')
    def names(reqs):
        return {re.split(r'[ ;<>=!~\\[(]', r, maxsplit=1)[0].lower().replace('_', '-')
                for r in reqs or [] if 'extra ==' not in r}
    declared, todo = set(), names(dist.requires)
    while todo:
        name = todo.pop()
        if name in declared:
            continue
        declared.add(name)
        try:
            todo |= names(md.requires(name))
        except md.PackageNotFoundError:
            pass
    owners = md.packages_distributions()
    used = {d.lower().replace('_', '-') for m in imported for d in owners.get(m, [])}
    print(json.dumps(dict(location=divdet.__file__, c_wbf=wbf.HOST_KERNEL,
                          used=sorted(used), undeclared=sorted(used - declared - {'divdet'}),
                          requires=sorted(names(dist.requires)))))
''')


@pytest.mark.timeout(600)
def test_no_deps_install_imports_with_honest_requirements(tmp_path):
    import json
    env_dir = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(env_dir)], check=True)
    python = env_dir / 'bin' / 'python'
    site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()'
                           '["purelib"])'], check=True, capture_output=True, text=True
                          ).stdout.strip()
    # the project's packages beside the fresh environment (after its own site-packages)
    Path(site, 'project_packages.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PIP_REQUIRE_VIRTUALENV')}
    install = subprocess.run(
        [str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
         '--no-index', str(ROOT)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    out = subprocess.run([str(python), '-c', CHECK], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['location'].startswith(site)  # the installed copy, not the checkout
    assert result['c_wbf']  # the operator's C++ kernel was built and installed with it
    assert result['undeclared'] == [], f'imported but not required: {result["undeclared"]}'
    assert {'mmpretrain', 'mmdet', 'mmcv', 'mmengine', 'torch'} <= set(result['used'])
    assert {'mmpretrain', 'mmdet', 'mmcv', 'mmengine', 'torch'} <= set(result['requires'])
    assert 'ensemble-boxes' not in result['requires']  # a test extra only
