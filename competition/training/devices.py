"""The devices a fold trains on, on every Keras backend:

- the accelerators Keras sees (GPUs, TPU cores), and a line that says so;
- data parallelism over them (`train.strategy`): `auto` spreads a fit over
  the accelerators when there are two or more, `mirrored` also over the CPU
  devices when there is none (tests), `none` keeps one device. TensorFlow
  uses MirroredStrategy, with the generator's batches fed through tf.data
  (Keras' PyDataset with several workers under it has been seen to repeat
  and drop batches; through tf.data every sample is seen once per epoch by
  construction). JAX uses `keras.distribution.DataParallel`, each batch
  padded to a multiple of the devices with rows of weight 0 (a batch's rows
  are split evenly over the devices). PyTorch trains on one device in Keras:
  asking for more is refused;
- mixed precision (a Keras policy, the same on every backend; `mixed_float16`
  wraps the optimizer in loss scaling, Keras does it in compile).

TensorFlow is imported here only on the TensorFlow backend.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import keras

from competition.errors import ConfigError


def backend() -> str:
    return keras.backend.backend()


def accelerators() -> list[str]:
    """The GPUs and TPU cores Keras sees on this backend ([] on a CPU machine)."""
    if backend() == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    found = []
    for kind in ("gpu", "tpu"):
        try:
            found += [d for d in keras.distribution.list_devices(kind) if kind in d.lower()]
        except (RuntimeError, ValueError):  # JAX without that platform
            continue
    return found


def host_devices() -> list[str]:
    """The CPU devices (several when XLA or TensorFlow is told to make them)."""
    if backend() == "torch":
        return ["cpu"]
    return keras.distribution.list_devices("cpu")


def describe() -> str:
    """`Keras 3.13.2 on jax 0.7.2: cpu:0`, or `...: gpu:0 (NVIDIA H200)`
    (what a command runs on)."""
    name = backend()
    version = getattr(__import__(name), "__version__", "?")
    devices = accelerators() or host_devices()[:1]
    model = accelerator_name()
    return f"Keras {keras.__version__} on {name} {version}: {', '.join(devices)}" + (
        f" ({model})" if model else ""
    )


def accelerator_name() -> str | None:
    """The first accelerator's model (NVIDIA H200, TPU v5 lite); None without one."""
    if not accelerators():
        return None
    name = backend()
    if name == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    if name == "jax":
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name") if gpus else "TPU"


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


# --- how a fit is spread over the devices -----------------------------------------------


@dataclass
class OneDevice:
    replicas: int = 1

    def scope(self):
        return contextlib.nullcontext()

    def feed(self, train, valid, workers: int):
        """What `fit` takes: the generators themselves."""
        return train, valid


@dataclass
class Mirrored:
    """TensorFlow's MirroredStrategy over `devices`."""

    devices: list[str]
    strategy: object = field(init=False)

    def __post_init__(self) -> None:
        import tensorflow as tf

        self.strategy = tf.distribute.MirroredStrategy(devices=self.devices)

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def feed(self, train, valid, workers: int):
        from competition.training.tfdata import as_tf_dataset
        from competition.workers import worker_count

        parallel = worker_count(workers)
        return as_tf_dataset(train, parallel), as_tf_dataset(valid, parallel)


@dataclass
class DataParallel:
    """JAX: `keras.distribution.DataParallel` over `devices`."""

    devices: list[str]
    distribution: object = field(init=False)

    def __post_init__(self) -> None:
        self.distribution = keras.distribution.DataParallel(devices=self.devices)

    @property
    def replicas(self) -> int:
        return len(self.devices)

    def scope(self):
        return self.distribution.scope()

    def feed(self, train, valid, workers: int):
        """The generators, their batches padded to a multiple of the devices."""
        for generator in (train, valid):
            generator.pad_to = self.replicas
        return train, valid


def spread(setting: str) -> OneDevice | Mirrored | DataParallel:
    """How a fit runs for `train.strategy` (see the module)."""
    found = accelerators()
    if setting == "none" or (setting == "auto" and len(found) < 2):
        return OneDevice()
    name = backend()
    if name == "torch":
        if setting == "mirrored":
            raise ConfigError(
                "Config key 'train.strategy' mirrored spreads a fit over several devices, "
                "which Keras does not do on PyTorch. Use train.strategy=none, or "
                "BACKEND=jax or tensorflow for several GPUs. Received: mirrored"
            )
        print(f"PyTorch: training on {found[0]} alone of {len(found)} GPUs")
        return OneDevice()
    devices = found or host_devices()
    if name == "jax":
        return DataParallel(devices)
    return Mirrored([_tf_name(d) for d in devices])


def _tf_name(device: str) -> str:
    """Keras' `gpu:0` as TensorFlow names it."""
    kind, _, index = device.rpartition(":")
    return f"/{kind.split('/')[-1].upper()}:{index}" if kind else device


def jit_compile(setting: bool | str) -> bool:
    """`train.jit_compile`: auto is XLA on JAX (how it runs at speed), off on
    TensorFlow (its XLA is slower than its own kernels on a CPU and changes
    the numbers) and PyTorch (Keras runs it eagerly)."""
    return backend() == "jax" if setting == "auto" else bool(setting)


def precision(setting: str) -> str:
    """`train.mixed_precision`: auto is bfloat16 on TPU cores and GPUs of
    compute capability 8 and above (A100, H100), float16 with loss scaling on
    older GPUs (Kaggle's T4, P100), none on the CPU."""
    if setting != "auto":
        return setting
    found = accelerators()
    if not found:
        return "none"
    if any("tpu" in d.lower() for d in found):
        return "mixed_bfloat16"
    return "mixed_bfloat16" if gpu_capability() >= (8, 0) else "mixed_float16"


def gpu_capability() -> tuple[int, int]:
    """The first GPU's CUDA compute capability, on each backend."""
    name = backend()
    if name == "torch":
        import torch

        return tuple(torch.cuda.get_device_capability(0))
    if name == "jax":
        import jax

        major, _, minor = str(jax.devices("gpu")[0].compute_capability).partition(".")
        return int(major), int(minor or 0)
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return tuple(details.get("compute_capability", (0, 0)))
