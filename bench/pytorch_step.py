"""Time one training step (forward + cross-entropy + backward + SGD update, batch 128)
in PyTorch for the same two models as `stages/benches/train_step.rs`:
MLP 784-256-256-10 and the small CNN (1x28x28: conv32-conv64-maxpool2-fc128-fc10, 3x3
convolutions without padding). Prints `name median_ms min_ms iterations` per model.

Usage: python pytorch_step.py THREADS [--quick]
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def bench(name, model, shape, iters):
    torch.manual_seed(0)
    x = torch.rand((128,) + shape)
    y = torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(iters + 3):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"{name} {times[len(times) // 2]:.3f} {times[0]:.3f} {len(times)}")


def main():
    threads = int(sys.argv[1])
    quick = "--quick" in sys.argv
    torch.set_num_threads(threads)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    bench("mlp_784_256_256_10", mlp, (784,), 20 if quick else 200)
    bench("cnn_28x28_conv32_conv64_pool_fc128", Cnn(), (1, 28, 28), 3 if quick else 20)


if __name__ == "__main__":
    main()
