// vmhostd web console, "VM Devices" view: VMs, their DIMMs, a Remove button per
// plugged DIMM, kept live by the daemon's notifications on the same JSON-RPC
// WebSocket. Data only ever reaches the page through textContent.

import {
  applyNotification,
  canRemove,
  createState,
  formatMiB,
  hintFor,
  noteKey,
  resizeRequest,
  setAll,
  socketUrl,
  unplugRequest,
  zoneOf,
} from './console-model.js';

const state = createState();
const pending = new Map();
let ws = null;
let nextId = 1;
let retryMs = 500;

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function setConnection(kind, text) {
  const c = $('connection');
  c.className = `conn ${kind}`;
  c.textContent = text;
}

function logEvent(line) {
  const log = $('events');
  const item = el('li', '', `${new Date().toLocaleTimeString()}  ${line}`);
  log.prepend(item);
  while (log.children.length > 50) log.lastChild.remove();
}

function call(method, params) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      reject(new Error('not connected to vmhostd'));
      return;
    }
    const id = nextId++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
  });
}

function onMessage(ev) {
  let msg;
  try {
    msg = JSON.parse(ev.data);
  } catch {
    return;
  }
  for (const m of Array.isArray(msg) ? msg : [msg]) {
    if (!m || typeof m !== 'object') continue;
    if (typeof m.method === 'string' && m.id === undefined) {
      const line = applyNotification(state, m.method, m.params);
      if (line) logEvent(line);
      render();
      continue;
    }
    const p = pending.get(m.id);
    if (!p) continue;
    pending.delete(m.id);
    if (m.error) {
      const err = new Error(String(m.error.message ?? 'error'));
      err.reason = m.error.data && typeof m.error.data === 'object' ? m.error.data.reason : undefined;
      p.reject(err);
    } else p.resolve(m.result);
  }
}

async function refresh() {
  try {
    setAll(state, await call('Host.getAllVmStats', {}));
    render();
  } catch (e) {
    logEvent(`could not list VMs: ${e.message}`);
  }
}

