"""What each paper reports: its tables and figures, the recipes that reproduce them, and its budgets.

The results page lists every item here, run or not, so a reader sees what was left
out and why. A paper's budget is stated once, here, as the paper states it (the
recipes' defaults follow it on the data available offline).
"""

from dataclasses import dataclass

#: Datasets tensorflow-datasets must download (no offline copy in this project's data folder).
DOWNLOAD_ONLY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet2012": "ImageNet"}


@dataclass(frozen=True)
class Item:
    """One table or figure of a paper.

    Attributes:
        name: as the paper numbers it (``Table 1``, ``Fig. 4(b)``).
        shows: what it reports, in a few words.
        recipes: the recipe files (``panda/table5``) that reproduce it.
        budget: the paper's training and evaluation budget for it.
    """

    name: str
    shows: str
    recipes: tuple
    budget: str


_GUAN = "MNIST 60,000 training images, 15 epochs (Adam), 500 test images, 50 Monte-Carlo passes, one run"
_GALLOWAY = "MNIST 60,000 / 10,000, 15 epochs (Adam, batch 128), four runs, K = 64 / 128 / 256"
_PANDA_FCN2 = "MNIST 60,000 / 10,000, FCN2 10 epochs"
_PANDA_FCN1 = "MNIST 60,000 / 10,000, FCN1 20 epochs"
_PANDA_CIFAR = "CIFAR-10 50,000 / 10,000, AlexNet 40 epochs"

CATALOG = {
    "guan": (
        Item("Table 1", "clean and FGSM accuracy, single pass vs MC vote", ("guan/table1",), _GUAN),
        Item("Table 2", "JSMA and PGD accuracy, single pass vs MC vote", ("guan/table2",), _GUAN),
        Item("Table 3", "uncertainty on clean and FGSM inputs, detector accuracy", ("guan/table3",), _GUAN),
        Item("Table 4", "uncertainty on JSMA and PGD inputs, detector accuracy", ("guan/table4",), _GUAN),
        Item("Fig. 2", "uncertainty histograms, clean vs FGSM", ("guan/fig2",), _GUAN),
    ),
    "galloway": (
        Item("Table 1", "FGSM accuracy of A / B / C, plain and FGSM-trained", ("galloway/table1",), _GALLOWAY),
        Item("Table 2", "FGSM accuracy of PGD-trained A+* / C+*", ("galloway/table2",), _GALLOWAY),
        Item("Table 3", "targeted CW-L2 accuracy and distortion of B / B+ / S",
             ("galloway/table3",), _GALLOWAY.replace("K = 64", "K = 32 / 64")),
        Item("Fig. 2", "accuracy against CW-L2 iterations", ("galloway/table3",), _GALLOWAY),
        Item("Table 4", "black-box substitute attack on MNIST", ("galloway/table4",), _GALLOWAY),
        Item("Table 5", "black-box substitute attack on CIFAR-10", ("galloway/table5",),
             "CIFAR-10 50,000 / 10,000, four runs, K = 64 / 128 / 256"),
        Item("Table 6", "clean error of A / B / C", ("galloway/table6",), _GALLOWAY),
    ),
    "panda": (
        Item("Table 1", "clean accuracy for 2 / 3 / 4 / 8-bit input (CIFAR-10)", ("panda/table1",), _PANDA_CIFAR),
        Item("Table 2", "R-FGSM adversarial training, 2- vs 8-bit input", ("panda/table2_mnist", "panda/table2_cifar10"),
             f"{_PANDA_FCN2}; {_PANDA_CIFAR}"),
        Item("Table 3", "adversarially trained BNN vs full precision", ("panda/table3_mnist", "panda/table3_cifar10"),
             f"{_PANDA_FCN1}; {_PANDA_CIFAR}"),
        Item("Table 4", "BNN vs full precision with 2 / 4 / 8-bit input (CIFAR-10)", ("panda/table4",), _PANDA_CIFAR),
        Item("Table 5", "BNN vs full precision with 2 / 4 / 8-bit input (MNIST FCN1)", ("panda/table5",), _PANDA_FCN1),
        Item("Table 6", "2-bit BNN with and without adversarial training", ("panda/table6_mnist", "panda/table6_cifar10"),
             f"{_PANDA_FCN1}; {_PANDA_CIFAR}"),
        Item("Fig. 4(a)", "FGSM accuracy against eps, 2-8-bit input (CIFAR-10)", ("panda/fig4a",), _PANDA_CIFAR),
        Item("Fig. 4(b)", "FGSM accuracy against eps, 2-8-bit input (MNIST FCN2)", ("panda/fig4b",), _PANDA_FCN2),
        Item("Fig. 5(a)", "BNN vs full precision against eps (CIFAR-10)", ("panda/fig5a",), _PANDA_CIFAR),
        Item("Fig. 5(b)", "BNN vs full precision against eps (MNIST FCN1 / FCN2)", ("panda/fig5b",),
             f"{_PANDA_FCN2}; {_PANDA_FCN1}"),
        Item("Fig. 6", "L1 norm of the first hidden layer, clean vs FGSM", ("panda/fig6",),
             f"{_PANDA_FCN2}; {_PANDA_FCN1}"),
        Item("Fig. 7", "XNOR vs full precision ResNet-20, 2-8-bit input (CIFAR-100)", ("panda/fig7",),
             "CIFAR-100 50,000 / 10,000, ResNet-20 164 epochs"),
        Item("Fig. 8", "XNOR vs full precision AlexNet, top-5 (ImageNet)", ("panda/fig8",),
             "ImageNet, XNOR 50 epochs, full precision 90 epochs"),
    ),
}


def not_run_reason(dataset):
    """Why a recipe on ``dataset`` has no run here: a download the offline machines cannot make, or none yet."""
    if dataset in DOWNLOAD_ONLY:
        return f"needs {DOWNLOAD_ONLY[dataset]}, which tensorflow-datasets must download (not available offline)"
    return "not run yet"
