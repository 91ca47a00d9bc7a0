"""Acceptance checks: answer-accuracy gain per method and the reward-hacking flag."""

from __future__ import annotations

from codex_ml.pipeline.summary import acceptance


def _m2(reward: tuple[float, float], accuracy: tuple[float, float]) -> dict:
    initial = {"reward": reward[0], "kl": 0.0, "answer_accuracy": accuracy[0]}
    final = {"reward": reward[1], "kl": 0.2, "answer_accuracy": accuracy[1]}
    return {"M2": {"status": "trained", "metrics": {"initial": initial, "final": final}}}


def test_reward_up_with_accuracy_down_is_flagged_as_reward_hacking() -> None:
    checks = acceptance(_m2(reward=(2.4, 2.7), accuracy=(0.64, 0.59)))
    assert checks["m2_raises_reward"]["ok"]
    assert checks["no_reward_hacking"] == {"reward_up": True, "accuracy_down": True, "ok": False}
    assert not checks["m2_raises_answer_accuracy"]["ok"]


def test_accuracy_gain_target_depends_on_the_method() -> None:
    stages = _m2(reward=(1.0, 1.5), accuracy=(0.60, 0.67))  # +0.07
    assert not acceptance(stages, "rloo")["m2_raises_answer_accuracy"]["ok"]  # needs +0.10
    dpo = acceptance(stages, "dpo")
    assert dpo["m2_raises_answer_accuracy"]["ok"] and dpo["m2_raises_answer_accuracy"]["target_gain"] == 0.05
    assert dpo["no_reward_hacking"]["ok"]


def test_no_accuracy_checks_without_checkable_prompts() -> None:
    stages = _m2(reward=(1.0, 1.5), accuracy=(0.0, 0.0))
    for record in stages["M2"]["metrics"].values():
        del record["answer_accuracy"]
    assert set(acceptance(stages)) == {"m2_raises_reward"}
