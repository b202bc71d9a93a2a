// The one element builder of the dashboard's modules. Everything from the server is written as text, never HTML.

/**
 * Creates an element. Attributes: `class`, `text` (its text content), `onX` with a function (an event listener),
 * anything else as an attribute (skipped when undefined, null or false; `true` gives an empty one). Children are
 * appended as given (strings become text; null and undefined are skipped).
 */
export function el (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (key === 'class') node.className = value
    else if (key === 'text') node.textContent = String(value)
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value)
    else node.setAttribute(key, value === true ? '' : String(value))
  }
  node.append(...children.filter((c) => c !== null && c !== undefined))
  return node
}
