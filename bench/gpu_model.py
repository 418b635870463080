#!/usr/bin/env python3
"""Memory and time model of one training step of the portable operators on a GPU.

The `cuda` build runs every network operator as a composition of dfdx tensor ops
(stages/src/nn/portable.rs). This script counts, layer by layer, what those compositions
allocate and move for WRN-40-2 and ResNet-18 on 32x32 CIFAR images, and turns the counts
into an expected step time for an assumed card. It is a model, not a measurement:
bench/gpu_check.sh measures the real step times on a GPU.

What is counted, per convolution (C in, O out, k x k window, L = Ho*Wo outputs, n images):
  * index tensor: C*k*k*L entries of 8 bytes (dfdx's usize), built on the host and
    copied to the device on every forward (a 1x1 stride-1 convolution has none);
  * input transposed to (C*H*W + 1) x n, column tensor C*k*k x L*n (kept on the tape
    for the weight gradient), product O x L*n, output permuted back to n x O*L;
  * FLOPs: 2*O*C*k*k*L*n forward, twice that backward (weight and column gradients);
  * bytes: every tensor above written once and read once forward, about twice that
    backward (the gather's backward is a scatter-add with atomics into the transposed
    input's gradient).
Batch norm (training mode) reads its input about four times forward and six times
backward, and copies the batch mean and variance to the host (two synchronisations per
layer); ReLU and the residual sums are one read and one write each way.

Usage: python3 bench/gpu_model.py [--batch 128] [--tflops 19.5] [--tbps 1.555]
  --batch   images per step (default 128)
  --tflops  the card's FP32 peak in TFLOP/s (default 19.5: A100, FP32 without TF32;
            cuBLAS's default SGEMM does not use TF32)
  --tbps    the card's memory bandwidth in TB/s (default 1.555: A100 40 GB)
  --gemm-eff, --bw-eff  fractions of peak reached by SGEMM and by the memory-bound
            kernels (defaults 0.6 and 0.5)
  --launch-us  cost of one kernel launch or host synchronisation in us (default 8)
  --pcie-gbps  host-to-device copy rate of the per-step uploads, GB/s (default 10:
            pageable memory over PCIe 4)
  --host-ns  host time per index entry built or dropout-mask element drawn, ns
            (default 2)
"""

import argparse


def wrn(depth=40, widen=2):
    """(C, O, H, W, k, stride, pad) of every convolution, and BN (C, HW) layers."""
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    convs, bns = [(3, 16, 32, 32, 3, 1, 1)], []
    c, h = 16, 32
    for g in range(3):
        for i in range(n):
            s = 2 if i == 0 and g > 0 else 1
            o = widths[g + 1]
            ho = (h + 2 - 3) // s + 1
            bns.append((c, h * h))
            convs.append((c, o, h, h, 3, s, 1))
            bns.append((o, ho * ho))
            convs.append((o, o, ho, ho, 3, 1, 1))
            if c != o:
                convs.append((c, o, h, h, 1, s, 0))
            c, h = o, ho
    bns.append((c, h * h))
    return convs, bns, (c, 10)


def resnet18():
    convs, bns = [(3, 64, 32, 32, 3, 1, 1)], [(64, 1024)]
    c, h = 64, 32
    for li, count in enumerate([2, 2, 2, 2]):
        p = 64 << li
        for i in range(count):
            s = 2 if i == 0 and li > 0 else 1
            ho = (h - 1) // s + 1
            if s != 1 or c != p:
                convs.append((c, p, h, h, 1, s, 0))
                bns.append((p, ho * ho))
            convs.append((c, p, h, h, 3, s, 1))
            bns.append((p, ho * ho))
            convs.append((p, p, ho, ho, 3, 1, 1))
            bns.append((p, ho * ho))
            c, h = p, ho
    return convs, bns, (c, 10)