function connect() {
  setConnection('connecting', 'connecting…');
  ws = new WebSocket(socketUrl(window.location));
  ws.addEventListener('open', () => {
    retryMs = 500;
    setConnection('up', 'connected');
    refresh();
  });
  ws.addEventListener('message', onMessage);
  ws.addEventListener('close', () => {
    for (const p of pending.values()) p.reject(new Error('connection lost'));
    pending.clear();
    setConnection('down', `disconnected; retrying in ${Math.round(retryMs / 1000)} s`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  });
}

async function remove(vm, dimm) {
  const ok = window.confirm(
    `Hot unplug DIMM ${dimm.alias} (${dimm.size} MiB) from ${vm.vmName}?\n\n` +
      'The guest must release the memory; this can take a while.',
  );
  if (!ok) return;
  const key = noteKey(vm.vmId, dimm.alias);
  const started = Date.now();
  state.notes.set(key, { kind: 'busy', text: 'waiting for the guest to release it…' });
  render();
  const tick = setInterval(() => {
    const note = state.notes.get(key);
    if (note && note.kind === 'busy') {
      note.text = `waiting for the guest to release it… ${Math.round((Date.now() - started) / 1000)} s`;
      render();
    }
  }, 1000);
  try {
    const r = await call('VM.hotunplugMemory', unplugRequest(vm.vmId, dimm));
    state.notes.set(key, { kind: 'ok', text: `removed; memory now ${formatMiB(r.memSize)}` });
    refresh();
  } catch (e) {
    const note = { kind: 'error', text: `not removed: ${e.message}` };
    const hint = hintFor(e.reason);
    if (hint) note.hint = hint;
    state.notes.set(key, note);
  } finally {
    clearInterval(tick);
    render();
  }
}

async function resize(vm, dev, input) {
  const key = noteKey(vm.vmId, dev.alias);
  const req = resizeRequest(vm.vmId, dev, input.value);
  if (req.error) {
    state.notes.set(key, { kind: 'error', text: req.error });
    render();
    return;
  }
  state.notes.set(key, { kind: 'busy', text: `resizing to ${formatMiB(req.params.requested)}…` });
  render();
  try {
    const r = await call('VM.resizeMemoryDevice', req.params);
    state.notes.set(key, { kind: 'ok', text: `now ${formatMiB(r.current)}; memory ${formatMiB(r.memSize)}` });
    refresh();
  } catch (e) {
    const note = { kind: 'error', text: `not resized: ${e.message}` };
    const hint = hintFor(e.reason);
    if (hint) note.hint = hint;
    state.notes.set(key, note);
  } finally {
    render();
  }
}

/** A virtio-mem device: its current and requested size (live from notifications) and a resize control. */
function renderVirtioMemRow(vm, d) {
  const tr = el('tr');
  for (const [text, cls] of [
    [d.alias, 'alias'],
    [`${formatMiB(d.current)} / ${formatMiB(d.requested)}`, 'num'],
    [formatMiB(d.size), 'num'],
    [formatMiB(d.block), 'num'],
    [d.node, 'num'],
    [d.state, `state ${d.state === 'resizing' ? 'unplugging' : 'plugged'}`],
  ]) {
    tr.append(el('td', cls, text));
  }
  const action = el('td', 'action');
  const input = el('input', 'size');
  input.type = 'number';
  input.min = '0';
  input.max = String(d.size);
  input.step = String(d.block > 0 ? d.block : 2);
  input.value = String(d.requested);
  input.setAttribute('aria-label', `new size of ${d.alias} in MiB`);
  const btn = el('button', 'resize', 'Resize');
  btn.type = 'button';
  const note = state.notes.get(noteKey(vm.vmId, d.alias));
  btn.disabled = vm.status !== 'Up' || (note !== undefined && note.kind === 'busy');
  btn.addEventListener('click', () => resize(vm, d, input));
  action.append(input, btn);
  if (note) {
    action.append(el('div', `note ${note.kind}`, note.text));
    if (note.hint) action.append(el('div', 'hint', note.hint));
  }
  tr.append(action);
  return tr;
}

function renderDimmRow(vm, d) {
  const tr = el('tr');
  for (const [text, cls] of [
    [d.alias, 'alias'],
    [formatMiB(d.size), 'num'],
    [d.node, 'num'],
    [d.slot, 'num'],
    [d.base, 'mono'],
    [d.state, `state ${d.state === 'unplugging' ? 'unplugging' : 'plugged'}`],
    [zoneOf(d).text, `zone${zoneOf(d).notMovable ? ' not-movable' : ''}`],
  ]) {
    tr.append(el('td', cls, text));
  }
  const action = el('td', 'action');
  const btn = el('button', 'remove', 'Remove');
  btn.type = 'button';
  const note = state.notes.get(noteKey(vm.vmId, d.alias));
  btn.disabled = !canRemove(vm, d) || (note !== undefined && note.kind === 'busy');
  btn.addEventListener('click', () => remove(vm, d));
  action.append(btn);
  if (note) {
    action.append(el('div', `note ${note.kind}`, note.text));
    if (note.hint) action.append(el('div', 'hint', note.hint));
  }
  tr.append(action);
  return tr;
}

function renderVm(vm) {
  const section = el('section', 'vm');
  const head = el('header');
  head.append(el('h2', '', vm.vmName), el('span', `status s-${vm.status.toLowerCase()}`, vm.status));
  section.append(head);
  const facts = el('p', 'facts');
  facts.append(
    el('span', '', `Memory ${formatMiB(vm.memSize)}`),
    el('span', '', `Guaranteed ${formatMiB(vm.memGuaranteedSize)}`),
    el('span', 'mono', vm.vmId),
  );
  section.append(facts);
  if (vm.balloonActive) {
    section.append(
      el('p', 'warn', 'Memory balloon active: combining ballooning with hot unplug is not recommended.'),
    );
  }
  const dimms = vm.memoryDevices.filter((d) => d.model !== 'virtio-mem');
  const vmems = vm.memoryDevices.filter((d) => d.model === 'virtio-mem');
  if (dimms.length === 0 && vmems.length === 0) {
    section.append(el('p', 'empty', 'No memory devices (DIMMs).'));
    return section;
  }
  const table = (headers, rows) => {
    const t = el('table');
    const hr = el('tr');
    for (const h of headers) hr.append(el('th', '', h));
    t.append(el('thead'));
    t.firstChild.append(hr);
    const body = el('tbody');
    body.append(...rows);
    t.append(body);
    return t;
  };
  if (dimms.length > 0) {
    const rows = [...dimms].sort((a, b) => a.slot - b.slot).map((d) => renderDimmRow(vm, d));
    section.append(table(['Alias', 'Size', 'Node', 'Slot', 'Base', 'State', 'Guest zone', ''], rows));
  }
  if (vmems.length > 0) {
    const rows = vmems.map((d) => renderVirtioMemRow(vm, d));
    section.append(table(['virtio-mem', 'Current / requested', 'Max', 'Block', 'Node', 'State', ''], rows));
  }
  return section;
}

function render() {
  const root = $('vms');
  const vms = [...state.vms.values()].sort((a, b) => a.vmName.localeCompare(b.vmName));
  const nodes = vms.map(renderVm);
  if (nodes.length === 0) nodes.push(el('p', 'empty', 'No VMs on this host.'));
  root.replaceChildren(...nodes);
}

document.addEventListener('DOMContentLoaded', connect);
