"""Reading a `command` stage's inputs and writing its results, with the Python standard
library only (formats: docs/formats.md).

    from repro_io import Stage
    st = Stage()                     # reads REPRO_PARAMS and the environment
    ds = st.dataset("data")          # the `data` input: a dataset folder
    nl = st.noise("noise")           # the `noise` input: a noisy-labels folder
    st.write_metrics(...)            # REPRO_OUT/metrics.json, as docs/metrics.schema.json says

Arrays are plain lists: `ds.train_x` is a list of N rows (each the example's values,
flattened, decoded as the dataset's `encoding` says), labels are lists of ints, matrices
lists of rows.
"""

import json
import math
import os
import signal
import struct

_DTYPES = {"U8": ("B", 1), "U32": ("I", 4), "F32": ("f", 4), "F64": ("d", 8)}


def read_safetensors(path):
    """Every tensor of a safetensors file: name -> (shape, flat list of values)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        code, size = _DTYPES[t["dtype"]]
        a, b = t["data_offsets"]
        count = (b - a) // size
        out[name] = (t["shape"], list(struct.unpack("<%d%s" % (count, code), body[a:b])))
    return out


def rows(shape, flat):
    """A flat list as a list of rows of shape[1:] flattened."""
    n = shape[0]
    w = len(flat) // n if n else 0
    return [flat[i * w : (i + 1) * w] for i in range(n)]


class Dataset:
    """A dataset folder (`dataset.json`, `dataset.safetensors`) as model inputs."""

    def __init__(self, folder):
        with open(os.path.join(folder, "dataset.json")) as f:
            self.meta = json.load(f)
        t = read_safetensors(os.path.join(folder, "dataset.safetensors"))
        enc = self.meta["encoding"]
        if enc["kind"] not in ("pixels", "features"):
            raise SystemExit("this reader handles pixels and features, not %s" % enc["kind"])
        self.num_classes = self.meta["num_classes"]
        self.train_x = self._decode(*t["train.x"])
        self.test_x = self._decode(*t["test.x"])
        self.train_y = t["train.y"][1]
        self.test_y = t["test.y"][1]

    def _decode(self, shape, flat):
        enc = self.meta["encoding"]
        if enc["kind"] == "features":
            return rows(shape, flat)
        scale = enc["scale"]
        mean, std = enc.get("mean"), enc.get("std")
        out = rows(shape, [v * scale for v in flat])
        if mean is not None:
            per = len(out[0]) // len(mean)
            out = [[(v - mean[i // per]) / std[i // per] for i, v in enumerate(r)] for r in out]
        return out


class NoisyLabels:
    """A noisy-labels folder (`noise.json`, `noise.safetensors`). `noisy` are the labels a
    method trains on (trusted examples keep their clean label); `clean` and `true_c` are
    for evaluation only."""

    def __init__(self, folder):
        with open(os.path.join(folder, "noise.json")) as f:
            self.meta = json.load(f)
        t = read_safetensors(os.path.join(folder, "noise.safetensors"))
        self.noisy = t["noisy"][1]
        self.clean = t["clean"][1]
        self.trusted = t["trusted"][1]
        self.true_c = rows(*t["true_c"])
        self.realized_c = rows(*t["realized_c"])


def frobenius(a, b):
    return math.sqrt(sum((x - y) ** 2 for ra, rb in zip(a, b) for x, y in zip(ra, rb)))


def mean_row_l1(a, b):
    return sum(sum(abs(x - y) for x, y in zip(ra, rb)) for ra, rb in zip(a, b)) / len(a)


class Stage:
    """The environment a `command` stage gives its program."""

    def __init__(self):
        # Stopping: the stage sends SIGINT; Slurm's scancel may send SIGTERM to every
        # process of the job. Both raise KeyboardInterrupt, to save a checkpoint and exit.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with open(os.environ["REPRO_PARAMS"]) as f:
            self.params = json.load(f)
        self.args = self.params["args"]
        self.seed = self.params["seed"]
        self.out = os.environ["REPRO_OUT"]
        self.checkpoint = os.environ["REPRO_CHECKPOINT"]
        self.threads = int(os.environ["REPRO_THREADS"])

    def input_dir(self, name):
        return os.environ["REPRO_INPUT_" + name.upper()]

    def dataset(self, name="data"):
        return Dataset(self.input_dir(name))

    def noise(self, name="noise"):
        return NoisyLabels(self.input_dir(name))

    def write_json(self, name, value):
        with open(os.path.join(self.out, name), "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")

    def write_c_hat(self, c_hat):
        """`c_hat.json`: the estimated corruption matrix (row = true class)."""
        self.write_json("c_hat.json", {"k": len(c_hat), "rows": c_hat})

    def write_metrics(self, ds, nl, model, epochs, test_accuracy, extra=None):
        """`metrics.json`. `epochs`: dicts with epoch, phase, train_loss, test_accuracy."""
        noise = None
        if nl is not None:
            m = nl.meta
            noise = {
                "corruption": m["corruption"],
                "strength": m["strength"],
                "trusted_fraction": m["trusted_fraction"],
                "actual_noise_rate": m["actual_noise_rate"],
            }
        metrics = {
            "kind": "command",
            "method": self.params["method"],
            "dataset": {"name": ds.meta["name"], "identity": ds.meta["identity"]},
            "noise": noise,
            "model": model,
            "profile": self.params["profile"],
            "device": "cpu",
            "seed": self.seed,
            "epochs": [dict(e, test_error=1.0 - e["test_accuracy"]) for e in epochs],
            "final_test_accuracy": test_accuracy,
            "final_test_error": 1.0 - test_accuracy,
            "extra": extra or {},
        }
        self.write_json("metrics.json", metrics)
