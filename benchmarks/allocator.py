"""glibc's allocator with its own settings against stransfer's (device.reuse_freed_memory): ms per pass and peak
resident memory of each engine's network pass, each case in a fresh process, fp32.

    python benchmarks/allocator.py [--repeats 3] [--gatys-size 512] [--size 1024] [--threads N]

Rows: a Gatys evaluation (VGG16 to relu4_3 forward, Gram losses, backward to the pixels), a Johnson image
(shipped architecture) and an AdaIN image (encoder to relu4_1 and the decoder), in the layout each engine uses;
random weights (they do not change the speed). "glibc default" runs with MALLOC_MMAP_MAX_ set to glibc's own
default, which stransfer leaves alone. About 2 minutes on 2 AVX2-only cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

import torch

from layout import AdainPass, feed_forward, gatys_evaluation
from stransfer.device import GLIBC_MALLOC_ENV, make_runtime
from stransfer.engines.johnson import JohnsonArch, TransformerNet
from stransfer.train.johnson import JohnsonTrainConfig
from timing import cpu_kind, ms_per_call

GLIBC_DEFAULT = {"MALLOC_MMAP_MAX_": "65536"}  # glibc's documented default: blocks over the threshold are mmapped


def one_case(case: str, size: int, repeats: int) -> dict[str, float]:
    device = make_runtime("cpu").device  # applies stransfer's allocator settings unless MALLOC_* says otherwise
    torch.manual_seed(0)
    if case == "gatys":
        run = gatys_evaluation(device, size)(torch.channels_last)
    elif case == "johnson":
        cfg = JohnsonTrainConfig()
        net = TransformerNet(JohnsonArch(width=cfg.width, residual_blocks=cfg.residual_blocks))
        run = feed_forward(net, device, size)(torch.contiguous_format)
    else:
        run = feed_forward(AdainPass(), device, size)(torch.channels_last)
    ms = ms_per_call(run, device, repeats)
    return {"ms": ms, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gatys-size", type=int, default=512)
    parser.add_argument("--size", type=int, default=1024, help="Johnson and AdaIN image side")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # a child process: one case, JSON out
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        size = args.gatys_size if args.case == "gatys" else args.size
        print(json.dumps(one_case(args.case, size, args.repeats)))
        return
    print(f"# allocator: cpu, {torch.get_num_threads()} threads, {platform.machine()} ({cpu_kind()}), "
          f"torch {torch.__version__}, fp32\n")
    print("| pass | glibc default ms | stransfer ms | speed-up | glibc default peak GB | stransfer peak GB |")
    print("|---|---|---|---|---|---|")
    cases = (("gatys", f"gatys evaluation {args.gatys_size} px"), ("johnson", f"johnson image {args.size} px"),
             ("adain", f"adain image {args.size} px"))
    for case, label in cases:
        results = []
        for extra in (GLIBC_DEFAULT, {}):
            env = {k: v for k, v in os.environ.items() if k not in GLIBC_MALLOC_ENV} | extra
            cmd = [sys.executable, __file__, "--case", case, "--repeats", str(args.repeats),
                   "--gatys-size", str(args.gatys_size), "--size", str(args.size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        before, after = results
        print(f"| {label} | {before['ms']:.0f} | {after['ms']:.0f} | {before['ms'] / after['ms']:.2f}x "
              f"| {before['peak_gb']:.2f} | {after['peak_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
