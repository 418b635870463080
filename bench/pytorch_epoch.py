"""Time one epoch of the `cpu` profile's `ce` stage in PyTorch, the work of
`stages/benches/epoch.rs`: GLC's MNIST protocol (MLP 784-128-128-10 with ReLU, Adam lr 1e-3,
weight decay 1e-6, batch 32, cross-entropy), one shuffled pass over 60,000 MNIST-shaped images
(bytes, decoded per batch as value / 255), then the evaluation on 10,000 test images (batches
of 500) that ends every epoch of a stage. Synthetic random pixels and labels, as on the Rust
side. Each of REPS epochs trains a freshly initialised model.

Prints `ce_epoch median_ms min_ms reps`.

Usage: python pytorch_epoch.py THREADS [REPS]   (REPS defaults to 5)
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def epoch(train_x, train_y, test_x, test_y):
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    n = train_x.shape[0]
    t = time.perf_counter()
    model.train()
    order = torch.randperm(n)
    for i in range(0, n, 32):
        idx = order[i:i + 32]
        x = train_x[idx].float().div_(255.0)
        loss = F.cross_entropy(model(x), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, test_x.shape[0], 500):
            x = test_x[i:i + 500].float().div_(255.0)
            correct += (model(x).argmax(1) == test_y[i:i + 500]).sum().item()
    return (time.perf_counter() - t) * 1e3


def main():
    threads = int(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train_x = torch.randint(0, 256, (60000, 784), dtype=torch.uint8)
    train_y = torch.randint(0, 10, (60000,))
    test_x = torch.randint(0, 256, (10000, 784), dtype=torch.uint8)
    test_y = torch.randint(0, 10, (10000,))
    times = sorted(epoch(train_x, train_y, test_x, test_y) for _ in range(reps))
    print(f"ce_epoch {times[len(times) // 2]:.3f} {times[0]:.3f} {len(times)}")


if __name__ == "__main__":
    main()
