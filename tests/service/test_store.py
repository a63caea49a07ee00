"""The store's Triton configuration reader (config.pbtxt, protobuf text format)."""

from __future__ import annotations

from service.store import parse_pbtxt


def test_nested_and_repeated_fields():
    cfg = parse_pbtxt(
        'name: "resnet18"\nmax_batch_size: 32\n'
        'input [ { name: "input" dims: [ 3, 224, 224 ] } ]\n'
        "dynamic_batching { max_queue_delay_microseconds: 500 }  # a comment\n"
    )
    assert cfg["name"] == "resnet18" and cfg["max_batch_size"] == 32
    assert cfg["input"] == [{"name": "input", "dims": [3, 224, 224]}]
    assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 500}


def test_strings_keep_their_utf8_and_resolve_escapes():
    cfg = parse_pbtxt('a: "café"\nb: "caf\\303\\251"\nc: "say \\"hi\\"\\n"')
    assert cfg == {"a": "café", "b": "café", "c": 'say "hi"\n'}
