"""The finance user's walkthrough (docs/walkthrough.md), walked in a real browser: first import, reading
the batch, the pool, an invoice, 销项汇总 and 来源核对. Each step checks what the guide says the user
sees, and takes the guide's screenshot: into WALKTHROUGH_DIR when set (`make walkthrough` writes
docs/walkthrough/), else into the test's own folder, so the pictures in the guide are the product's own."""
from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from .browser_support import FINISH_TIMEOUT, SAMPLE_2024, batch_row, column, login, open_import_dialog
from .conftest import DEMO_TAX_ID

COMPANY = "杭州示例科技有限公司"


def _shot(page: Page, folder: Path, name: str) -> None:
    """The step's screenshot, the whole page as the user sees it."""
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def test_the_walkthrough_shows_what_the_guide_says(page, live_server, tmp_path):
    folder = Path(os.environ.get("WALKTHROUGH_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page)
    _shot(page, folder, "1-batches")

    dialog = open_import_dialog(page)  # 1. 导入电子税局文件
    dialog.get_by_label(COMPANY).check()
    dialog.locator("input[type=file]").set_input_files([SAMPLE_2024])
    _shot(page, folder, "2-import-dialog")
    dialog.get_by_role("button", name="确定").click()
    said = page.get_by_role("status").filter(has_text="已创建导入批次")
    expect(said).to_be_visible()
    batch_no = re.search(r"已创建导入批次 (\w+)", said.inner_text()).group(1)

    row = batch_row(page, batch_no)  # 2. reading a batch
    expect(column(page, row, "执行状态")).to_contain_text("全部执行成功", timeout=FINISH_TIMEOUT)
    expect(column(page, row, "总份数")).to_have_text("312")
    _shot(page, folder, "3-batch-done")
    page.goto(f"/batches/{batch_no}")
    expect(page.locator("main")).to_contain_text("2024-12")
    _shot(page, folder, "4-batch-detail")

    page.goto(f"/pool?tax_id={DEMO_TAX_ID}")  # 3. the pool
    expect(page.locator(".count")).to_have_text("312")
    _shot(page, folder, "5-pool")
    page.goto(f"/pool?tax_id={DEMO_TAX_ID}&color=blue")
    page.locator("#pool-table tbody tr a").first.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.locator("main")).to_contain_text("红冲预检")
    _shot(page, folder, "6-invoice")

    page.goto(f"/summary?tax_id={DEMO_TAX_ID}&year=2024")  # 4. 销项汇总
    expect(page.locator("main svg")).to_be_visible()
    _shot(page, folder, "7-summary")
    page.goto(f"/reconcile?tax_id={DEMO_TAX_ID}&month=2024-03")  # 5. 来源核对
    expect(page.locator("main")).to_contain_text("导入电子税局文件")
    _shot(page, folder, "8-reconcile")
    assert len(list(folder.glob("*.png"))) >= 8
