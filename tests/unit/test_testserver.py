"""The loopback OpenAI test server, exercised through the real ``openai`` and ``litellm`` clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from enum import Enum

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no internet: never fetch the cost map

import openai
import pydantic
import pytest

from workflow.testing.testserver import FAULTS, OpenAITestServer, default_responder, example_from_schema

MESSAGES = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "The parcel arrived broken."}]


class Kind(str, Enum):
    complaint = "complaint"
    praise = "praise"


class Label(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=12)
    confidence: float = pydantic.Field(ge=0, le=1)
    kind: Kind


class Labels(pydantic.BaseModel):
    labels: list[Label] = pydantic.Field(min_length=2)
    count: int
    urgent: bool
    note: str | None
    tags: list[str] = []


@pytest.fixture(scope="module")
def litellm():
    return pytest.importorskip("litellm")


@pytest.fixture
def srv():
    with OpenAITestServer(timeout_sleep_s=2.0) as server:
        yield server


def client(server: OpenAITestServer, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **kw)


def chat(server: OpenAITestServer, **kw):
    return client(server).chat.completions.create(model="fake", messages=MESSAGES, **kw)


def post_raw(server: OpenAITestServer, body: dict) -> tuple[int, dict, bytes]:
    """Plain urllib POST, to look at what is on the wire without a client's interpretation."""
    req = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-test"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# --------------------------------------------------------------------------- normal responses


def test_openai_parse_returns_schema_valid_json(srv):
    resp = client(srv).chat.completions.parse(model="gpt-fake", messages=MESSAGES, response_format=Labels)
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, Labels) and len(parsed.labels) == 2 and parsed.labels[0].kind is Kind.complaint
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-") and resp.model == "gpt-fake"
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.role == "assistant"
    prompt_chars = sum(len(m["content"]) for m in MESSAGES)
    assert resp.usage.prompt_tokens == prompt_chars // 4
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 0
    assert srv.requests[0]["response_format"]["type"] == "json_schema"


def test_litellm_completion_returns_schema_valid_json(srv, litellm):
    resp = litellm.completion(
        model="openai/fake", api_base=srv.base_url, api_key="sk-test", num_retries=0,
        messages=MESSAGES, response_format=Labels,
    )
    Labels.model_validate_json(resp.choices[0].message.content)
    assert resp.usage.total_tokens > 0
    assert srv.total_requests == 1 and srv.status_counts == {200: 1}


def test_wire_format_and_models_endpoint(srv):
    status, headers, raw = post_raw(srv, {"model": "m", "messages": MESSAGES})
    body = json.loads(raw)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert body["choices"][0]["message"]["content"] == default_responder({})
    assert [m.id for m in client(srv).models.list()] == [srv.model]
    assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"


def test_custom_responder_sees_request(srv):
    seen: list[dict] = []
    srv.responder = lambda req: (seen.append(req), f"echo {req['messages'][-1]['content']}")[1]
    assert chat(srv).choices[0].message.content == "echo The parcel arrived broken."
    assert seen[0]["model"] == "fake" and seen[0]["messages"] == MESSAGES


def test_failing_responder_is_a_500(srv):
    srv.responder = lambda req: 1 / 0
    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        chat(srv)


def test_stream_is_rejected_clearly(srv):
    with pytest.raises(openai.BadRequestError, match="stream"):
        chat(srv, stream=True)


def test_latency_is_applied():
    with OpenAITestServer(latency_s=0.2) as srv:
        start = time.monotonic()
        chat(srv)
        assert time.monotonic() - start >= 0.2


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("retry_after_s, header", [(1, "1"), (3, "3")])
def test_fault_429_has_retry_after(srv, retry_after_s, header):
    srv.retry_after_s = retry_after_s
    srv.faults = ["429"]
    with pytest.raises(openai.RateLimitError) as info:
        chat(srv)
    assert info.value.response.headers["retry-after"] == header
    assert info.value.body["type"] == "rate_limit_exceeded"  # OpenAI-style error body


@pytest.mark.parametrize("fault", ["500", "503"])
def test_fault_server_errors_raise(srv, fault):
    srv.faults = [fault]
    with pytest.raises(openai.InternalServerError) as info:
        chat(srv)
    assert info.value.status_code == int(fault)


def test_fault_timeout_hits_client_timeout(srv):
    srv.faults = ["timeout"]
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(srv, timeout=0.3).chat.completions.create(model="fake", messages=MESSAGES)
    assert time.monotonic() - start < 1.5


def test_fault_truncated_is_a_connection_error(srv):
    srv.faults = ["truncated"]
    with pytest.raises(openai.APIConnectionError):
        chat(srv)


def test_fault_non_json_is_html_200(srv):
    srv.faults = ["non_json"]
    status, headers, raw = post_raw(srv, {"model": "m", "messages": MESSAGES})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


def test_fault_invalid_schema_fails_validation(srv):
    srv.faults = ["invalid_schema"]
    with pytest.raises(pydantic.ValidationError):
        client(srv).chat.completions.parse(model="fake", messages=MESSAGES, response_format=Labels)


def test_fault_empty_choices(srv):
    srv.faults = ["empty_choices"]
    assert chat(srv).choices == []


def test_fault_refusal(srv):
    srv.faults = ["refusal"]
    resp = client(srv).chat.completions.parse(model="fake", messages=MESSAGES, response_format=Labels)
    message = resp.choices[0].message
    assert message.content is None and message.parsed is None and message.refusal == "I can't help with that"


