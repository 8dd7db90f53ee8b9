// Building DOM nodes without HTML strings. Every piece of text, above all what the server
// sends (file names, error details), goes in as a text node: markup in it stays text.

/**
 * `h("button", { class: "primary", type: "button", onclick: fn }, "Save")`.
 * Props: `class`, `text`, `dataset`, `hidden`, `on<event>` handlers; anything else is an
 * attribute. `style` and `innerHTML` are refused on purpose (the page's CSP forbids inline
 * styles, and HTML from data is never wanted).
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "hidden") node.hidden = Boolean(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "style" || name === "innerHTML") throw new Error(`h(): ${name} not allowed`);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Replace an element's content with text (never parsed as HTML). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Shortcut for `document.getElementById` that fails loudly when the page changed. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

let announceTimer = 0;

/** Read a short message out to screen readers through the page's polite live region. */
export function announce(message) {
  const region = byId("announcer");
  // Clearing first makes repeated identical messages be read again.
  region.textContent = "";
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    region.textContent = message;
  }, 50);
}
