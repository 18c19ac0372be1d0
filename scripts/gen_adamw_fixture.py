# Writes test/fixtures/adamw.json: three torch.optim.AdamW steps (lr 1e-3, weight_decay 0.1,
# default betas and eps) on a small float32 tensor with fixed gradients per step, recording the
# parameters and both moment buffers after every step. Run: /usr/bin/python3 scripts/gen_adamw_fixture.py
import json
import os

import torch

torch.manual_seed(1234)
n = 37  # not a multiple of 8: the Zig kernel's scalar tail is exercised too
lr, weight_decay, betas, eps = 1e-3, 0.1, (0.9, 0.999), 1e-8
param = torch.nn.Parameter(torch.randn(n, dtype=torch.float32))
initial = param.detach().clone()
optimizer = torch.optim.AdamW([param], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
steps = []
for step in range(3):
    grad = torch.randn(n, dtype=torch.float32) * (10.0 ** (step - 1))
    param.grad = grad.clone()
    optimizer.step()
    state = optimizer.state[param]
    steps.append({
        "grad": grad.tolist(),
        "param": param.detach().tolist(),
        "m": state["exp_avg"].tolist(),
        "v": state["exp_avg_sq"].tolist(),
    })
fixture = {
    "generator": "scripts/gen_adamw_fixture.py, torch " + torch.__version__,
    "lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": weight_decay,
    "initial": initial.tolist(),
    "steps": steps,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "adamw.json")
with open(path, "w") as f:
    json.dump(fixture, f, indent=1)
print("wrote", os.path.normpath(path))
