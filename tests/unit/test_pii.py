"""The scrubber behind --redact-pii: what it takes, what it leaves."""

from __future__ import annotations

import re

import pytest

from workflow.pii import iban_ok, is_local_model, luhn_ok, scrub


@pytest.mark.parametrize("text, kind", [
    ("write to jane.doe@example.com please", "email"),
    ("call +44 7700 900123", "phone"),
    ("call (555) 123-4567", "phone"),
    ("call 020 7946 0958 today", "phone"),
    ("card 4111 1111 1111 1111", "card"),
    ("card 5500-0055-5555-5559", "card"),
    ("to DE89 3704 0044 0532 0130 00.", "iban"),
    ("to GB82WEST12345698765432", "iban"),
])
def test_personal_data_is_replaced_and_counted(text, kind):
    out, counts = scrub(text)
    assert counts == {kind: 1}
    assert out.count(f"[{kind.upper()}]") == 1
    assert not re.search(r"\d{3}|@", out)  # nothing of the value is left


@pytest.mark.parametrize("text", [
    "I paid £1,250.00 on 2023-01-15 for order 12345",
    "my card ending 1234 was declined, pin 0000",
    "version 1.2.3, top up 100 euros, 1.000.000 transferred",
    "card 4111 1111 1111 1112",  # not Luhn-valid
    "DE89 3704 0044 0532 0130 02",  # wrong check digits
])
def test_ordinary_numbers_stay(text):
    out, counts = scrub(text)
    assert not counts.get("card") and not counts.get("iban") and not counts.get("email")
    if "1112" not in text and "0130 02" not in text:
        assert out == text and not counts


def test_checksums_and_local_models():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")
    assert is_local_model("local/smollm2") and not is_local_model("openai/gpt-4o-mini")
    assert not is_local_model("scripted/keywords")  # test models stand for remote ones


def test_gateway_scrubs_prompts_to_remote_models_only(db):
    from workflow.llm.gateway import Gateway
    from workflow.llm.responses import summary_model
    from workflow.store import Store

    with Store(db) as store:
        run_id = store.create_run("c", "support", {"use_case": "support"})
        sent: list[str] = []
        gw = Gateway(store, run_id, redact_pii=True, show_progress=False)
        real = gw.transport

        def spy(model):
            t = real(model)

            class Spy:
                max_concurrency = 1

                def complete(self, model, messages, **kw):
                    sent.append(" ".join(m["content"] for m in messages))
                    return t.complete(model, messages, **kw)

                def estimate_cost(self, *a):
                    return 0.0

                def context_window(self, m):
                    return 128_000

            return Spy()

        gw.transport = spy
        text = "<document>\nmy card 4111 1111 1111 1111 was charged twice, mail jane.doe@example.com\n</document>"
        gw.call("summarize", "scripted/keywords", "summarize", summary_model(20),
                {"use_case": "support", "max_words": 20, "text": text}, context={"summary_max_words": 20})
        assert sent and "4111" not in sent[0] and "jane.doe" not in sent[0] and "[CARD]" in sent[0]
        assert store.redaction_counts(run_id) == {"card": 1, "email": 1, "prompts": 1}
