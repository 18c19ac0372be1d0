#!/usr/bin/python3
"""OpenBLAS sgemm on the same shapes and layouts as bench/matmul.ts, for comparison.

    /usr/bin/python3 scripts/openblas_matmul.py [--json] [--quick] [--threads N] [--cblas] [--vs-llmts]

numpy (Debian) calls the generic libblas.so.3, which update-alternatives points at OpenBLAS
(libopenblas0-openmp); the script checks that OpenBLAS is really the library loaded and prints its
core type. Default: np.matmul on transposed views (out = inp·Wᵀ, dinp = dout·W, dW = doutᵀ·inp, no
accumulation, no bias). --cblas calls cblas_sgemm directly with beta=1 for the "+=" layouts, which
is exactly what our kernels compute (still without bias). Thread count: OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS are set before numpy loads (default 2); 1-thread figures at BT=1024 come from
openblas_set_num_threads. OPENBLAS_CORETYPE, if set in the environment, selects OpenBLAS's kernels
(e.g. Haswell = AVX2 only): it is reported, not changed.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--json", action="store_true")
parser.add_argument("--quick", action="store_true")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--cblas", action="store_true", help="cblas_sgemm with beta=1 instead of np.matmul")
parser.add_argument("--vs-llmts", action="store_true",
                    help="head to head: load zig-out/lib/libllmts.so too and alternate blocks of calls "
                         "(ours, then OpenBLAS cblas_sgemm) per shape, so bursts of load from other "
                         "processes hit both; prints median and best of each")
parser.add_argument("--llmts-lib", help="with --vs-llmts: the kernel library to load (default zig-out/lib/libllmts.so)")
args = parser.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread variables)

np.matmul(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32))  # loads the BLAS
blas_paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line and ".so" in line})
core = [p for p in blas_paths if "libopenblas" in p]
if not core:
    sys.exit("numpy is not using OpenBLAS (check update-alternatives --display libblas.so.3-x86_64-linux-gnu)")
openblas = ctypes.CDLL(core[0])
openblas.openblas_get_corename.restype = ctypes.c_char_p
openblas.openblas_get_config.restype = ctypes.c_char_p
corename = openblas.openblas_get_corename().decode()
coretype_env = os.environ.get("OPENBLAS_CORETYPE")

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50304)]
LAYOUTS = ["fwd", "dinp", "dweight"]
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
fptr = ctypes.POINTER(ctypes.c_float)
openblas.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, fptr, ctypes.c_int, fptr, ctypes.c_int, ctypes.c_float, fptr, ctypes.c_int]


def p(a):
    return a.ctypes.data_as(fptr)


def operands(rng, BT, C, OC):
    """Random inp, w, dout and the three outputs (out, dinp, dw) of one linear-layer shape."""
    inp = rng.standard_normal((BT, C), np.float32)
    w = rng.standard_normal((OC, C), np.float32)
    dout = rng.standard_normal((BT, OC), np.float32)
    return inp, w, dout, np.empty((BT, OC), np.float32), np.zeros((BT, C), np.float32), np.zeros((OC, C), np.float32)


def make_call(layout, BT, C, OC):
    inp, w, dout, out, dinp, dw = operands(np.random.default_rng(1), BT, C, OC)
    if not args.cblas:
        if layout == "fwd":
            return lambda: np.matmul(inp, w.T, out=out)
        if layout == "dinp":
            return lambda: np.matmul(dout, w, out=dinp)
        return lambda: np.matmul(dout.T, inp, out=dw)
    if layout == "fwd":  # out(BT,OC) = inp(BT,C) · W(OC,C)ᵀ
        return lambda: openblas.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, BT, OC, C, 1.0, p(inp), C, p(w), C, 0.0, p(out), OC)
    if layout == "dinp":  # dinp(BT,C) += dout(BT,OC) · W(OC,C)
        return lambda: openblas.cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, BT, C, OC, 1.0, p(dout), OC, p(w), C, 1.0, p(dinp), C)
    # dW(OC,C) += dout(BT,OC)ᵀ · inp(BT,C)
    return lambda: openblas.cblas_sgemm(ROW_MAJOR, TRANS, NO_TRANS, OC, C, BT, 1.0, p(dout), OC, p(inp), C, 1.0, p(dw), C)


def time_ms(call, reps):
    call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def reps_for(BT, C, OC):
    if args.quick:
        return 3
    return 5 if 2 * BT * C * OC / 1e9 > 20 else 9


rows = []


def measure(threads, BTs):
    openblas.openblas_set_num_threads(threads)
    for BT in BTs:
        for C, OC in SHAPES:
            for layout in LAYOUTS:
                ms = time_ms(make_call(layout, BT, C, OC), reps_for(BT, C, OC))
                rows.append({"layout": layout, "BT": BT, "C": C, "OC": OC, "threads": threads, "ms": ms,
                             "gflops": 2 * BT * C * OC / ms / 1e6, "system": "openblas"})


def head_to_head():
    """Same process, same arrays, alternating blocks of calls; idle gaps let each side's spinning
    threads go to sleep before the other side runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = ctypes.CDLL(args.llmts_lib or os.path.join(root, "zig-out", "lib", "libllmts.so"))
    if ours.llmts_pool_init(args.threads) != args.threads:
        sys.exit("could not start the llm.ts pool")
    openblas.openblas_set_num_threads(args.threads)
    ours.llmts_matmul_forward.argtypes = [fptr, fptr, fptr, fptr] + [ctypes.c_int] * 3
    ours.llmts_matmul_backward_input.argtypes = [fptr, fptr, fptr] + [ctypes.c_int] * 3
    ours.llmts_matmul_backward_weight.argtypes = [fptr, fptr, fptr, fptr] + [ctypes.c_int] * 3
    rng = np.random.default_rng(1)
    for BT in [256] if args.quick else [256, 1024]:
        for C, OC in SHAPES:
            inp, w, dout, out, dinp, dw = operands(rng, BT, C, OC)
            calls = {
                "fwd": (lambda: ours.llmts_matmul_forward(p(out), p(inp), p(w), None, BT, C, OC),
                        lambda: openblas.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, BT, OC, C, 1.0, p(inp), C, p(w), C, 0.0, p(out), OC)),
                "dinp": (lambda: ours.llmts_matmul_backward_input(p(dinp), p(dout), p(w), BT, C, OC),
                         lambda: openblas.cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, BT, C, OC, 1.0, p(dout), OC, p(w), C, 1.0, p(dinp), C)),
                "dweight": (lambda: ours.llmts_matmul_backward_weight(p(dw), None, p(dout), p(inp), BT, C, OC),
                            lambda: openblas.cblas_sgemm(ROW_MAJOR, TRANS, NO_TRANS, OC, C, BT, 1.0, p(dout), OC, p(inp), C, 1.0, p(dw), C)),
            }
            for layout, pair in calls.items():
                times = ([], [])
                rounds = 2 if args.quick else 4
                per_block = 2 if 2 * BT * C * OC / 1e9 > 20 else 4
                for _ in range(rounds):
                    for side in (0, 1):
                        pair[side]()  # warm-up after the idle gap
                        for _ in range(per_block):
                            start = time.perf_counter()
                            pair[side]()
                            times[side].append((time.perf_counter() - start) * 1e3)
                        time.sleep(0.03)
                flop = 2 * BT * C * OC
                for side, system in ((0, "llmts"), (1, "openblas")):
                    ms = statistics.median(times[side])
                    rows.append({"layout": layout, "BT": BT, "C": C, "OC": OC, "threads": args.threads, "ms": ms,
                                 "gflops": flop / ms / 1e6, "ms_min": min(times[side]),
                                 "gflops_best": flop / min(times[side]) / 1e6, "system": system})


