// The sign-in page: user, password and (when the account has one) a one-time code are posted
// to /api/session; the answer sets an HttpOnly cookie the other pages exchange for a
// WebSocket token (POST /api/session/token), so a reload (F5) keeps the sign-in.
// Chinese by default; ?lang=en (remembered) switches to English.
"use strict";

(() => {
  const TEXT = {
    zh: {
      title: "指挥中心",
      heading: "登录",
      user: "用户名",
      password: "密码",
      code: "动态验证码",
      submit: "登录",
      other: "English",
      bad_credentials: "用户名或密码错误",
      code_required: "请输入动态验证码",
      bad_code: "动态验证码错误",
      locked: "登录失败次数过多，账号已临时锁定，请 {s} 秒后再试",
      disabled: "该账号已停用，请联系管理员",
      rate_limited: "尝试过于频繁，请稍后再试",
      unavailable: "服务器暂时无法登录，请稍后再试",
      failed: "登录失败（{code}）",
      network: "无法连接服务器",
      sso: "使用省统一身份认证登录",
      oidc_no_account: "统一身份认证成功，但本系统没有您的账号，请联系管理员",
      oidc_failed: "统一身份认证登录失败（{code}）",
    },
    en: {
      title: "Command center",
      heading: "Sign in",
      user: "User",
      password: "Password",
      code: "One-time code",
      submit: "Sign in",
      other: "中文",
      bad_credentials: "Wrong user or password",
      code_required: "Enter the one-time code",
      bad_code: "Wrong one-time code",
      locked: "Too many failed sign-ins: the account is locked; try again in {s} s",
      disabled: "This account is disabled; ask an administrator",
      rate_limited: "Too many attempts; try again shortly",
      unavailable: "Signing in is not possible right now; try again shortly",
      failed: "Sign-in failed ({code})",
      network: "Cannot reach the server",
      sso: "Sign in with the province's single sign-on",
      oidc_no_account: "Single sign-on worked, but there is no account for you here; ask an administrator",
      oidc_failed: "Single sign-on failed ({code})",
    },
  };
  const params = new URLSearchParams(location.search);
  const lang = params.get("lang") || localStorage.getItem("cc.lang") || "zh";
  const t = TEXT[lang] || TEXT.zh;
  if (params.get("lang")) localStorage.setItem("cc.lang", lang);
  const $ = (id) => document.getElementById(id);

  // Only a page of ours: a link must not send a fresh sign-in to another site.
  function nextPage() {
    const next = params.get("next") || "";
    // Pages in folders too (/app/console/index.html); no segment may start with a dot.
    return /^\/app\/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9._-]*$/.test(next) && !next.includes("/.")
      ? next
      : "/app/index.html";
  }

  function say(key, vars = {}) {
    let text = t[key] || t.failed;
    for (const [k, v] of Object.entries(vars)) text = text.replace(`{${k}}`, v);
    $("message").textContent = text;
  }

  async function submit(event) {
    event.preventDefault();
    const body = { user: $("user").value, password: $("password").value };
    if (!$("code-row").hidden && $("code").value) body.code = $("code").value;
    $("submit").disabled = true;
    try {
      const resp = await fetch("/api/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (resp.ok) {
        location.replace(nextPage());
        return;
      }
      const answer = await resp.json().catch(() => ({}));
      const code = answer.error || String(resp.status);
      if (code === "code_required" || code === "bad_code") {
        $("code-row").hidden = false;
        $("code").focus();
      }
      say(code, { s: resp.headers.get("Retry-After") || "", code });
    } catch (err) {
      say("network");
    } finally {
      $("submit").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = `${t.heading} · ${t.title}`;
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t[el.dataset.t];
    const other = lang === "en" ? "zh" : "en";
    $("lang").textContent = t.other;
    $("lang").href = `?lang=${other}&next=${encodeURIComponent(nextPage())}`;
    $("signin").addEventListener("submit", submit);
    // Single sign-on, when the server has a provider; and what went wrong if it came back.
    fetch("/api/session/methods")
      .then((r) => (r.ok ? r.json() : { oidc: false }))
      .then((m) => {
        if (!m.oidc) return;
        $("sso").href = `/api/session/oidc/start?next=${encodeURIComponent(nextPage())}`;
        $("sso").hidden = false;
      })
      .catch(() => {});
    const error = params.get("error");
    if (error === "disabled" || error === "oidc_no_account") say(error);
    else if (error) say("oidc_failed", { code: error.replace(/[^a-z_]/g, "") });
    $("user").focus();
  });
})();
