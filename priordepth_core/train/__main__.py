"""``python -m priordepth_core.train --config config/train/<name>.yaml [--set a.b=value ...] [--resume]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import ConfigError, load_config
from .trainer import TrainingStopped, train_main

EXAMPLE = """example:
  python -m priordepth_core.train --config config/train/synthetic_driving.yaml --set optim.max_steps=2000
  python -m priordepth_core.train --config config/train/synthetic_driving.yaml --resume   # continue last.pt
  torchrun --nproc_per_node 2 -m priordepth_core.train --config ...                        # data parallel
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.train", description=__doc__,
                                     epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (overrides of the defaults in config.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optim.lr=2e-4 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <run.out_dir>/last.pt (or, if it is unreadable, the newest intact "
                             "previous.pt / epoch_*.pt)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    try:
        train_main(config, resume=args.resume)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signum  # the shell's convention for "ended by this signal"
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
