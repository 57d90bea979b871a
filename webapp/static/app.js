// Small behaviours htmx does not cover: closing the modal, select-all, Escape.
document.addEventListener("click", (event) => {
  if (event.target.closest(".close-modal")) {
    document.getElementById("modal").innerHTML = "";
  }
  const all = event.target.closest(".select-all");
  if (all) {
    document.querySelectorAll("input[name=batch_no]").forEach((box) => { box.checked = all.checked; });
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.getElementById("modal").innerHTML = "";
});
