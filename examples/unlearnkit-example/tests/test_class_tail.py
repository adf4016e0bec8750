"""The example's scenario passes the conformance kit, and its set is the class's last images."""

import numpy as np
import pytest
import unlearnkit as uk
from unlearnkit.testing import check_scenario

from unlearnkit_example import ClassTail


def test_class_tail_conforms():
    check_scenario(ClassTail)


def test_class_tail_takes_the_last_images_of_the_class():
    labels = np.array([0, 1, 0, 0, 1, 0])
    data = uk.ScenarioData(np.arange(6), labels, ["a", "b"])
    assert ClassTail("0:2").draw(data, seed=0).indices.tolist() == [3, 5]
    assert ClassTail("1:5").draw(data, seed=0).indices.tolist() == [1, 4]  # fewer than asked: all of them


def test_bad_text_is_one_line():
    with pytest.raises(uk.ConfigError, match="a class id and a positive count"):
        ClassTail("cat:2")


@pytest.mark.parametrize("text", ["0:" + "9" * 5000, "9" * 5000 + ":2"])
def test_a_number_of_thousands_of_digits_is_one_line(text):
    """Before: int() refused it (more than 4,300 digits) with a ValueError traceback."""
    with pytest.raises(uk.ConfigError, match="a class id and a positive count"):
        ClassTail(text)