def model(name, convs, bns, fc, n, a, dropout_blocks=()):
    F = 4  # bytes per f32
    idx_bytes = col_bytes = flops = moved = taped = 0
    launches = 0
    params = 0
    peak_col = 0
    for (c, o, h, w, k, s, p) in convs:
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        L = ho * wo
        ckk = c * k * k
        params += o * ckk
        pointwise = k == 1 and s == 1 and p == 0
        x = c * h * w * n * F
        col = ckk * L * n * F
        y = o * L * n * F
        idx = 0 if pointwise else ckk * L * 8
        idx_bytes += idx
        col_bytes += col
        peak_col = max(peak_col, col)
        f = 2 * o * ckk * L * n
        flops += 3 * f
        # forward: transpose (r+w x), gather (r idx, r+w col), gemm (r col, w y),
        # permute back (r+w y); backward about twice the traffic
        fwd = 2 * x + idx + 2 * col + col + y + 2 * y
        moved += 3 * fwd
        # taped: transposed input, column tensor, product, permuted output
        taped += x + col + 2 * y
        launches += 3 * 8
    for (c, hw) in bns:
        t = c * hw * n * F
        moved += 10 * t + 2 * t  # batch norm, plus the ReLU after it
        taped += 3 * t
        launches += 3 * 14 + 2  # its ops, forward and backward, and two host reads
        params += 2 * c
    # dropout masks: drawn on the host and copied up (WRN: after bn2 of every block)
    mask_bytes = sum(o * hw * n * F for (o, hw) in dropout_blocks)
    moved += 3 * mask_bytes
    c, k = fc
    flops += 3 * 2 * c * k * n
    params += c * k + k
    # Adam-like optimiser: a few reads and writes of every parameter
    moved += 8 * params * F
    launches += 10
    t_gemm = flops / (a.tflops * 1e12 * a.gemm_eff)
    t_mem = moved / (a.tbps * 1e12 * a.bw_eff)
    t_launch = launches * a.launch_us * 1e-6
    t_upload = (idx_bytes + mask_bytes) / (a.pcie_gbps * 1e9)
    # the host builds every index list and draws every mask element on one thread
    t_host = (idx_bytes / 8 + mask_bytes / F) * a.host_ns * 1e-9
    total = t_gemm + t_mem + t_launch + t_upload + t_host
    mb = lambda b: b / 2**20
    print(f"## {name}, batch {n}")
    print(f"convolutions: {len(convs)}, batch-norm layers: {len(bns)}, parameters: {params / 1e6:.2f} M")
    print(f"index tensors (all convolutions, uploaded every forward): {mb(idx_bytes):.1f} MiB")
    print(f"column tensors (all convolutions, kept for backward): {mb(col_bytes):.0f} MiB, largest {mb(peak_col):.0f} MiB")
    print(f"dropout masks (host-drawn, uploaded every forward): {mb(mask_bytes):.0f} MiB")
    print(f"tensors kept on the tape (columns, activations): {mb(taped) / 1024:.2f} GiB")
    print(f"FLOPs per step (forward + backward): {flops / 1e9:.0f} GFLOP")
    print(f"bytes moved per step (model): {moved / 1e9:.0f} GB")
    print(f"kernel launches and host syncs (model): {launches}")
    print(f"expected step: {1e3 * total:.0f} ms = GEMM {1e3 * t_gemm:.0f} ms + memory {1e3 * t_mem:.0f} ms + launches {1e3 * t_launch:.0f} ms + uploads {1e3 * t_upload:.0f} ms + host {1e3 * t_host:.0f} ms")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--tflops", type=float, default=19.5)
    ap.add_argument("--tbps", type=float, default=1.555)
    ap.add_argument("--gemm-eff", type=float, default=0.6)
    ap.add_argument("--bw-eff", type=float, default=0.5)
    ap.add_argument("--launch-us", type=float, default=8.0)
    ap.add_argument("--pcie-gbps", type=float, default=10.0)
    ap.add_argument("--host-ns", type=float, default=2.0)
    a = ap.parse_args()
    print(f"assumed card: {a.tflops} TFLOP/s FP32 at {a.gemm_eff:.0%} in SGEMM, "
          f"{a.tbps} TB/s at {a.bw_eff:.0%} in memory-bound kernels, {a.launch_us} us per launch\n")
    convs, bns, fc = wrn()
    # dropout (0.3, the WRN default) after bn2 of each block: bn2 is every second BN
    # layer from the second on, in the order wrn() lists them
    drops = [bns[i] for i in range(1, len(bns) - 1, 2)]
    model("WRN-40-2", convs, bns, fc, a.batch, a, drops)
    model("ResNet-18 (CIFAR stem)", *resnet18(), a.batch, a)


if __name__ == "__main__":
    main()
