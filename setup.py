from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / 'xfusion' / 'version.py').read_text(), version)


def requirements(name: str) -> list[str]:
    lines = (here / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name='xfusion',
    version=version['__version__'],
    description='Spatiotemporal fusion of two-camera ultra-high-speed x-ray videos, as a BasicSR extension',
    long_description=(here / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    # the option files of options/ ship inside the package too (xfusion/option_files), so that an
    # installed xfusion (xfusion bench, the recipes) needs no source tree
    packages=find_packages(include=['xfusion', 'xfusion.*']) + ['xfusion.option_files'],
    package_dir={'xfusion.option_files': 'options'},
    # the packaged networks (xfusion/pretrained/<name>/: weights, options, model card), a few MB in all
    package_data={'xfusion.option_files': ['*.yml', '*/*.yml'],
                  'xfusion.pretrained': ['index.json', '*/net_g.pth', '*/options.yml', '*/card.json', '*/card.md']},
    python_requires='>=3.10',
    install_requires=requirements('requirements.txt'),
    # cameras: the readers of Photron MRAW (pyMRAW, which needs numba) and Phantom CINE (pycine-lite's header
    # structures); frame folders, TIFF (with Phantom .xml / Shimadzu .ini) and DataExchange need nothing more
    extras_require={'test': requirements('requirements-test.txt'),
                    'cameras': ['pyMRAW==0.33.0', 'pycine-lite==0.4.0', 'numba==0.68.1', 'xmltodict==1.0.4']},
    entry_points={'console_scripts': ['xfusion=xfusion.commands:main']},
)
