"""系统管理 → 备份 in a real browser: an admin clicks 立即备份, the live server's worker writes the
archive, the list shows it succeeded with its invoices and size, and 下载 saves a backup archive."""
from __future__ import annotations

import json
import time
import zipfile

from playwright.sync_api import expect

from .browser_support import login


def test_admin_backs_up_now_and_downloads_the_archive(live_server, new_page, tmp_path):
    admin = login(new_page(), "admin", "admin123")
    admin.get_by_role("link", name="系统管理").click()
    admin.get_by_role("link", name="备份").click()
    expect(admin.locator("#backup-table")).to_contain_text("还没有备份")
    admin.get_by_role("button", name="立即备份").click()
    expect(admin.get_by_text("已加入备份队列")).to_be_visible()
    deadline = time.monotonic() + 60
    while "成功" not in admin.locator("#backup-table tbody tr").first.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        admin.reload()
    row = admin.locator("#backup-table tbody tr").first
    expect(row).to_contain_text("立即备份")
    expect(row).to_contain_text("成功")
    expect(row).to_contain_text("MB")
    with admin.expect_download() as download:
        row.get_by_role("link", name="下载").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert path.name.startswith("invoice-sync-") and manifest["tables"]["user"]["rows"] == 2