def test_faults_are_consumed_in_order_then_normal(srv):
    srv.add_faults("429", "500", "empty_choices")
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(len(chat(srv).choices))
        except openai.APIStatusError as err:
            outcomes.append(err.status_code)
    assert outcomes == [429, 500, 0, 1] and srv.faults == []
    assert srv.status_counts == {429: 1, 500: 1, 200: 2} and srv.total_requests == 4


def test_unknown_fault_is_rejected():
    with pytest.raises(ValueError, match="unknown faults"):
        OpenAITestServer(faults=["explode"])
    assert {"timeout", "429", "truncated", "refusal"} <= FAULTS


@pytest.mark.parametrize(
    "fault, error",
    [("429", "RateLimitError"), ("500", "InternalServerError"), ("503", "ServiceUnavailableError"),
     ("timeout", "Timeout")],
)
def test_litellm_maps_faults(srv, litellm, fault, error):
    srv.faults = [fault]
    with pytest.raises(getattr(litellm, error)):
        litellm.completion(
            model="openai/fake", api_base=srv.base_url, api_key="sk-test", num_retries=0,
            messages=MESSAGES, timeout=0.3,
        )
    assert srv.total_requests == 1  # no hidden retries


# --------------------------------------------------------------------------- limits and counters


def test_rate_limit_returns_429_with_retry_after():
    with OpenAITestServer(rate_limit_per_s=2) as srv:
        results = [post_raw(srv, {"model": "m", "messages": MESSAGES}) for _ in range(6)]
        statuses = [status for status, _, _ in results]
        assert statuses[:2] == [200, 200] and statuses.count(429) >= 3
        limited = next(r for r in results if r[0] == 429)
        assert int(limited[1]["Retry-After"]) >= 1
        assert json.loads(limited[2])["error"]["code"] == "rate_limit_exceeded"
        assert srv.status_counts[429] == statuses.count(429)


def test_max_concurrency_rejects_extra_requests():
    with OpenAITestServer(max_concurrency=2, latency_s=2.0) as srv:
        statuses: list[int] = []
        barrier = threading.Barrier(5)

        def worker() -> None:
            barrier.wait()
            statuses.append(post_raw(srv, {"model": "m", "messages": MESSAGES})[0])

        threads = [threading.Thread(target=worker) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        deadline = time.monotonic() + 5  # a handler releases its slot just after the client has its answer
        while srv.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.max_concurrency_observed >= 3 and srv.in_flight == 0


def test_error_rate_is_seeded():
    def run() -> list[int]:
        with OpenAITestServer(error_rate=0.5, seed=7) as srv:
            return [post_raw(srv, {"model": "m", "messages": []})[0] for _ in range(12)]

    first = run()
    assert set(first) == {200, 500} and run() == first


def test_counters_and_reset(srv):
    chat(srv)
    srv.faults = ["503"]
    with pytest.raises(openai.InternalServerError):
        chat(srv)
    assert srv.total_requests == 2 and srv.status_counts == {200: 1, 503: 1}
    assert len(srv.requests) == 2 and srv.requests[0]["messages"] == MESSAGES
    assert srv.max_concurrency_observed == 1
    assert srv.stats()["status_counts"] == {200: 1, 503: 1}
    srv.reset_counters()
    assert (srv.total_requests, srv.status_counts, srv.requests, srv.max_concurrency_observed) == (0, {}, [], 0)


def test_api_key_is_never_recorded_or_logged(capfd):
    secret = "sk-very-secret-key-123"
    with OpenAITestServer(verbose=True) as srv:
        openai.OpenAI(base_url=srv.base_url, api_key=secret, max_retries=0).chat.completions.create(
            model="fake", messages=MESSAGES
        )
        recorded = json.dumps(srv.requests) + json.dumps(srv.stats())
    out, err = capfd.readouterr()
    assert "POST /v1/chat/completions" in err  # verbose logging is on...
    assert secret not in recorded + out + err  # ...and still no key anywhere
    assert "authorization" not in recorded.lower()


def test_stop_closes_the_port():
    srv = OpenAITestServer().start()
    url = srv.base_url
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/models", timeout=2)


def test_cli_prints_base_url():
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with subprocess.Popen(
        [sys.executable, "-m", "workflow.testing.testserver", "--port", "0", "--latency", "0", "--quiet"],
        stdout=subprocess.PIPE, text=True, cwd=repo_root,
    ) as proc:
        try:
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            with urllib.request.urlopen(base_url + "/models", timeout=5) as resp:
                assert json.loads(resp.read())["object"] == "list"
        finally:
            proc.terminate()


# --------------------------------------------------------------------------- schema examples


def test_example_from_schema_handles_pydantic_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    for model in (Labels, Label):
        schema = model.model_json_schema()
        value = example_from_schema(schema)
        jsonschema.validate(value, schema)
        model.model_validate(value)


def test_example_from_schema_details():
    schema = {
        "type": "object",
        "required": ["a", "b", "c", "d", "e"],
        "properties": {
            "a": {"type": "array", "items": {"type": "integer", "minimum": 5}, "minItems": 3},
            "b": {"type": ["string", "null"], "minLength": 10, "maxLength": 10},
            "c": {"enum": ["x", "y"]},
            "d": {"$ref": "#/$defs/Node"},
            "e": {"type": "number", "exclusiveMaximum": 0},
            "optional": {"type": "string"},
        },
        "$defs": {"Node": {"type": "object", "required": ["children"],
                           "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
    }
    value = example_from_schema(schema)
    assert value["a"] == [5, 5, 5] and len(value["b"]) == 10 and value["c"] == "x" and value["e"] < 0
    assert "optional" not in value and isinstance(value["d"]["children"], list)  # recursion terminates
