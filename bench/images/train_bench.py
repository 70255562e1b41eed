"""bench/images training: the same U-Net, loss, optimiser, batch and seed
trained in PyTorch eager (a torchcfm-style loop) and in FlowRuntime, side by
side on Fashion-MNIST.

The network is torchcfm's UNetModelWrapper in its MNIST configuration
(1×28×28, 32 channels, one residual block per level, attention as torchcfm
configures it: at 28×28 and in the middle block), built from one seed in
PyTorch; FlowRuntime trains the same initial weights imported from that
network's ONNX export (the fine-tuning path). Both use:
  - the trig interpolant x_t = cos(πt/2) x0 + sin(πt/2) x1, x0 ~ N(0, I),
    t ~ U(0, 1), the loss Σ_dims (v − ∂tI)² averaged over the batch
    (FlowRuntime's quadratic loss has the same gradient);
  - fresh uniform dequantization noise per training sample,
    x1 = (pixel + u)/128 − 1, images drawn uniformly with replacement;
  - Adam (β 0.9, 0.999, ε 1e-8), lr 1e-3 after 100 linear warmup steps,
    constant after; gradient-norm clip 1.0; EMA of the weights with decay
    min(0.995, (1 + k)/(10 + k)) at step k (FlowRuntime's warm-up); batch 32.

    train_bench.py speed SYSTEM THREADS [--steps N]
        one JSON line: steps/s over N steps after 3 warm-up steps.
    train_bench.py race SYSTEM SECONDS --out DIR
        trains for SECONDS of wall time at 1 thread, logging the training
        loss (mean of the last 20 steps) every 15 s, then writes the EMA
        weights as DIR/SYSTEM.onnx (PyTorch also as DIR/torch.pt, the
        network of sample_bench.py) and one JSON line.
    train_bench.py bpd DIR --images N
        bits/dim of every DIR/*.onnx on the first N Fashion-MNIST test
        images, evaluated by FlowRuntime for both (Hutchinson, 1 probe,
        dopri5 rtol = atol = 1e-4, dequantization seed 0).
"""
import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "ONNXData" / "images"))

SEED = 0
BATCH = 32
LR = 1e-3
WARMUP = 100
EMA = 0.995
CLIP = 1.0


def training_images():
    from flowrt import images
    return images.fashion_mnist("train")


def torch_network():
    import torch
    from make_image_fixtures import build_tcfm
    torch.manual_seed(SEED)
    return build_tcfm(cond=False, tiny=False)


def export_onnx(net, path):
    """The legacy exporter at opset 17 (one of the fixture exports)."""
    import torch
    net.eval()
    t = torch.rand(2)
    x = torch.randn(2, 1, 28, 28)
    torch.onnx.export(net, (t, x), str(path), input_names=["t", "x"], output_names=["v"], opset_version=17,
                      dynamic_axes={"t": {0: "batch"}, "x": {0: "batch"}, "v": {0: "batch"}}, dynamo=False)


