// Small behaviours htmx does not cover: closing the modal, select-all, Escape, the phone menu, printing,
// and an alert for every htmx request that fails (htmx errors are never silent).
// htmx has processed the page (its first htmx:load is on <body>): buttons and links take clicks (app.css).
document.addEventListener("htmx:load", (event) => {
  if (event.detail.elt === document.body) document.documentElement.classList.remove("htmx-pending");
});
document.addEventListener("click", (event) => {
  if (event.target.closest(".close-modal")) {
    document.getElementById("modal").innerHTML = "";
  }
  const all = event.target.closest(".select-all");
  if (all) {
    document.querySelectorAll("input[name=batch_no]").forEach((box) => { box.checked = all.checked; });
  }
  if (event.target.closest(".menu-toggle")) {
    const bar = event.target.closest(".topbar");
    bar.classList.toggle("open");
    event.target.closest(".menu-toggle").setAttribute("aria-expanded", bar.classList.contains("open"));
  }
  const dismiss = event.target.closest(".alert .dismiss");
  if (dismiss) dismiss.closest(".alert").remove();
  if (event.target.closest(".alert .reload")) window.location.reload();
  if (event.target.closest(".print-page")) window.print(); // 红冲草稿's print page
});
// 导出: once the server has counted the rows it puts the download link in the page (pool/_export_note.html);
// following it starts the download, which the browser shows growing while the workbook is written.
document.addEventListener("htmx:afterSettle", () => {
  document.querySelectorAll("a.export-start:not([data-started])").forEach((link) => {
    link.dataset.started = "yes";
    link.click();
  });
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.getElementById("modal").innerHTML = "";
});

const FALLBACK = {
  0: "无法连接服务器，请检查网络后重试",
  400: "请求无效（页面可能已过期），请刷新页面后重试",
  401: "登录已过期，请重新登录",
  403: "您没有权限执行此操作",
  404: "数据不存在，或您没有查看它的权限",
  409: "操作与数据的当前状态冲突，请刷新页面查看最新状态后再试",
  413: "文件过大",
};

// The server's own Chinese message (error partials are one short paragraph), else a fallback by status.
function messageOf(xhr) {
  const holder = document.createElement("div");
  holder.innerHTML = xhr && xhr.responseText ? xhr.responseText : "";
  const shown = holder.querySelector("[role=alert], .error, p");
  const text = (shown ? shown.textContent : "").trim();
  if (text && text.length < 300) return text;
  const status = xhr ? xhr.status : 0;
  return FALLBACK[status] || (status >= 500 ? "服务器处理出错，请稍后重试；若反复出现请联系管理员" : `操作失败（${status}），请刷新页面后重试`);
}

// One alert per distinct message: a poll failing every 2 s does not stack up alerts.
function showAlert(text) {
  const box = document.getElementById("alerts");
  if (!box) return;
  for (const old of box.querySelectorAll(".alert")) {
    if (old.dataset.text === text) return;
  }
  const alert = document.createElement("div");
  alert.className = "alert";
  alert.setAttribute("role", "alert");
  alert.dataset.text = text;
  const words = document.createElement("span");
  words.textContent = text;
  const actions = document.createElement("span");
  actions.className = "actions";
  actions.innerHTML = '<button type="button" class="reload">刷新页面</button><button type="button" class="dismiss">关闭</button>';
  alert.append(words, actions);
  box.append(alert);
}

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.getResponseHeader("HX-Redirect")) return; // the whole page goes to the login
  // a refused confirmation (终止 / 重试 → 409, 403): the question is moot, the alert says what to do;
  // the import dialog (which answers into the modal itself) stays open with the user's choices
  const modal = document.getElementById("modal");
  const target = event.detail.target;
  if (modal && modal.contains(event.detail.elt) && !(target && modal.contains(target)) && target !== modal) modal.innerHTML = "";
  showAlert(messageOf(xhr));
});
document.addEventListener("htmx:sendError", () => showAlert(FALLBACK[0]));
document.addEventListener("htmx:timeout", () => showAlert(FALLBACK[0]));
document.addEventListener("htmx:swapError", () => showAlert("页面更新失败，请刷新页面"));
document.addEventListener("htmx:targetError", () => showAlert("页面更新失败，请刷新页面"));
