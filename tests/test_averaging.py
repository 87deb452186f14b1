"""The moving average of the weights (train.ema_decay), on hand-set weights with a known average."""

import pytest
import torch

from pipeline.averaging import WeightAverage


def linear(weight: float, bias: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return layer


def set_weights(layer: torch.nn.Linear, weight: float, bias: float) -> None:
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)


def test_the_average_weighs_each_step_by_decay_to_its_age_and_ignores_the_start():
    layer = linear(100.0, -100.0)  # the starting weights: not part of the average
    average = WeightAverage(layer, decay=0.5)
    for weight in (1.0, 2.0, 4.0):
        set_weights(layer, weight, -weight)
        average.update(layer)
    # Weights 1, 2, 4 of ages 2, 1, 0 weigh 0.25, 0.5, 1: (0.25 + 1 + 4) / 1.75 = 3.
    averaged = average.averaged()
    assert averaged["weight"].item() == pytest.approx(3.0)
    assert averaged["bias"].item() == pytest.approx(-3.0)


def test_after_one_step_the_average_is_that_steps_weights():
    layer = linear(0.25, 0.5)
    average = WeightAverage(layer, decay=0.999)
    average.update(layer)
    assert average.averaged()["weight"].item() == pytest.approx(0.25)
    assert average.averaged()["bias"].item() == pytest.approx(0.5)


def test_applied_puts_the_average_in_the_model_and_its_own_weights_back_after():
    layer = linear(1.0, 1.0)
    average = WeightAverage(layer, decay=0.5)
    average.update(layer)
    set_weights(layer, 3.0, 3.0)
    average.update(layer)  # (0.5 · 1 + 3) / 1.5
    with average.applied(layer):
        assert layer.weight.item() == pytest.approx(3.5 / 1.5)
        assert layer(torch.zeros(1, 1)).item() == pytest.approx(3.5 / 1.5)  # the bias too
    assert layer.weight.item() == 3.0 and layer.bias.item() == 3.0
    assert layer.weight.requires_grad  # still a trainable parameter


def test_frozen_parameters_are_not_averaged():
    layer = linear(1.0, 2.0)
    layer.bias.requires_grad_(False)
    average = WeightAverage(layer, decay=0.5)
    average.update(layer)
    assert set(average.averaged()) == {"weight"}


def test_the_state_of_a_checkpoint_continues_the_same_average():
    layer = linear(1.0, 1.0)
    first = WeightAverage(layer, decay=0.9)
    for weight in (1.0, 5.0):
        set_weights(layer, weight, weight)
        first.update(layer)
    second = WeightAverage(layer, decay=0.9)
    second.load_state_dict({name: t.clone() for name, t in first.state_dict().items()}, steps=2)
    set_weights(layer, 7.0, 7.0)
    first.update(layer)
    second.update(layer)
    assert torch.equal(first.averaged()["weight"], second.averaged()["weight"])
    with pytest.raises(ValueError, match="other parameters"):
        second.load_state_dict({"weight": torch.zeros(1, 1)}, steps=1)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(linear(1.0, 1.0), decay)


def test_reading_the_average_before_any_step_is_an_error():
    with pytest.raises(RuntimeError, match="no step"):
        WeightAverage(linear(1.0, 1.0), 0.9).averaged()
