"""Reference values for stages/tests/nn_ops.rs, computed with PyTorch (CPU, float64).

Run: python3 nn_ops_reference.py  (needs `pip install torch`); paste the printed arrays.
Inputs follow closed formulas that the Rust test reproduces:
  x_i = ((7 i) mod 11 - 5) / 4,  w_i = ((5 i) mod 7 - 3) / 5,  r_i = ((3 i) mod 5 - 2) / 3
and the scalar whose gradients are checked is sum(out * r).
"""
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def seq(n, a, m, off, div):
    return torch.tensor([((a * i) % m - off) / div for i in range(n)])


def x_(shape):
    n = 1
    for s in shape:
        n *= s
    return seq(n, 7, 11, 5, 4.0).reshape(shape)


def w_(shape):
    n = 1
    for s in shape:
        n *= s
    return seq(n, 5, 7, 3, 5.0).reshape(shape)


def r_(t):
    return seq(t.numel(), 3, 5, 2, 3.0).reshape(t.shape)


def show(name, t):
    vals = ", ".join(f"{v:.10e}" for v in t.detach().flatten().tolist())
    print(f"const {name}: [f64; {t.numel()}] = [{vals}];")


# conv 2->3, k3, stride 2, pad 1, bias, input 2x2x5x5
x = x_((2, 2, 5, 5)).requires_grad_()
w = w_((3, 2, 3, 3)).requires_grad_()
b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
y = F.conv2d(x, w, b, stride=2, padding=1)
(y * r_(y)).sum().backward()
show("CONV_Y", y); show("CONV_GX", x.grad); show("CONV_GW", w.grad); show("CONV_GB", b.grad)

# conv 2->2, k3, stride 1, pad 0, no bias, input 1x2x4x5 (non-square)
x = x_((1, 2, 4, 5)).requires_grad_()
w = w_((2, 2, 3, 3)).requires_grad_()
y = F.conv2d(x, w, None, stride=1, padding=0)
(y * r_(y)).sum().backward()
show("CONV2_Y", y); show("CONV2_GX", x.grad); show("CONV2_GW", w.grad)

# max pool k2 s2 and k3 s2 p1 on 1x2x4x4
for name, k, s, p in [("POOL_A", 2, 2, 0), ("POOL_B", 3, 2, 1)]:
    x = x_((1, 2, 4, 4)).requires_grad_()
    y = F.max_pool2d(x, k, s, p)
    (y * r_(y)).sum().backward()
    show(name + "_Y", y); show(name + "_GX", x.grad)

# batch norm, training mode, 3x2x2x2, gamma [1.5, -0.5], beta [0.2, 0.1]
x = x_((3, 2, 2, 2)).requires_grad_()
g = torch.tensor([1.5, -0.5], requires_grad=True)
be = torch.tensor([0.2, 0.1], requires_grad=True)
rm = torch.tensor([0.0, 0.5]); rv = torch.tensor([1.0, 2.0])
y = F.batch_norm(x, rm, rv, g, be, training=True, momentum=0.1, eps=1e-5)
(y * r_(y)).sum().backward()
show("BN_Y", y); show("BN_GX", x.grad); show("BN_GG", g.grad); show("BN_GB", be.grad)
show("BN_RM", rm); show("BN_RV", rv)

# batch norm, eval mode with running stats mean [0.1, -0.2], var [0.5, 2.0]
x = x_((3, 2, 2, 2)).requires_grad_()
g = torch.tensor([1.5, -0.5], requires_grad=True)
be = torch.tensor([0.2, 0.1], requires_grad=True)
y = F.batch_norm(x, torch.tensor([0.1, -0.2]), torch.tensor([0.5, 2.0]), g, be, training=False, eps=1e-5)
(y * r_(y)).sum().backward()
show("BNE_Y", y); show("BNE_GX", x.grad); show("BNE_GG", g.grad); show("BNE_GB", be.grad)

# linear 5 -> 3 with bias on 4 examples
x = x_((4, 5)).requires_grad_()
w = w_((3, 5)).requires_grad_()
b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
y = F.linear(x, w, b)
(y * r_(y)).sum().backward()
show("LIN_Y", y); show("LIN_GX", x.grad); show("LIN_GW", w.grad); show("LIN_GB", b.grad)
