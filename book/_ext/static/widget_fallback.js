// GSA-Nets book: a note in every widget area (see book/_ext/gsa_book.py).
// The sliders need a running notebook; on this static page they are frozen, and offline
// (no widget JavaScript from the CDN) the area would be empty. The static figure below each
// widget shows the same thing.
document.addEventListener("DOMContentLoaded", function () {
  var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  views.forEach(function (view) {
    var area = view.parentElement;
    if (!area || area.querySelector(".gsa-widget-note")) {
      return;
    }
    var note = document.createElement("p");
    note.className = "gsa-widget-note";
    note.textContent =
      "Interactive widget: run this notebook (for example in Colab, from the rocket button " +
      "at the top of the page) to move the sliders. The figure below shows the same on this page.";
    area.insertBefore(note, area.firstChild);
  });
});
