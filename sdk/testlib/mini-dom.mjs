// A very small DOM, just enough to run console/index.html's script under node:test without a
// browser: an HTML tokenizer for well-formed markup, elements with attributes, text, events,
// form values and a CSS selector subset (tag, #id, .class, [attr], [attr="v"], descendant).

const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr']);
const RAW = new Set(['script', 'style']);

function decode(text) {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

export class Text {
  constructor(data, doc) {
    this.nodeType = 3;
    this.data = data;
    this.parentNode = null;
    this.ownerDocument = doc;
  }
  get textContent() {
    return this.data;
  }
  set textContent(v) {
    this.data = String(v);
  }
}

export class Element {
  constructor(tagName, doc) {
    this.nodeType = 1;
    this.tagName = tagName.toUpperCase();
    this.localName = tagName.toLowerCase();
    this.attributes = new Map();
    this.childNodes = [];
    this.parentNode = null;
    this.ownerDocument = doc;
    this.listeners = {};
    this.style = {};
    this._value = null;
  }
  get children() {
    return this.childNodes.filter((n) => n.nodeType === 1);
  }
  get firstChild() {
    return this.childNodes[0] || null;
  }
  appendChild(node) {
    if (node.parentNode) node.parentNode.removeChild(node);
    node.parentNode = this;
    this.childNodes.push(node);
    return node;
  }
  removeChild(node) {
    const i = this.childNodes.indexOf(node);
    if (i < 0) throw new Error('removeChild: not a child');
    this.childNodes.splice(i, 1);
    node.parentNode = null;
    return node;
  }
  setAttribute(name, value) {
    this.attributes.set(name.toLowerCase(), String(value));
  }
  getAttribute(name) {
    const v = this.attributes.get(name.toLowerCase());
    return v === undefined ? null : v;
  }
  hasAttribute(name) {
    return this.attributes.has(name.toLowerCase());
  }
  removeAttribute(name) {
    this.attributes.delete(name.toLowerCase());
  }
  get id() {
    return this.getAttribute('id') || '';
  }
  get className() {
    return this.getAttribute('class') || '';
  }
  set className(v) {
    this.setAttribute('class', v);
  }
  get classList() {
    const self = this;
    return {
      contains: (c) => self.className.split(/\s+/).includes(c),
    };
  }
  _flag(name, on) {
    if (on) this.setAttribute(name, '');
    else this.removeAttribute(name);
  }
  get hidden() {
    return this.hasAttribute('hidden');
  }
  set hidden(v) {
    this._flag('hidden', v);
  }
  get disabled() {
    return this.hasAttribute('disabled');
  }
  set disabled(v) {
    this._flag('disabled', v);
  }
  get value() {
    if (this._value !== null) return this._value;
    if (this.localName === 'textarea') return this.textContent;
    return this.getAttribute('value') || '';
  }
  set value(v) {
    this._value = String(v);
  }
  get textContent() {
    return this.childNodes.map((n) => n.textContent).join('');
  }
  set textContent(v) {
    for (const n of this.childNodes) n.parentNode = null;
    this.childNodes = [];
    if (v !== '' && v !== null && v !== undefined) this.appendChild(new Text(String(v), this.ownerDocument));
  }
  addEventListener(type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type] = (this.listeners[type] || []).filter((f) => f !== fn);
  }
  dispatchEvent(event) {
    event.target = event.target || this;
    let node = this;
    while (node && !event._stopped) {
      event.currentTarget = node;
      for (const fn of (node.listeners && node.listeners[event.type]) || []) fn.call(node, event);
      node = event.bubbles ? node.parentNode : null;
    }
    return !event.defaultPrevented;
  }
  dispatch(type, props) {
    return this.dispatchEvent(makeEvent(type, props));
  }
  click() {
    if (this.disabled || this.closest('fieldset[disabled]')) return;
    const notPrevented = this.dispatch('click', { bubbles: true });
    if (notPrevented && this.localName === 'button' && (this.getAttribute('type') || 'submit') === 'submit') {
      const form = this.closest('form');
      if (form) form.dispatch('submit', { bubbles: true });
    }
  }
  focus() {
    this.ownerDocument.activeElement = this;
  }
  closest(selector) {
    const compiled = compile(selector);
    let node = this;
    while (node && node.nodeType === 1) {
      if (matchesChain(node, compiled)) return node;
      node = node.parentNode;
    }
    return null;
  }
  matches(selector) {
    return matchesChain(this, compile(selector));
  }
  querySelectorAll(selector) {
    const groups = selector.split(',').map((s) => compile(s.trim()));
    const out = [];
    walk(this, (el) => {
      if (groups.some((g) => matchesChain(el, g))) out.push(el);
    });
    return out;
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }
}

