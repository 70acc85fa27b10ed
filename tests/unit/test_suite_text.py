"""Text tokenisation for text observation fields (BabyAI missions): the rule, the space, the spec,
and agreement with the server's tokeniser. Run: `.venv/bin/python -m pytest -q tests/unit -k text`
"""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

from polyskill.agent.spaces import (
    FieldSpec,
    TokenIds,
    batch_observations,
    obs_spec_from_space,
    tokenize_text,
)
from polyskill.server.backends.base import tokenize as server_tokenize
from polyskill.trainer.envs.babyai import BABYAI_VOCAB, MAX_MISSION_WORDS

VOCAB = ("ball", "go", "red", "the", "to")


def test_words_map_to_vocab_index_plus_one_and_pad_with_zero() -> None:
    ids = tokenize_text("go to the red ball", VOCAB, 8)
    assert ids.dtype == np.int64 and ids.shape == (8,)
    assert ids.tolist() == [2, 5, 4, 3, 1, 0, 0, 0]


def test_case_punctuation_unknown_words_and_truncation() -> None:
    assert tokenize_text("Go to the RED ball, then", VOCAB, 8).tolist() == [2, 5, 4, 3, 1, 0, 0, 0]
    assert tokenize_text("go to the red ball", VOCAB, 3).tolist() == [2, 5, 4]  # cut at L
    assert tokenize_text("", VOCAB, 4).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("text", ["go to the red ball", "put a ball next to the key, then open",
                                  "Pick UP the grey box behind you!", ""])
def test_trainer_and_server_tokenise_alike(text: str) -> None:
    spec = FieldSpec("mission", "text", (), "str", max_length=12, vocab=BABYAI_VOCAB)
    assert np.array_equal(tokenize_text(text, BABYAI_VOCAB, 12), server_tokenize(text, spec))


def test_token_ids_space_becomes_a_text_field_with_its_vocab() -> None:
    space = gym.spaces.Dict({"mission": TokenIds(VOCAB, 6), "x": gym.spaces.Box(0, 1, (2,))})
    spec = obs_spec_from_space(space)
    f = spec["mission"]
    assert (f.kind, f.max_length, f.vocab, f.shape, f.dtype) == ("text", 6, VOCAB, (), "str")
    ids = np.stack([space["mission"].encode("go to"), space["mission"].encode("the ball")])
    batch = batch_observations(spec, {"mission": ids, "x": np.zeros((2, 2))})
    assert batch["mission"].dtype == np.int64 and batch["mission"].shape == (2, 6)


def test_token_ids_space_contains_equality_pickle() -> None:
    space = TokenIds(VOCAB, 6)
    assert space.contains(space.encode("go to the ball"))
    assert space == TokenIds(VOCAB, 6)
    assert space != TokenIds(VOCAB + ("key",), 6) and space != TokenIds(VOCAB, 7)
    assert pickle.loads(pickle.dumps(space)) == space and copy.deepcopy(space).vocab == VOCAB
    with pytest.raises(ValueError):
        TokenIds((), 4)


def test_babyai_vocab_is_sorted_unique_and_covers_the_grammar() -> None:
    assert list(BABYAI_VOCAB) == sorted(set(BABYAI_VOCAB))
    sentence = ("pick up a blue key on your left and open the purple door in front of you, then "
                "put the grey box behind you next to a yellow ball after you go to the green "
                "object on your right")
    ids = tokenize_text(sentence, BABYAI_VOCAB, MAX_MISSION_WORDS)
    assert (ids[: len(sentence.replace(",", "").split())] > 0).all()  # every word known


def test_babyai_missions_of_many_levels_have_no_unknown_words() -> None:
    pytest.importorskip("minigrid", reason="minigrid missing: needs the `suites` extra")
    import contextlib
    import io

    from polyskill.agent.spaces import TEXT_WORD

    levels = ["GoToLocal", "PickupLoc", "PutNextLocal", "OpenDoorLoc", "GoToSeq", "Synth",
              "BossLevel", "UnlockLocal"]
    for level in levels:
        env = gym.make(f"BabyAI-{level}-v0")
        for seed in range(3):
            with contextlib.redirect_stdout(io.StringIO()):
                obs, _ = env.reset(seed=seed)
            words = TEXT_WORD.findall(obs["mission"].lower())
            assert set(words) <= set(BABYAI_VOCAB), (level, obs["mission"])
            assert len(words) <= MAX_MISSION_WORDS
        env.close()


def test_text_encoding_keeps_word_order() -> None:
    import torch

    from polyskill.agent.encoders import TextField
    from polyskill.agent.spaces import FieldSpec

    vocab = ("ball", "blue", "key", "next", "red", "the", "to")
    spec = FieldSpec(name="mission", kind="text", dtype="int64", shape=(8,), vocab=vocab,
                     max_length=8)
    field = TextField(spec, 16)
    ids = {w: i + 1 for i, w in enumerate(vocab)}

    def encode(text: str) -> torch.Tensor:
        row = [ids[w] for w in text.split()] + [0] * (8 - len(text.split()))
        return field(torch.tensor([[row]]))[0, 0]

    a = encode("the red ball next to the blue key")
    b = encode("the blue ball next to the red key")  # the same words, another order
    assert not torch.allclose(a, b, atol=1e-4)
