"""``oracle/arbitration.py``'s decision on its own: given which pairs of engines agree on the
first divergent tensor, who is wrong (or why no one can be named)."""

from __future__ import annotations

from comparisons.oracle.arbitration import _decide
from comparisons.oracle.gradcheck import FD

BOTH = ["torch", "jax"]


def pairs(**agree: bool) -> dict:
    """{"a vs b": agree} from keyword pairs written a__b (fd for finite differences)."""
    return {k.replace("__", " vs ").replace("fd", FD): v for k, v in agree.items()}


def test_two_references_that_agree_with_each_other_and_not_with_scratch_name_scratch():
    agree = pairs(scratch__torch=False, scratch__jax=False, torch__jax=True)
    decided = _decide("dW1", agree, "scratch", BOTH, has_fd=False)
    assert decided["wrong"] == "scratch" and "torch and jax agree" in decided["explanation"]


def test_a_reference_alone_against_scratch_and_the_other_is_the_one_named():
    agree = pairs(scratch__torch=True, scratch__jax=False, torch__jax=False)
    decided = _decide("W1", agree, "scratch", BOTH, has_fd=False)
    assert (
        decided["wrong"] == "jax" and "convention or framework difference" in decided["explanation"]
    )


def test_one_judge_cannot_tell_which_of_two_is_wrong():
    decided = _decide("dW1", pairs(scratch__torch=False), "scratch", ["torch"], has_fd=False)
    assert decided["wrong"] == "undecided" and "one judge" in decided["explanation"]


def test_finite_differences_breaking_the_tie_name_scratch_against_one_reference():
    agree = pairs(scratch__torch=False, scratch__fd=False, torch__fd=True)
    assert _decide("dW1", agree, "scratch", ["torch"], has_fd=True)["wrong"] == "scratch"


def test_scratch_agreeing_with_finite_differences_alone_is_a_convention_not_a_bug():
    agree = pairs(
        scratch__torch=False, scratch__jax=False, torch__jax=True,
        scratch__fd=True, torch__fd=False, jax__fd=False,
    )  # fmt: skip
    decided = _decide("dW1", agree, "scratch", BOTH, has_fd=True)
    assert decided["wrong"] == "undecided" and "different loss" in decided["explanation"]


def test_finite_differences_that_agree_with_everyone_resolve_nothing_and_step_aside():
    agree = pairs(
        scratch__torch=False, scratch__jax=False, torch__jax=True,
        scratch__fd=True, torch__fd=True, jax__fd=True,
    )  # fmt: skip
    assert _decide("dW1", agree, "scratch", BOTH, has_fd=True)["wrong"] == "scratch"


def test_no_majority_lists_every_pair():
    agree = pairs(scratch__torch=False, scratch__jax=False, torch__jax=False)
    decided = _decide("dW1", agree, "scratch", BOTH, has_fd=False)
    assert decided["wrong"] == "undecided" and decided["explanation"].startswith("no majority")
    assert decided["agreements"] == agree
