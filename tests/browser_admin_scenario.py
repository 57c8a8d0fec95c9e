"""The accounts admin page (用户管理) in headless Chromium against the real server, run inside
a network namespace by tests/test_browser_admin.py:

    unshare -n -- python -m tests.browser_admin_scenario

An admin and an operator are added with the real CLI (`commandcenter user add
--password-stdin`); then the admin opens /app/console/admin.html, is sent to sign in and
comes back, and does as a person would, by labels and roles: adds an officer (the password
the server made is shown once), imports a CSV of 1,200 officers with a progress bar, has a
bad file refused with its lines named, disables the new officer (who then cannot sign in),
resets the password of an imported officer (who then signs in with it), adds an officer with
a one-time code (the otpauth URI shown as a QR code, decoded here with zxing-cpp). An operator is
refused the page. Screenshots at 1920x1080 and 390x844 go to build/screenshots/admin-*.png.
Prints ONE JSON line with what each step saw.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import zxingcpp
from playwright.async_api import Browser, Page
from playwright.async_api import Error as PlaywrightError

from tests.browser import REPO, SECRET, ServerProcess, drive_with_server, until

ADMIN, OPERATOR = "adm-1", "op-1"
PASSWORD = "a password long enough"
NEW_PASSWORD = "the new password of o-0007"
SCREENSHOTS = REPO / "build" / "screenshots"
IMPORTED = 1200


def add_account(workdir: Path, user: str, role: str, court: str) -> None:
    """`commandcenter user add` as whoever installs the server would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
    env |= {
        "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
        "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
        "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
    }
    subprocess.run(
        [sys.executable, "-m", "commandcenter", "user", "add", "--user", user,
         "--name", f"{role} {user}", "--role", role, "--court", court, "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=workdir,
        timeout=60, check=True,
    )  # fmt: skip


async def text_of(page: Page, selector: str) -> str:
    try:
        return (await page.locator(selector).first.text_content(timeout=1000) or "").strip()
    except PlaywrightError:
        return ""


async def sign_in(page: Page, user: str, password: str) -> None:
    await page.fill("#user", user)
    await page.fill("#password", password)
    await page.click("#submit")


async def listed(page: Page, user: str) -> bool:
    return await page.locator(f'tr[data-user="{user}"]').count() == 1


async def row_text(page: Page, user: str) -> str:
    return await text_of(page, f'tr[data-user="{user}"]')


async def search(page: Page, text: str) -> None:
    await page.get_by_label("搜索编号或姓名").fill(text)


async def run(workdir: Path) -> dict[str, Any]:
    add_account(workdir, ADMIN, "admin", "P01")
    add_account(workdir, OPERATOR, "operator", "P0101")
    rows = ["user,name,role,court,password"]
    rows += [f"o-{i:04d},警官{i},officer,P0101," for i in range(IMPORTED)]
    rows += ["op-9,接警员九,operator,P01,an imported password"]
    (workdir / "officers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (workdir / "bad.csv").write_text(
        "user,name,role,court\no-0001,改名,officer,P0101\no-x,王,pilot,P0101\no-y,李,officer,P\n",
        encoding="utf-8",
    )

    async def go(browser: Browser, base: str, result: dict[str, Any]) -> None:
        await drive(browser, base, workdir, result)

    return await drive_with_server(ServerProcess(workdir), go)


async def drive(browser: Browser, base: str, workdir: Path, seen: dict[str, Any]) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{base}/app/console/admin.html", timeout=10_000)
    await until(lambda: text_of(page, "h2"), within=10, what="the sign-in page")
    seen["redirected_to"] = page.url.removeprefix(base)
    await sign_in(page, ADMIN, PASSWORD)
    await until(lambda: listed(page, OPERATOR), within=10, what="the accounts table")
    seen["after_sign_in"] = page.url.removeprefix(base)
    seen["heading"] = await text_of(page, "h1")
    seen["first_rows"] = sorted(
        await page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.user)")
    )

    # Add an officer; the password the server made is shown once.
    await page.get_by_label("编号（登录名）").fill("o-new")
    await page.get_by_label("姓名", exact=True).fill("新警官")
    await page.get_by_label("角色", exact=True).select_option("officer")
    await page.get_by_label("法院", exact=True).select_option("P0101")
    await page.get_by_role("button", name="添加", exact=True).click()
    shown = page.locator('[data-secret="password"]')
    await shown.wait_for(timeout=10_000)
    made = (await shown.text_content() or "").strip()
    seen["made_password_length"] = len(made)
    seen["secret_title"] = await text_of(page, "dialog h3")
    await page.screenshot(path=str(SCREENSHOTS / "admin-added-console.png"))
    await page.get_by_role("button", name="我已记下").click()
    seen["secret_gone"] = await page.locator('[data-secret="password"]').count() == 0
    await until(lambda: listed(page, "o-new"), within=10, what="the new officer listed")

    # Import 1,201 accounts from a file, with the progress bar.
    await page.get_by_label("选择 CSV 文件").set_input_files(str(workdir / "officers.csv"))
    await page.get_by_role("button", name="开始导入").click()
    try:
        done = await until(
            lambda: _import_done(page), within=120, what="the import's last progress line"
        )
    except AssertionError:
        seen["import_stuck_at"] = await text_of(page, ".admin-progress-text")
        seen["import_faults"] = await page.locator(".admin-faults li").all_text_contents()
        raise
    seen["import_text"] = done
    progress = await page.evaluate("window.ccAdmin.progress()")
    seen["import_phases"] = [p["phase"] for p in progress]
    seen["saving_done"] = [p["done"] for p in progress if p["phase"] == "saving"]
    seen["progress_value"] = await page.locator("progress").evaluate("p => p.value")
    seen["count_after_import"] = await text_of(page, ".admin-count")
    await page.screenshot(path=str(SCREENSHOTS / "admin-import-console.png"))

    # A bad file: refused whole, every bad line named.
    await page.get_by_label("选择 CSV 文件").set_input_files(str(workdir / "bad.csv"))
    await page.get_by_role("button", name="开始导入").click()
    await until(lambda: page.locator(".admin-faults li").count(), within=10, what="faults")
    seen["bad_file_text"] = await text_of(page, ".admin-progress-text")
    seen["faults"] = await page.locator(".admin-faults li").all_text_contents()
    await search(page, "o-0001")
    await until(lambda: listed(page, "o-0001"), within=10, what="o-0001 found")
    seen["o-0001_after_bad_file"] = await row_text(page, "o-0001")

    # Disable the new officer: confirmed, then they cannot sign in.
    await search(page, "o-new")
    await until(lambda: _only(page, "o-new"), within=10, what="the search for o-new")
    await page.locator('tr[data-user="o-new"]').get_by_role("button", name="停用").click()
    seen["confirm_disable"] = await text_of(page, "dialog .admin-question")
    await page.get_by_role("button", name="确定").click()
    await until(
        lambda: _has(row_text(page, "o-new"), "已停用"), within=10, what="o-new shown disabled"
    )
    seen["disabled_row"] = await row_text(page, "o-new")
    seen["disabled_sign_in"] = await _try_sign_in(browser, base, "o-new", made)

    # Reset an imported officer (no password yet) to a chosen one; they sign in with it.
    await search(page, "o-0007")
    await until(lambda: _only(page, "o-0007"), within=10, what="the search for o-0007")
    seen["imported_row"] = await row_text(page, "o-0007")
    await page.locator('tr[data-user="o-0007"]').get_by_role("button", name="重置密码").click()
    await page.get_by_label("新密码（留空则自动生成）").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="确定").click()
    await until(lambda: _lacks(row_text(page, "o-0007"), "未设密码"), within=10, what="reset")
    seen["reset_row"] = await row_text(page, "o-0007")
    seen["reset_sign_in"] = await _try_sign_in(browser, base, "o-0007", NEW_PASSWORD)

    # An officer with a one-time code: the otpauth URI as a QR code beside it as text.
    await page.get_by_label("编号（登录名）").fill("o-totp")
    await page.get_by_label("姓名", exact=True).fill("口令警官")
    await page.get_by_label("角色", exact=True).select_option("officer")
    await page.get_by_label("法院", exact=True).select_option("P0101")
    await page.get_by_role("checkbox", name="启用动态口令（TOTP）").check()
    await page.get_by_role("button", name="添加", exact=True).click()
    qr = page.get_by_role("img", name="身份验证器二维码")
    await until(lambda: qr.evaluate("i => i.complete && i.naturalWidth"), within=10, what="QR")
    seen["totp_uri"] = await text_of(page, '[data-secret="totp_uri"]')
    seen["qr_src_scheme"] = (await qr.get_attribute("src") or "").split(",")[0]
    seen["qr_decoded"] = decode_qr(await qr.evaluate(GRAY_PIXELS))
    await page.screenshot(path=str(SCREENSHOTS / "admin-totp-console.png"))
    await page.get_by_role("button", name="我已记下").click()
    seen["qr_gone"] = await qr.count() == 0

    await search(page, "")
    await until(lambda: listed(page, ADMIN), within=10, what="the whole list again")
    await page.screenshot(path=str(SCREENSHOTS / "admin-console.png"))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(SCREENSHOTS / "admin-phone.png"), full_page=True)
    await page.get_by_role("button", name="English").click()
    seen["english_heading"] = await text_of(page, "main h2")
    await page.screenshot(path=str(SCREENSHOTS / "admin-english-phone.png"))
    seen["page_errors"] = errors
    await context.close()

    # An operator is told the page is not theirs.
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/app/signin.html?next=/app/console/admin.html", timeout=10_000)
    await sign_in(page, OPERATOR, PASSWORD)
    seen["operator_refused"] = await until(
        lambda: text_of(page, ".admin-refused:visible"), within=10, what="the operator refused"
    )
    await context.close()


