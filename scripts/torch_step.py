#!/usr/bin/python3
"""Times a full GPT-2 training step (forward + backward + AdamW) in PyTorch on the CPU, from an
llm.c checkpoint, for comparison with bench/step.ts. Prints one JSON line.

  /usr/bin/python3 scripts/torch_step.py CHECKPOINT TOKENS_INT32 B T [--threads 2 --warmup 2 --steps 5] [--autocast]

--autocast runs the forward pass under torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN bf16
matmuls where the CPU has them; the loss in fp32): PyTorch's mixed-precision counterpart of
llm.ts's --matmul-precision bf16.

TOKENS_INT32 holds B*T+1 raw little-endian int32 tokens (inputs = first B*T, targets shifted by 1).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import NAMES, read_checkpoint  # noqa: E402

PER_LAYER = {"ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"}


def forward(P, cfg, idx):
    B, T = idx.shape
    C, NH, L = cfg["C"], cfg["NH"], cfg["L"]
    hs = C // NH
    x = P["wte"][idx] + P["wpe"][:T]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(L):
        h = F.layer_norm(x, (C,), P["ln1w"][l], P["ln1b"][l], 1e-5)
        qkv = F.linear(h, P["qkvw"][l], P["qkvb"][l])
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, dim=2))
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(hs) + mask).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, P["attprojw"][l], P["attprojb"][l])
        h = F.layer_norm(x, (C,), P["ln2w"][l], P["ln2b"][l], 1e-5)
        h = F.gelu(F.linear(h, P["fcw"][l], P["fcb"][l]), approximate="tanh")
        x = x + F.linear(h, P["fcprojw"][l], P["fcprojb"][l])
    x = F.layer_norm(x, (C,), P["lnfw"], P["lnfb"], 1e-5)
    return F.linear(x, P["wte"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("tokens")
    ap.add_argument("B", type=int)
    ap.add_argument("T", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--autocast", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, tensors = read_checkpoint(args.checkpoint)
    V = cfg["V"]
    tokens = np.fromfile(args.tokens, dtype="<i4").astype(np.int64)
    assert tokens.size == args.B * args.T + 1
    idx = torch.from_numpy(tokens[:-1].reshape(args.B, args.T))
    targets = torch.from_numpy(tokens[1:].reshape(args.B, args.T))
    # One Parameter per layer and tensor, as an nn.Module would hold them: indexing a stacked (L,...)
    # Parameter makes autograd materialise a full (L,...) zero gradient per layer (SelectBackward),
    # which tripled PyTorch's backward time here and would make the comparison unfair.
    P = {}
    for n in NAMES:
        t = tensors[n]
        if n in PER_LAYER:
            P[n] = [torch.nn.Parameter(torch.from_numpy(np.array(t[l]))) for l in range(cfg["L"])]
        else:
            P[n] = torch.nn.Parameter(torch.from_numpy(np.array(t)))
    del tensors
    params = [p for n in NAMES for p in (P[n] if isinstance(P[n], list) else [P[n]])]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast else contextlib.nullcontext()
        with precision:
            logits = forward(P, cfg, idx)
        loss = F.cross_entropy(logits[..., :V].float().reshape(-1, V), targets.reshape(-1))
        loss.backward()
        opt.step()
        elapsed = (time.perf_counter() - start) * 1000
        losses.append(float(loss.item()))
        if step >= args.warmup:
            times.append(elapsed)
    times.sort()
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "autocast": args.autocast, "ms_per_step": times[len(times) // 2], "times_ms": times, "losses": losses}))


if __name__ == "__main__":
    main()
