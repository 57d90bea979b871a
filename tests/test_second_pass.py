"""Page and command tests of issue 19 items 3, 5, 6, 9 and 11 (the browser ones are in
test_browser_second_pass.py): what the screens, dialogs and commands say matches what can happen."""
from __future__ import annotations

from types import SimpleNamespace

from .conftest import cli_json
from .test_browser_screens import BUREAU_DOWN, add_batch


def test_batch_show_says_which_months_its_counts_leave_out(app, runner):
    """Item 3: the CLI's JSON of a partly failed batch names the months 总份数/成功份数 do not cover."""
    months = {"2023-01": ("succeeded", None), "2023-02": ("failed", BUREAU_DOWN), "2023-03": ("terminated", None)}
    batch_no = add_batch(SimpleNamespace(app=app), months, status="partial", channel="rpa")
    shown = cli_json(runner, "batch", "show", batch_no)
    assert (shown["total"], shown["success"]) == (100, 100)
    assert shown["months_not_fetched"] == 2
    assert shown["counts_scope"] == "2 个月份未获取"