# The image as the page drew it, one grey byte per pixel (base64), to decode here: what an
# authenticator app's camera would read from the screen.
GRAY_PIXELS = """img => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = "";
  for (let i = 0; i < d.length; i += 4) {
    s += String.fromCharCode((d[i] + d[i + 1] + d[i + 2]) / 3 | 0);
  }
  return { width: c.width, height: c.height, gray: btoa(s) };
}"""


def decode_qr(image: dict[str, Any]) -> list[str]:
    """Every QR code zxing-cpp finds in the grey image, as text."""
    gray = base64.b64decode(image["gray"])
    pixels = memoryview(gray).cast("B", shape=[image["height"], image["width"]])
    return [b.text for b in zxingcpp.read_barcodes(pixels)]


async def _import_done(page: Page) -> str:
    text = await text_of(page, ".admin-progress-text")
    return text if text.startswith(("导入完成", "导入失败")) else ""


async def _only(page: Page, user: str) -> bool:
    users = await page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.user)")
    return bool(users == [user])


async def _has(text: Any, part: str) -> bool:
    return part in await text


async def _lacks(text: Any, part: str) -> bool:
    return part not in await text


async def _try_sign_in(browser: Browser, base: str, user: str, password: str) -> str:
    """What the sign-in page says to `user`, or "signed in" when it let them in."""
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{base}/app/signin.html?next=/app/console/admin.html", timeout=10_000)
        await sign_in(page, user, password)

        async def outcome() -> str:
            if page.url.split("?")[0].endswith("/app/console/admin.html"):
                return "signed in"
            return await text_of(page, "#message")

        return await until(outcome, within=10, what=f"{user}'s sign-in answered")
    finally:
        await context.close()


def main() -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="cc-admin-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
