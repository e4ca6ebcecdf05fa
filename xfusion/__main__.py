"""python -m xfusion ...: the xfusion command."""
import sys

from xfusion.commands import main

sys.exit(main())
