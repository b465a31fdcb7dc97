"""The `robustops` command: info, bench (quickstart, train and eval come with their issues)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional


def _cmd_info(args) -> int:
    import torch

    from . import __version__, backend

    info = backend.build_info()
    print(f"robustops {__version__}")
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}; "
          f"GPU visible: {torch.cuda.is_available()})")
    if "error" in info:
        print(f"extension robustops._C: NOT AVAILABLE ({info['error']})")
    else:
        print("extension robustops._C:")
        for k, v in info.items():
            print(f"  {k}: {v}")
    print(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}")
    print(f"requested backend: {backend.current()}")
    print(f"available backends: {', '.join(backend.available())}")
    return 0


def _cmd_bench(args) -> int:
    from .bench import pgd_step as bench_pgd
    from .bench.timing import set_threads

    from .bench.timing import keep_freed_memory

    threads = set_threads(args.threads)
    warm = keep_freed_memory() if args.allocator == "warm" else False
    shapes = bench_pgd.SHAPES[:1] if args.quick else bench_pgd.SHAPES
    repeats = args.repeats or (30 if args.quick else 100)
    print(f"robustops bench: {threads} threads, medians of {repeats} interleaved repetitions "
          "(each case timed side by side in this process); allocator: "
          f"{'warm (freed memory kept, eager at its best)' if warm else 'default glibc'}", flush=True)
    records = []
    if args.only in (None, "pgd_step"):
        table, recs = bench_pgd.report(shapes=shapes, repeats=repeats)
        records += recs
        print(table)
        print("speedup = eager / fused; 'via op' = the same kernel called through the "
              "torch.library dispatcher; bandwidth counts the bytes the step must move "
              "(read x, x_nat, grad; write x) against copy_ of the same tensor (read + write).")
    if args.only in (None, "attacks"):
        from .bench import attacks as bench_attacks

        table, recs = bench_attacks.report(quick=args.quick)
        records += recs
        print()
        print(table)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"threads": threads, "repeats": repeats, "allocator": args.allocator,
                       "results": records}, f, indent=2)
        os.replace(tmp, args.json)  # atomic: a killed run never leaves half a file
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robustops", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="build info and available backends")
    s.set_defaults(fn=_cmd_info)
    s = sub.add_parser("bench", help="ratio table: fused kernels vs eager PyTorch vs copy_")
    s.add_argument("--quick", action="store_true", help="one small shape, fewer repetitions")
    s.add_argument("--repeats", type=int, default=None, help="interleaved repetitions per case")
    s.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    s.add_argument("--json", default=None, help="also write the results to this JSON file")
    s.add_argument("--only", choices=("pgd_step", "attacks"), default=None,
                   help="run one group of cases (default: all)")
    s.add_argument("--allocator", choices=("warm", "default"), default="warm",
                   help="warm: glibc keeps freed memory so eager code is not re-faulting "
                        "pages (conservative ratios); default: leave glibc as it is")
    s.set_defaults(fn=_cmd_bench)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
