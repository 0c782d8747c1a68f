"""``python -m workers`` is ``yoloq worker``."""

import sys

from yoloq.cli import main

main(["worker", *sys.argv[1:]])
