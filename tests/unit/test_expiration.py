"""Expiry parameters (``expires_after``, ``output_expires_after``) and the storage metric lines."""

from __future__ import annotations

import pytest

from batchq.api.errors import BadRequestProblem
from batchq.api.expiry import parse_batch_output_expiry, parse_expires_after, parse_upload_expiry
from batchq.config import Settings
from batchq.pipeline.retention import storage_metric_lines
from batchq.state.files import MAX_EXPIRES_AFTER_S, output_expiry_field, output_expiry_s


def test_default_minimum_is_an_hour_and_refuses_less() -> None:
    min_s = Settings().min_expires_after_s
    assert min_s == 3600
    assert parse_expires_after({"anchor": "created_at", "seconds": 3600}, param="p", min_s=min_s) == 3600
    with pytest.raises(BadRequestProblem) as info:
        parse_expires_after({"anchor": "created_at", "seconds": 3599}, param="p", min_s=min_s)
    assert info.value.param == "p.seconds" and info.value.status_code == 400


@pytest.mark.parametrize(
    "value, param",
    [
        ({"anchor": "created_at", "seconds": MAX_EXPIRES_AFTER_S + 1}, "p.seconds"),
        ({"anchor": "created_at", "seconds": True}, "p.seconds"),
        ({"anchor": "created_at", "seconds": 7200.5}, "p.seconds"),
        ({"anchor": "created_at"}, "p.seconds"),
        ({"anchor": "last_active_at", "seconds": 7200}, "p.anchor"),
        ({"seconds": 7200}, "p.anchor"),
        ([3600], "p"),
    ],
)
def test_bad_values_name_their_parameter(value: object, param: str) -> None:
    with pytest.raises(BadRequestProblem) as info:
        parse_expires_after(value, param="p", min_s=3600)
    assert info.value.param == param


def test_absent_means_none_and_forms_parse() -> None:
    assert parse_expires_after(None, param="p", min_s=1) is None
    assert parse_upload_expiry({"purpose": "batch"}, min_s=1) is None
    fields = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "5"}
    assert parse_upload_expiry(fields, min_s=1) == 5
    assert parse_upload_expiry({"expires_after": '{"anchor": "created_at", "seconds": 9}'}, min_s=1) == 9
    assert (
        parse_batch_output_expiry(b'{"output_expires_after": {"anchor": "created_at", "seconds": 4000}}', min_s=3600)
        == 4000
    )
    assert parse_batch_output_expiry(b"{}", min_s=3600) is None


def test_storage_metric_lines_escape_and_clamp() -> None:
    lines = storage_metric_lines({'we"ird': 10, "neg": -5})
    assert 'batchq_storage_bytes{account="we\\"ird"} 10' in lines
    assert 'batchq_storage_bytes{account="neg"} 0' in lines


def test_output_expiry_defaults_to_the_setting() -> None:
    assert output_expiry_s(None, 99) == 99
    assert output_expiry_s(output_expiry_field(7200), 99) == 7200
    assert output_expiry_field(None) is None
