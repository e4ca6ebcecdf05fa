"""What every measurement record of docs/results/ carries: the command that made it, the machine and the date."""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import torch

from xfusion.commands.bench import machine_info


def header(argv: list[str] | None = None) -> dict:
    """{'command', 'date', 'machine'} of the measurement this process makes."""
    argv = sys.argv if argv is None else argv
    command = 'python ' + ' '.join(shlex.quote(a) for a in [str(Path(argv[0]).as_posix()), *argv[1:]])
    return {'command': command, 'date': time.strftime('%Y-%m-%d'),
            'machine': machine_info('cpu', torch.get_num_threads())}


def write(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=float) + '\n')
    print(f'wrote {path}')
