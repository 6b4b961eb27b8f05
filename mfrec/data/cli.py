"""mfrec-data: fetch MovieLens releases ahead of training, and see which are already there.

    mfrec-data download ml-1m [--root DIR] [--url URL] [--md5 HEX] [--no-progress]
    mfrec-data list [--root DIR]

The data root defaults to ``$MFREC_DATA_DIR``, else ``~/.cache/mfrec``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mfrec.data.download import default_data_root, ensure_release, missing_files
from mfrec.data.releases import RELEASES
from mfrec.errors import MfrecError

PROG = "mfrec-data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Download MovieLens releases for mfrec.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    root_help = "data root (default: $MFREC_DATA_DIR, else ~/.cache/mfrec)"

    download = commands.add_parser(
        "download", help="download, verify and unpack a release unless it is already there",
        description="Download, verify (md5) and unpack a MovieLens release; does nothing if it is already there.",
    )
    download.add_argument("release", help=f"one of: {', '.join(RELEASES)}")
    download.add_argument("--root", type=Path, help=root_help)
    download.add_argument("--url", help="download from this URL instead of GroupLens (its md5 is read from URL.md5)")
    download.add_argument("--md5", help="the zip's expected md5, instead of the one published beside it")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")

    listing = commands.add_parser("list", help="list the releases and whether each is under the data root")
    listing.add_argument("--root", type=Path, help=root_help)
    return parser


def _download(args: argparse.Namespace, root: Path) -> int:
    release = RELEASES.get(args.release)
    if release is None:
        print(f"{PROG}: error: unknown release '{args.release}'; valid: {', '.join(RELEASES)}", file=sys.stderr)
        return 2
    folder = ensure_release(release, root, url=args.url, md5=args.md5, progress=not args.no_progress)
    print(folder)  # on stdout, for scripts: DIR=$(mfrec-data download ml-1m)
    return 0


def _list(root: Path) -> int:
    print(f"data root: {root}")
    width = max(len(name) for name in RELEASES)
    for name, release in RELEASES.items():
        missing = missing_files(release, root)
        folder = root / release.folder
        if not missing:
            state = f"present     {folder}"
        elif folder.exists():
            state = f"incomplete  {folder} lacks {', '.join(missing)}"
        else:
            state = "missing"
        print(f"{name:<{width}}  {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 a failed download, 2 bad usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on bad usage and --help; a caller of main() wants a status
        return exit_.code if isinstance(exit_.code, int) else 2
    root = (args.root or default_data_root()).expanduser()
    try:
        if args.command == "download":
            return _download(args, root)
        return _list(root)
    except MfrecError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (nothing partial was kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
