"""``paravox shard MANIFEST -o SHARDS/``: a manifest's audio cut into tar shards."""

from __future__ import annotations

from paravox.cli.common import check_args, plural
from paravox.data.shards import INDEX, SKIPPED, write_shards


def cmd_shard(args) -> int:
    """Write the shards, then say what they hold and how a recipe reads them."""
    check_args(args)
    s = write_shards(args.manifest, args.output, shard_mb=args.shard_mb,
                     shard_items=args.shard_items, seed=None if args.keep_order else args.seed,
                     overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {plural(s['shards'], 'shard')} to {args.output}: "
          f"{plural(s['items'], 'utterance')}, {s['seconds'] / 3600:.2f} h, "
          f"{s['bytes'] / 1e6:.1f} MB; train on them with train_shards={s['index']}")
    if s["skipped"]:
        print(f"left out {plural(s['skipped'], 'unreadable row')}: listed in "
              f"{args.output}/{SKIPPED}")
    return 0


def add_parsers(sub) -> None:
    """Register ``shard`` on the top-level subparsers."""
    s = sub.add_parser("shard", help="cut a manifest's audio into tar shards for streaming",
                       description="Write the manifest's audio (each file's bytes, unchanged) "
                       f"and rows into tar shards plus {INDEX} (shards, item counts, hours); "
                       "a recipe trains on them with train_shards=FOLDER/index.json.")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True, help="folder for the shards")
    s.add_argument("--shard-mb", type=float, default=256.0,
                   help="close a shard once it holds this many megabytes (default 256)")
    s.add_argument("--shard-items", type=int, default=None,
                   help="close a shard once it holds this many utterances (default: no limit)")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the shuffle of the rows before sharding (default 0)")
    s.add_argument("--keep-order", action="store_true",
                   help="keep the manifest's row order instead of shuffling")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the shards already in the output folder")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_shard)
