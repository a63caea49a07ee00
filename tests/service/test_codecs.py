"""V2 tensors: JSON and binary decoding, encoding, the classification extension; checked against
tritonclient's own helpers where it has them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor

from service import codecs
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def triton_request(x: np.ndarray, binary: bool, outputs=None):
    inp = InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    body, header_length = _get_inference_request(
        inputs=[inp],
        request_id="7",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return body, header_length


@pytest.mark.parametrize("binary", [False, True])
def test_decodes_what_tritonclient_sends(binary):
    x = np.random.default_rng(0).standard_normal((2, 1, 3, 3), dtype=np.float32)
    body, header_length = triton_request(x, binary, [InferRequestedOutput("logits", binary_data=True)])
    req = codecs.decode_infer_request(body, header_length)
    assert req.id == "7"
    np.testing.assert_array_equal(req.inputs["input"], x)
    assert req.outputs == [codecs.RequestedOutput("logits", True, 0)]


def test_binary_input_is_a_view_into_the_body_when_aligned():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    header = json.dumps(
        {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}]}
    ).encode()
    header += b" " * (-len(header) % 4)  # aligned
    req = codecs.decode_infer_request(header + x.tobytes(), len(header))
    assert not req.inputs["input"].flags.owndata
    np.testing.assert_array_equal(req.inputs["input"], x)
    # misaligned: copied, still right
    req = codecs.decode_infer_request(header + b" " + x.tobytes(), len(header) + 1)
    np.testing.assert_array_equal(req.inputs["input"], x)


def test_nested_json_data_and_request_level_binary_output():
    body = json.dumps(
        {
            "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    req = codecs.decode_infer_request(body)
    np.testing.assert_array_equal(req.inputs["input"], [[1, 2], [3, 4]])
    assert req.inputs["input"].dtype == np.float32
    assert req.binary_output and req.outputs is None


def test_an_empty_outputs_list_asks_for_every_output():
    tensor = {"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}
    req = codecs.decode_infer_request(json.dumps({"inputs": [tensor], "outputs": []}).encode())
    assert req.outputs is None  # as no "outputs" at all: Triton answers with every output


def test_json_numbers_decode_as_python_would():
    """The buffer fast path gives the same FP32 values as Python floats would, and exact 64-bit integers."""
    values = [0.1, -2.5e-39, 3.4028235e38, 1e-45, 7, -0.0, 123456789.123456789]
    body = json.dumps({"inputs": [{"name": "x", "shape": [7], "datatype": "FP32", "data": values}]}).encode()
    np.testing.assert_array_equal(codecs.decode_infer_request(body).inputs["x"], np.array(values, np.float32))
    big = [2**62 + 1, -(2**63)]
    body = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": big}]}).encode()
    assert codecs.decode_infer_request(body).inputs["x"].tolist() == big
    body = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "BOOL", "data": [True, False]}]}).encode()
    assert codecs.decode_infer_request(body).inputs["x"].tolist() == [True, False]


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"not json", None, "invalid JSON"),
        (b"[]", None, "JSON object"),
        (b"{}", None, "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}', None, "1 values given"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]}', None, "unknown datatype"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}', None, "BYTES"),
        (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}', None, "negative"),
        (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, "a"]}]}', None, "regular array"),
        (
            b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2, 3], [4]]}]}',
            None,
            "regular",
        ),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": {"a": 1}}]}', None, "regular array"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}]}', None, "regular array"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', None, "neither 'data'"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}', 500, "does not fit"),
        (
            b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}',
            100,
            "does not match",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}',
            100,
            "ends before",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], '
            b'"outputs": [{"name": "y", "parameters": {"classification": -1}}]}',
            None,
            "classification",
        ),
    ],
)
def test_malformed_requests_are_bad_requests(body, header_length, message):
    with pytest.raises(BadRequest, match=message):
        codecs.decode_infer_request(body, header_length)


def test_extra_bytes_after_binary_inputs_are_refused():
    header = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}'
    with pytest.raises(BadRequest, match="beyond"):
        codecs.decode_infer_request(header + b"\0" * 8, len(header))


def test_compressed_bodies():
    import gzip
    import zlib

    raw = b'{"inputs": []}'
    assert codecs.decode_body(gzip.compress(raw), "gzip", 1000) == raw
    assert codecs.decode_body(zlib.compress(raw), "deflate", 1000) == raw
    assert codecs.decode_body(gzip.compress(raw), "GZIP", 1000) == raw  # content codings are case-insensitive
    assert codecs.decode_body(raw, "Identity", 1000) == raw
    with pytest.raises(PayloadTooLarge):
        codecs.decode_body(gzip.compress(b"0" * 10_000), "gzip", 1000)
    with pytest.raises(UnsupportedMediaType):
        codecs.decode_body(raw, "br", 1000)
    with pytest.raises(BadRequest):
        codecs.decode_body(b"garbage", "gzip", 1000)


def test_top_k_orders_by_value_then_index():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [4.0, 3.0, 2.0, 1.0]])
    idx, vals = codecs.top_k(scores, 3)
    assert idx.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert vals.tolist() == [[0.5, 0.5, 0.2], [4.0, 3.0, 2.0]]
    assert codecs.top_k(scores, 10)[0].shape == (2, 4)


def test_responses_round_trip_through_tritonclient():
    logits = np.random.default_rng(1).standard_normal((2, 4), dtype=np.float32)
    classes = codecs.classification(logits, 2, ["a", "b", "c", "d"])
    for binary in (False, True):
        outputs = [codecs.OutputTensor("logits", logits, binary), codecs.OutputTensor("classes", classes, binary)]
        body, header_length = codecs.encode_infer_response("m", "1", "42", outputs)
        assert (header_length is not None) == binary
        result = InferResult.from_response_body(body, header_length=header_length)
        np.testing.assert_array_equal(result.as_numpy("logits"), logits)
        got = result.as_numpy("classes").reshape(2, 2)
        want = [[f"{logits[r, i]:f}:{i}:{'abcd'[i]}" for i in np.argsort(-logits[r])[:2]] for r in range(2)]
        assert [[s.decode() if isinstance(s, bytes) else s for s in row] for row in got] == want
        assert result.get_response()["id"] == "42"


def test_bytes_serialisation_matches_tritonclient():
    arr = np.array([b"1.5:3:cat", b"", b"x"], dtype=object)
    assert deserialize_bytes_tensor(codecs.serialize_bytes(arr)).tolist() == arr.tolist()