if args.vs_llmts:
    head_to_head()
else:
    measure(args.threads, [256] if args.quick else [256, 1024])
    if not args.quick and args.threads > 1:
        measure(1, [1024])

if args.json:
    for r in rows:
        print(json.dumps(r))
else:
    print(f"OpenBLAS {openblas.openblas_get_config().decode()}, core {corename}, OPENBLAS_CORETYPE={coretype_env}, "
          f"{'cblas_sgemm (beta=1 for +=)' if args.cblas else 'np.matmul'}")
    if args.vs_llmts:
        print("head to head, same process, alternating blocks; medians and best calls (GFLOP/s); bias not included on either side")
        print("layout   BT     C     OC  thr   llmts med  best   openblas med  best   ratio(best)")
        for ours_row, blas_row in zip(rows[0::2], rows[1::2]):
            r = ours_row
            print(f"{r['layout']:<7} {r['BT']:>4} {r['C']:>5} {r['OC']:>6} {r['threads']:>4} {ours_row['gflops']:>11.1f} {ours_row['gflops_best']:>5.0f}"
                  f" {blas_row['gflops']:>14.1f} {blas_row['gflops_best']:>5.0f} {ours_row['gflops_best'] / blas_row['gflops_best']:>9.2f}")
    else:
        print("layout   BT     C     OC  thr       ms   GFLOP/s")
        for r in rows:
            print(f"{r['layout']:<7} {r['BT']:>4} {r['C']:>5} {r['OC']:>6} {r['threads']:>4} {r['ms']:>8.3f} {r['gflops']:>9.1f}")
