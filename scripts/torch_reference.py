#!/usr/bin/python3
"""PyTorch reference for llm.ts's GPT-2: reads an llm.c fp32 checkpoint, rebuilds GPT-2 from its
tensors (own code: tanh GELU, layernorm eps 1e-5, causal attention, lm_head tied to wte over the
padded vocabulary with the padded columns excluded from the softmax) and writes a fixture:
inputs, targets, logits, loss, every parameter gradient in llm.c layout, and the losses of N AdamW
steps on the same batch, each in float32 and float64.

  /usr/bin/python3 scripts/torch_reference.py CHECKPOINT OUT_PREFIX [--B 2 --T 13 --seed 1 --steps 10]

writes OUT_PREFIX.json (index: config, shapes, scalars, tensor offsets) and OUT_PREFIX.bin (data).
"""
import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

MAGIC, VERSION_FP32 = 20240326, 3
NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def shapes(cfg):
    maxT, Vp, L, C = cfg["maxT"], cfg["Vp"], cfg["L"], cfg["C"]
    return {
        "wte": (Vp, C), "wpe": (maxT, C), "ln1w": (L, C), "ln1b": (L, C),
        "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C), "attprojw": (L, C, C), "attprojb": (L, C),
        "ln2w": (L, C), "ln2b": (L, C), "fcw": (L, 4 * C, C), "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C), "fcprojb": (L, C), "lnfw": (C,), "lnfb": (C,),
    }


def read_checkpoint(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == MAGIC and header[1] == VERSION_FP32, f"{path}: not an llm.c fp32 checkpoint"
    cfg = dict(maxT=int(header[2]), V=int(header[3]), L=int(header[4]), NH=int(header[5]), C=int(header[6]), Vp=int(header[7]))
    flat = np.fromfile(path, dtype="<f4", offset=1024)
    tensors, offset = {}, 0
    for name, shape in shapes(cfg).items():
        n = int(np.prod(shape))
        tensors[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    assert offset == flat.size, f"{path}: {flat.size} floats, the header needs {offset}"
    return cfg, tensors


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def forward(P, cfg, idx):
    """Logits (B,T,Vp) of GPT-2 with parameters P (dict of tensors in llm.c shapes)."""
    B, T = idx.shape
    C, NH, L = cfg["C"], cfg["NH"], cfg["L"]
    hs = C // NH
    x = P["wte"][idx] + P["wpe"][:T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        h = F.layer_norm(x, (C,), P["ln1w"][l], P["ln1b"][l], 1e-5)
        qkv = h @ P["qkvw"][l].T + P["qkvb"][l]
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, dim=2))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P["attprojw"][l].T + P["attprojb"][l]
        h = F.layer_norm(x, (C,), P["ln2w"][l], P["ln2b"][l], 1e-5)
        h = gelu_tanh(h @ P["fcw"][l].T + P["fcb"][l])
        x = x + h @ P["fcprojw"][l].T + P["fcprojb"][l]
    x = F.layer_norm(x, (C,), P["lnfw"], P["lnfb"], 1e-5)
    return x @ P["wte"].T  # (B,T,Vp): tied lm_head over the padded rows too


def loss_of(logits, targets, V):
    # Padded columns V..Vp never enter the softmax (as in llm.c, whose softmax runs over V only).
    return F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1))


def run(cfg, tensors, idx, targets, steps, dtype):
    P = {n: torch.tensor(tensors[n], dtype=dtype, requires_grad=True) for n in NAMES}
    logits = forward(P, cfg, idx)
    loss = loss_of(logits, targets, cfg["V"])
    loss.backward()
    grads = np.concatenate([P[n].grad.detach().numpy().reshape(-1) for n in NAMES])
    first = dict(logits=logits.detach().numpy().copy(), loss=float(loss.item()), grads=grads)
    # AdamW on the same batch: loss at step i is measured before update i.
    Q = {n: torch.tensor(tensors[n], dtype=dtype, requires_grad=True) for n in NAMES}
    opt = torch.optim.AdamW([Q[n] for n in NAMES], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(forward(Q, cfg, idx), targets, cfg["V"])
        losses.append(float(loss.item()))
        loss.backward()
        opt.step()
    first["losses"] = losses
    return first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out_prefix")
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=13)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, tensors = read_checkpoint(args.checkpoint)
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, cfg["V"], size=(args.B, args.T + 1))
    idx = torch.tensor(tokens[:, :-1], dtype=torch.long)
    targets = torch.tensor(tokens[:, 1:], dtype=torch.long)

    r32 = run(cfg, tensors, idx, targets, args.steps, torch.float32)
    r64 = run(cfg, tensors, idx, targets, args.steps, torch.float64)

    blobs, index, offset = [], {}, 0

    def add(name, array, dtype):
        nonlocal offset
        data = np.ascontiguousarray(array, dtype=dtype).reshape(-1)
        index[name] = {"dtype": {"<i4": "int32", "<f4": "float32", "<f8": "float64"}[dtype], "offset": offset, "count": int(data.size)}
        blobs.append(data.tobytes())
        offset += data.nbytes

    add("inputs", tokens[:, :-1], "<i4")
    add("targets", tokens[:, 1:], "<i4")
    add("logits32", r32["logits"], "<f4")
    add("logits64", r64["logits"], "<f8")
    add("grads32", r32["grads"], "<f4")
    add("grads64", r64["grads"], "<f8")
    meta = {
        "generator": "scripts/torch_reference.py", "torch": torch.__version__, "config": cfg,
        "B": args.B, "T": args.T, "seed": args.seed, "adamw": {"lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.0},
        "loss32": r32["loss"], "loss64": r64["loss"], "losses32": r32["losses"], "losses64": r64["losses"],
        "tensors": index,
    }
    with open(args.out_prefix + ".bin", "wb") as f:
        for blob in blobs:
            f.write(blob)
    with open(args.out_prefix + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(f"loss float32 {r32['loss']:.9f} float64 {r64['loss']:.12f}; losses64 {['%.9f' % x for x in r64['losses']]}")


if __name__ == "__main__":
    main()
