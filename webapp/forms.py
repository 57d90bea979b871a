"""What every form shares: the checkbox list, and validators made from our own rules.

Every form validates one way, through WTForms (`form.validate_on_submit()`): built-in validators
where they fit, and `Rule` where the rule is ours. A rule is one function that refuses with the
Chinese message (ValueError, or SourceRejected for what a source or channel cannot take); the
commands call the same function and print that message.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from wtforms import DateField, SelectMultipleField
from wtforms.validators import StopValidation
from wtforms.widgets import CheckboxInput, ListWidget

from channels.records import SourceRejected

REFUSALS = (ValueError, SourceRejected)


class MultiCheckbox(SelectMultipleField):
    """A list of checkboxes (several choices of one field)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class DayField(DateField):
    """A date typed YYYY-MM-DD, refused in Chinese when it is no date (WTForms says it in English)."""

    def process_formdata(self, valuelist) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError as error:
            raise ValueError(f"日期格式不正确：{' '.join(valuelist)}（应为 YYYY-MM-DD）") from error


class Rule:
    """A validator from one of our rules: `check(field.data)`, or, when the rule needs more than the
    field's value, `check` called with what `using(form, field)` picks (a tuple of arguments or a dict
    of keyword arguments). The rule's refusal stops the field's validation with its message: a field
    shows one message, the first rule it breaks."""

    def __init__(self, check: Callable, using: Callable | None = None):
        self.check = check
        self.using = using or (lambda form, field: (field.data,))

    def __call__(self, form, field) -> None:
        arguments = self.using(form, field)
        try:
            self.check(**arguments) if isinstance(arguments, Mapping) else self.check(*arguments)
        except REFUSALS as exc:
            raise StopValidation(str(exc)) from exc


class When:
    """Validators that apply only when `applies(form)` holds (a field the chosen option hides)."""

    def __init__(self, applies: Callable, *validators: Callable):
        self.applies = applies
        self.validators = validators

    def __call__(self, form, field) -> None:
        if self.applies(form):
            for validator in self.validators:
                validator(form, field)


class Needed:
    """The field must have a value. Unlike DataRequired it leaves the input without the browser's own
    `required` check, so the user reads our message (and a checkbox list is not made all-required)."""

    def __init__(self, message: str):
        self.message = message

    def __call__(self, form, field) -> None:
        if not field.data or (isinstance(field.data, str) and not field.data.strip()):
            raise StopValidation(self.message)


def messages(form) -> dict[str, str]:
    """Each invalid field's message, by field name, for templates that show one message a field."""
    return {name: errors[0] for name, errors in form.errors.items() if name}


def stripped(value: str | None) -> str:
    """A text field's value without surrounding spaces, "" when it was not sent (a WTForms filter)."""
    return (value or "").strip()