function makeEvent(type, props) {
  const event = {
    type,
    bubbles: false,
    defaultPrevented: false,
    _stopped: false,
    preventDefault() {
      this.defaultPrevented = true;
    },
    stopPropagation() {
      this._stopped = true;
    },
    ...props,
  };
  return event;
}

function walk(root, fn) {
  for (const child of root.childNodes) {
    if (child.nodeType !== 1) continue;
    fn(child);
    walk(child, fn);
  }
}

/** 'a b.c[d="e"]' → [{tag, id, classes, attrs}] (descendant chain). */
function compile(selector) {
  return selector
    .trim()
    .split(/\s+/)
    .map((part) => {
      const simple = { tag: null, id: null, classes: [], attrs: [] };
      const re = /([a-zA-Z][a-zA-Z0-9-]*)|#([\w-]+)|\.([\w-]+)|\[([\w-]+)(?:="([^"]*)")?\]/g;
      let m;
      let consumed = 0;
      while ((m = re.exec(part))) {
        if (m.index !== consumed) throw new Error('unsupported selector: ' + selector);
        consumed = re.lastIndex;
        if (m[1]) simple.tag = m[1].toLowerCase();
        else if (m[2]) simple.id = m[2];
        else if (m[3]) simple.classes.push(m[3]);
        else simple.attrs.push([m[4].toLowerCase(), m[5]]);
      }
      if (consumed !== part.length) throw new Error('unsupported selector: ' + selector);
      return simple;
    });
}

function matchesSimple(el, s) {
  if (s.tag && el.localName !== s.tag) return false;
  if (s.id && el.id !== s.id) return false;
  const classes = el.className.split(/\s+/);
  if (!s.classes.every((c) => classes.includes(c))) return false;
  return s.attrs.every(([name, value]) => el.hasAttribute(name) && (value === undefined || el.getAttribute(name) === value));
}

function matchesChain(el, chain) {
  if (!matchesSimple(el, chain[chain.length - 1])) return false;
  let i = chain.length - 2;
  let node = el.parentNode;
  while (i >= 0 && node && node.nodeType === 1) {
    if (matchesSimple(node, chain[i])) i--;
    node = node.parentNode;
  }
  return i < 0;
}

export class Document extends Element {
  constructor() {
    super('#document', null);
    this.ownerDocument = this;
    this.readyState = 'complete';
    this.activeElement = null;
    this.scripts = [];
  }
  createElement(tag) {
    return new Element(tag, this);
  }
  createTextNode(text) {
    return new Text(String(text), this);
  }
  getElementById(id) {
    let found = null;
    walk(this, (el) => {
      if (!found && el.id === id) found = el;
    });
    return found;
  }
}

/**
 * Parses well-formed HTML. Returns the document; `document.scripts` lists
 * `{src, text}` for every <script> in order (their text is not executed here).
 */
export function parseHTML(html) {
  const doc = new Document();
  const stack = [doc];
  const top = () => stack[stack.length - 1];
  const tokenRe = /<!--[\s\S]*?-->|<!doctype[^>]*>|<\/([a-zA-Z][\w-]*)\s*>|<([a-zA-Z][\w-]*)((?:\s+[^\s=\/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*(\/?)>|([^<]+)/gi;
  let m;
  while ((m = tokenRe.exec(html))) {
    if (m[1]) {
      const tag = m[1].toLowerCase();
      // Pop to the matching element.
      for (let i = stack.length - 1; i > 0; i--) {
        if (stack[i].localName === tag) {
          stack.length = i;
          break;
        }
      }
    } else if (m[2]) {
      const tag = m[2].toLowerCase();
      const el = doc.createElement(tag);
      const attrRe = /([^\s=\/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
      let a;
      while ((a = attrRe.exec(m[3] || ''))) {
        const value = a[2] !== undefined ? a[2] : a[3] !== undefined ? a[3] : a[4] !== undefined ? a[4] : '';
        el.setAttribute(a[1], decode(value));
      }
      top().appendChild(el);
      if (RAW.has(tag)) {
        const close = html.toLowerCase().indexOf('</' + tag, tokenRe.lastIndex);
        if (close < 0) throw new Error('unclosed <' + tag + '>');
        const text = html.slice(tokenRe.lastIndex, close);
        el.appendChild(doc.createTextNode(text));
        if (tag === 'script') doc.scripts.push({ src: el.getAttribute('src'), text });
        tokenRe.lastIndex = html.indexOf('>', close) + 1;
      } else if (!VOID.has(tag) && !m[4]) {
        stack.push(el);
      }
    } else if (m[5] !== undefined) {
      if (m[5].trim() !== '' || stack.length > 1) top().appendChild(doc.createTextNode(decode(m[5])));
    }
  }
  return doc;
}
