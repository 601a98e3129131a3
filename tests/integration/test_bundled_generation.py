"""The bundled SmolLM2-135M-Instruct, end to end: conversion cache, chat, fidelity, UTF-8."""

from __future__ import annotations

import json

import pytest
import torch

from llmvis.generation import SamplingParams, generate
from llmvis.models.convert import converted_dir
from llmvis.models.sources import bundled_gguf
from llmvis.trace import GenerationRequest

pytestmark = pytest.mark.integration


def test_gguf_is_converted_once_into_a_plain_safetensors_cache(bundled):
    folder = converted_dir(bundled_gguf())
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert bundled.info.name == "SmolLM2-135M-Instruct"
    assert (bundled.info.layers, bundled.info.heads, bundled.info.kv_heads) == (30, 9, 3)
    assert bundled.info.has_chat_template


def test_chat_answers_the_capital_of_france(bundled):
    trace = generate(
        bundled,
        GenerationRequest(
            mode="chat",
            prompt="What is the capital of France?",
            params=SamplingParams(temperature=0, max_new_tokens=24),
        ),
    )
    assert "Paris" in trace.text
    assert trace.finish_reason == "eos"
    paris = next(t for t in trace.generated if "Paris" in t.text)
    assert paris.stats.raw_prob > 0.5  # the model is confident, and we recorded it


def test_greedy_equals_hf_generate_on_the_bundled_model(bundled):
    request = GenerationRequest(
        mode="completion",
        prompt="The three primary colours are",
        params=SamplingParams(temperature=0, max_new_tokens=20),
    )
    trace = generate(bundled, request)
    ids = torch.tensor([trace.ids[: trace.prompt_len]])
    out = bundled.model.generate(
        ids, do_sample=False, max_new_tokens=20, output_logits=True, return_dict_in_generate=True
    )
    hf = out.sequences[0, trace.prompt_len :].tolist()
    assert [t.id for t in trace.generated] == hf[: len(trace.generated)]
    for token, logits in zip(trace.generated, out.logits, strict=False):
        assert abs(token.stats.raw_prob - torch.softmax(logits[0], -1)[token.id].item()) <= 1e-5


@pytest.mark.parametrize("prompt", ["I feel 🙂🎉 today because", "中文的意思是"])
def test_emoji_and_chinese_never_show_replacement_characters(bundled, prompt):
    trace = generate(
        bundled,
        GenerationRequest(
            mode="completion", prompt=prompt, params=SamplingParams(temperature=0.9, seed=3, max_new_tokens=24)
        ),
    )
    joined = "".join(t.text for t in trace.tokens)
    assert joined.startswith(prompt)
    assert "\ufffd" not in joined
    assert all(t.label for t in trace.tokens)


def test_the_default_system_turn_is_tagged_system(bundled):
    trace = generate(
        bundled,
        GenerationRequest(mode="chat", prompt="Hi", params=SamplingParams(temperature=0, max_new_tokens=2)),
    )
    prompt = trace.tokens[: trace.prompt_len]
    system_text = "".join(t.text for t in prompt if t.role == "system")
    user_text = "".join(t.text for t in prompt if t.role == "user")
    assert "SmolLM" in system_text  # the template's own default system prompt
    assert "SmolLM" not in user_text and "Hi" in user_text
