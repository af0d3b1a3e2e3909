import torch

from mha_cli.masks import causal_allowed, fully_masked_rows, key_padding_allowed

from .helpers import allowed_mask, small_config


def test_causal_is_upper_left_aligned_for_rectangles() -> None:
    mask = causal_allowed(3, 5)
    for i in range(3):
        for j in range(5):
            assert bool(mask[i, j]) == (j <= i)


def test_key_padding_allows_only_the_valid_prefix() -> None:
    mask = key_padding_allowed([2, 4], 4)
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True]]


def test_allowed_mask_combines_causal_and_padding_by_definition() -> None:
    config = small_config(batch_size=2, seq_len=4, mask={"causal": True, "key_padding": {"lengths": [2, 4]}})
    mask = allowed_mask(config)
    assert mask.shape == (2, 1, 4, 4)  # one mask for every head
    lengths = [2, 4]
    for n in range(2):
        for i in range(4):
            for j in range(4):
                assert bool(mask[n, 0, i, j]) == (j <= i and j < lengths[n])


def test_fully_masked_rows() -> None:
    allowed = torch.tensor([[[[True, False], [False, False]]]])  # (N, H, L, S)
    assert fully_masked_rows(allowed).tolist() == [[False, True]]
    per_head = torch.tensor([[[[True, False], [True, False]], [[True, False], [False, False]]]])
    assert fully_masked_rows(per_head).tolist() == [[False, True]], "a row without keys in one head is undefined"
