() => {
  // A click on a citation [n] in an answer opens that passage in the viewer beside the chat:
  // the link's "#cite-<turn>-<n>" goes into a hidden box, and its button asks the server for the passage.
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('#chatbot a[href*="#cite-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const ref = link.getAttribute("href").split("#cite-")[1] || "";
    const box = document.querySelector("#cite-ref textarea, #cite-ref input");
    const open = document.querySelector("#cite-open");
    if (!box || !open) return;
    box.value = ref;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => open.click(), 0);
  }, true);
  // Remember the tab the person clicks (its button is "tab-<id>-button"), so a reload opens it again.
  // Only clicks count: Gradio also reports the first tab as selected when the page is built.
  document.addEventListener("click", (event) => {
    const tab = event.target.closest && event.target.closest('button[role="tab"][id^="tab-"][id$="-button"]');
    if (tab) localStorage.setItem("local-rag-notebook-tab", tab.id.slice(4, -7));
  }, true);
  // Scroll the viewer to the highlighted passage whenever a new one is shown.
  new MutationObserver(() => {
    const mark = document.querySelector("#passage mark#cited");
    if (mark && !mark.dataset.shown) {
      mark.dataset.shown = "1";
      mark.scrollIntoView({ block: "center" });
    }
  }).observe(document.body, { childList: true, subtree: true });
}