class TorchTrainer:
    def __init__(self, threads):
        import torch
        torch.set_num_threads(threads)
        self.torch = torch
        self.net = torch_network()
        self.net.train()
        self.ema = copy.deepcopy(self.net)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
        self.pixels = torch.from_numpy(training_images()).float().unsqueeze(1)
        self.gen = torch.Generator().manual_seed(SEED)
        self.steps = 0

    def step(self):
        torch = self.torch
        idx = torch.randint(0, self.pixels.shape[0], (BATCH,), generator=self.gen)
        x1 = (self.pixels[idx] + torch.rand(BATCH, 1, 28, 28, generator=self.gen)) / 128 - 1
        x0 = torch.randn(BATCH, 1, 28, 28, generator=self.gen)
        t = torch.rand(BATCH, generator=self.gen)
        h = (math.pi / 2) * t.view(-1, 1, 1, 1)
        xt = torch.cos(h) * x0 + torch.sin(h) * x1
        dI = (math.pi / 2) * (-torch.sin(h) * x0 + torch.cos(h) * x1)
        for g in self.opt.param_groups:
            g["lr"] = LR * min(1.0, (self.steps + 1) / WARMUP)
        v = self.net(t, xt)
        loss = ((v - dI) ** 2).sum(dim=(1, 2, 3)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), CLIP)
        self.opt.step()
        # FlowRuntime's EMA schedule: decay min(0.995, (1 + k)/(10 + k)) at step k.
        decay = min(EMA, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
            for e, b in zip(self.ema.buffers(), self.net.buffers()):
                e.copy_(b)
        self.steps += 1
        return float(loss)

    def save(self, path):
        export_onnx(self.ema, path)
        self.torch.save(self.ema.state_dict(), Path(path).with_suffix(".pt"))

    version = property(lambda self: f"PyTorch {self.torch.__version__} eager")


class FlowRTTrainer:
    def __init__(self, threads, workdir):
        import flowrt
        self.flowrt = flowrt
        init = Path(workdir) / "init.onnx"
        if not init.exists():
            export_onnx(torch_network(), init)
        model = flowrt.Model.load(init)
        self.trainer = flowrt.Trainer(model, training_images(), interpolant="trig", lr=LR, batch_size=BATCH,
                                      warmup=WARMUP, schedule="constant", ema=EMA, clip=CLIP, heldout=0.0,
                                      seed=SEED, threads=threads)
        self.steps = 0

    def step(self):
        self.steps += 1
        self.trainer.step()
        # The regression form R = E|v − ∂tI|² of the minibatch (the trainer's
        # quadratic loss G = R − E|∂tI|² has the same gradient).
        return self.trainer.losses.train_regression

    def save(self, path):
        self.trainer.model().save(path)

    version = property(lambda self: f"FlowRuntime {self.flowrt.__version__}")


def make(system, threads, workdir):
    return TorchTrainer(threads) if system == "torch" else FlowRTTrainer(threads, workdir)


def speed(args):
    workdir = Path(args.out); workdir.mkdir(parents=True, exist_ok=True)
    tr = make(args.system, args.threads, workdir)
    for _ in range(3):
        tr.step()
    start = time.perf_counter(); cpu = time.process_time()
    for _ in range(args.steps):
        tr.step()
    wall = time.perf_counter() - start
    print(json.dumps(dict(kind="speed", system=args.system, version=tr.version, threads=args.threads,
                          steps=args.steps, seconds=wall, steps_per_s=args.steps / wall,
                          images_per_s=args.steps * BATCH / wall, cpu_seconds=time.process_time() - cpu,
                          load=os.getloadavg()[0])), flush=True)


def race(args):
    workdir = Path(args.out); workdir.mkdir(parents=True, exist_ok=True)
    tr = make(args.system, 1, workdir)
    start = time.perf_counter(); cpu0 = time.process_time()
    curve, recent, next_log = [], [], 15.0
    while True:
        recent.append(tr.step())
        recent = recent[-20:]
        elapsed = time.perf_counter() - start
        if elapsed >= next_log:
            curve.append((round(elapsed, 1), tr.steps, float(np.mean(recent))))
            next_log += 15.0
        if elapsed >= args.seconds:
            break
    cpu = time.process_time() - cpu0
    tr.save(workdir / f"{args.system}.onnx")
    print(json.dumps(dict(kind="race", system=args.system, version=tr.version, seconds=elapsed, cpu_seconds=cpu,
                          steps=tr.steps, curve=curve, load=os.getloadavg()[0])), flush=True)


def bpd(args):
    import flowrt
    from flowrt import images
    test = images.fashion_mnist("test")[: args.images]
    for path in sorted(Path(args.dir).glob("*.onnx")):
        if path.name == "init.onnx":
            continue
        flow = flowrt.Flow(flowrt.Model.load(path))
        start = time.perf_counter()
        mean, se, _ = images.bits_per_dim(flow, test, probes=1, seed=0, rtol=1e-4, atol=1e-4)
        print(json.dumps(dict(kind="bpd", model=path.stem, images=len(test), bpd=mean, se=se,
                              seconds=time.perf_counter() - start)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed"); s.add_argument("system", choices=["torch", "flowrt"]); s.add_argument("threads", type=int)
    s.add_argument("--steps", type=int, default=20); s.add_argument("--out", default=".build/bench-train")
    r = sub.add_parser("race"); r.add_argument("system", choices=["torch", "flowrt"]); r.add_argument("seconds", type=float)
    r.add_argument("--out", default=".build/bench-train")
    b = sub.add_parser("bpd"); b.add_argument("dir"); b.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    {"speed": speed, "race": race, "bpd": bpd}[args.cmd](args)


if __name__ == "__main__":
    main()
