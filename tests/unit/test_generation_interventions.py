"""Generation under an intervention: the stream equals greedy decoding done by hand with the
same plan on teacher-forced forwards, positions counted across prefill chunks and decode steps."""

from __future__ import annotations

import pytest
import torch

from llmvis.generation import GenerationError
from llmvis.generation.generate import generate
from llmvis.internals import Internals
from llmvis.interventions import Intervention, check_plan, intervened_logits
from llmvis.trace import GenerationRequest, SamplingParams
from tiny_models import tiny_loaded

NEW = 6


def by_hand(loaded, prompt_ids: list[int], plan: list[Intervention]) -> list[int]:
    """Greedy decoding, each token from a teacher-forced forward of everything so far with the
    plan applied (its means over the prompt, as generation takes them)."""
    prompt = Internals(loaded, prompt_ids)
    ids = list(prompt_ids)
    for _ in range(NEW):
        run = Internals(loaded, ids)
        steps = check_plan(prompt, plan, length=len(prompt_ids) + NEW)
        logits = intervened_logits(run, steps)[-1]
        ids.append(int(logits.argmax()))
        if ids[-1] in loaded.stop_ids:
            break
    return ids[len(prompt_ids) :]


def request(plan: list[Intervention]) -> GenerationRequest:
    params = SamplingParams(temperature=0.0, max_new_tokens=NEW, top_k=None, top_p=1.0)
    return GenerationRequest(mode="completion", prompt="hello world, hello again", params=params, interventions=plan)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen3_moe"])
def test_a_run_generated_under_interventions_equals_decoding_them_by_hand(arch):
    loaded = tiny_loaded(arch)

    def hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in loaded.model.modules())

    before = hooks()
    plain = generate(loaded, request([]))
    prompt_ids = plain.ids[: plain.prompt_len]
    first_new = plain.prompt_len + 1  # a generated position: reached by a decode step
    plan = [
        Intervention(site="head", layer=1, head=1),
        Intervention(site="residual", layer=1, op="scale", factor=0.25, positions=[2, first_new]),
        Intervention(site="mlp_out", layer=0, op="mean"),
    ]
    traced = generate(loaded, request(plan))
    assert traced.request.interventions == plan  # saved with the run
    assert traced.ids[traced.prompt_len :] == by_hand(loaded, prompt_ids, plan), arch
    assert traced.ids != plain.ids  # the plan changed what the model says
    assert hooks() == before  # nothing left behind


def test_plans_a_generation_cannot_follow_are_refused_before_it_starts():
    loaded = tiny_loaded("llama")
    with pytest.raises(GenerationError, match="no run to read from"):
        generate(loaded, request([Intervention(site="residual", layer=0, op="patch", source_run="x")]))
    with pytest.raises(GenerationError, match="positions must be within"):
        generate(loaded, request([Intervention(site="residual", layer=0, positions=[10_000])]))
    with torch.no_grad():  # and the model is as it was
        before = loaded.model(torch.tensor([[5, 6, 7]])).logits
    assert torch.equal(before, loaded.model(torch.tensor([[5, 6, 7]])).logits.detach())
