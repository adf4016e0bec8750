"""Built-in datasets, registered through the `unlearnkit` entry point.

``digits`` and ``synthetic`` are embedded; the others read real files from ``--data-dir`` (or
$UNLEARNKIT_SHARED_DATA, or a system folder) and cache the decoded arrays. Importing this package
is cheap: torchvision, PIL, scipy and scikit-learn are imported only when a dataset loads.
"""

from collections.abc import Callable

from unlearnkit import Dataset, hookimpl

from .cifar import Cifar10, Cifar100
from .cifar20 import Cifar20
from .embedded import Digits, Synthetic
from .imagefolder import ImageFolder
from .imagenet import ImageNet
from .mnist import FashionMnist, Mnist
from .mufac import Mufac
from .svhn import Svhn
from .tiny_imagenet import TinyImageNet

DATASETS = (
    Digits,
    Synthetic,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    Cifar20,
    Svhn,
    ImageFolder,
    ImageNet,
    TinyImageNet,
    Mufac,
)


@hookimpl
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    for cls in DATASETS:
        register(cls)


__all__ = [
    "DATASETS",
    "Cifar10",
    "Cifar100",
    "Cifar20",
    "Digits",
    "FashionMnist",
    "ImageFolder",
    "ImageNet",
    "Mnist",
    "Mufac",
    "Svhn",
    "Synthetic",
    "TinyImageNet",
    "register_datasets",
]
