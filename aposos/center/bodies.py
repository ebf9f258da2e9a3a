"""JSON request bodies as pydantic models, with one-line problems naming the field.

Types are strict (``true`` is not a number, ``"5"`` not an integer); unknown keys are
ignored. Each field's ``description`` says what it must be, so a wrong value reads
``"<field> must be <description>"``; a validator's own ``ValueError`` is its message
as written. The tracklet upload has its own one-pass reader (``ingest.py``).

>>> problem_of(EnrolBody, {"code": 7})
'code must be the enrolment code (a string)'
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from aposos.center.checks import int_problem

__all__ = ["Body", "EnrolBody", "RecorrelateBody", "checked", "problem_of", "validated"]


class Body(BaseModel):
    """A request body: strict types, unknown keys ignored, read-only."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


B = TypeVar("B", bound="Body")


def validated(model: type[B], doc: dict) -> B:
    """``doc`` as a ``model``; raises ``ValueError`` with one line naming the field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(_one_line(model, exc)) from None


def problem_of(model: type[Body], doc: dict) -> str | None:
    """Why ``doc`` is not a ``model``, in one line; ``None`` when it is one."""
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return _one_line(model, exc)
    return None


def _one_line(model: type[Body], exc: ValidationError) -> str:
    """The first problem (fields are checked in the order the model names them)."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "value_error":  # our own validator: its message names the field
        return str(first["ctx"]["error"])
    name = str(first["loc"][0]) if first["loc"] else ""
    field = model.model_fields.get(name)
    if field is None or not field.description:
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return f"{name} must be {field.description}"


def checked(problem):
    """An after-validator from a ``value -> problem or None`` check."""

    def check(value):
        if value is not None and (text := problem(value)) is not None:
            raise ValueError(text)
        return value

    return AfterValidator(check)


class EnrolBody(Body):
    """``POST /api/v1/enrol``: the one-time code a station trades for its token."""

    code: str = Field(min_length=1, max_length=64, description="the enrolment code (a string)")


class RecorrelateBody(Body):
    """``POST /api/v1/recorrelate``: which tracklets (all by default), against which
    catalogue snapshot (the one that suits each tracklet by default)."""

    since: str | None = Field(None, description="a string")
    until: str | None = Field(None, description="a string")
    station: str | None = Field(None, description="a string")
    snapshot_id: Annotated[int | None, checked(lambda v: int_problem("snapshot_id", v))] = Field(
        None, description="an integer"
    )
