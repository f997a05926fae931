// The page: picks files, shows what the device reads. Everything that speaks to the device is in
// webfuse-provider.js.
import { WebfuseProvider, uniqueNames, validFilesystemName } from './webfuse-provider.js';

const PROGRESS_INTERVAL_MS = 100;

const $ = (id) => document.getElementById(id);
const ui = {
  dropzone: $('dropzone'),
  fileInput: $('file-input'),
  fileList: $('file-list'),
  filesEmpty: $('files-empty'),
  form: $('attach-form'),
  name: $('fs-name'),
  nameEcho: $('name-echo'),
  nameError: $('fs-name-error'),
  url: $('gateway-url'),
  user: $('login-user'),
  password: $('login-password'),
  attach: $('attach'),
  detach: $('detach'),
  badge: $('state-badge'),
  total: $('total'),
  status: $('status'),
};

let chosen = []; // File objects, in the order they were picked
let provider = null;
let rows = []; // the list items, one per chosen file
let progressTimer = null;
let unreadable = new Set(); // indexes of chosen files the browser could not read any more

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function attached() {
  return provider !== null &&
    ['connecting', 'open', 'closing'].includes(provider.state);
}

function setStatus(text) {
  ui.status.textContent = text;
}

const BADGES = {
  idle: 'Not attached',
  connecting: 'Connecting…',
  open: 'Attached',
  closing: 'Detaching…',
  closed: 'Not attached',
  failed: 'Not reached',
  refused: 'Refused',
  lost: 'Connection lost',
};

function setBadge(state) {
  ui.badge.dataset.state = state;
  ui.badge.textContent = BADGES[state];
}

// ---- the list of files -------------------------------------------------------------------------

function fileRow(name, size, index) {
  const li = document.createElement('li');
  li.className = 'file';
  li.dataset.name = name;
  li.dataset.size = String(size);
  li.dataset.served = '0';
  li.dataset.covered = '0';

  const head = document.createElement('div');
  head.className = 'file-head';
  const title = document.createElement('span');
  title.className = 'file-name';
  title.textContent = name;
  const sizeText = document.createElement('span');
  sizeText.className = 'file-size';
  sizeText.textContent = formatBytes(size);
  head.append(title, sizeText);
  if (!attached()) {
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${name}`);
    remove.addEventListener('click', () => {
      changeFiles(() => chosen.splice(index, 1));
      // Keyboard users stay in the list: the next row's Remove, else the file picker.
      const buttons = ui.fileList.querySelectorAll('button.remove');
      (buttons[Math.min(index, buttons.length - 1)] || ui.fileInput).focus();
    });
    head.append(remove);
  }

  const bar = document.createElement('progress');
  bar.max = Math.max(size, 1);
  bar.value = 0;
  bar.setAttribute('aria-label', `${name}: part read by the device`);
  const meta = document.createElement('p');
  meta.className = 'file-meta';
  li.append(head, bar, meta);
  if (unreadable.has(index)) {
    const error = document.createElement('p');
    error.className = 'error';
    error.textContent = 'The browser cannot read it any more: the device gets an I/O error.';
    li.append(error);
  }
  showProgress(li, 0, 0);
  return li;
}

function showProgress(li, served, covered) {
  const size = Number(li.dataset.size);
  li.dataset.served = String(served);
  li.dataset.covered = String(covered);
  li.querySelector('progress').value = size === 0 ? 0 : covered;
  const percent = size === 0 ? 0 : Math.floor((covered / size) * 100);
  li.querySelector('.file-meta').textContent =
    `${percent}% read by the device (${formatBytes(covered)} of ${formatBytes(size)}) · ` +
    `${formatBytes(served)} served`;
}

function renderFiles() {
  const names = uniqueNames(chosen.map((f) => f.name));
  rows = chosen.map((file, i) => fileRow(names[i], file.size, i));
  // After a detach the list still shows what the device read, until the files change.
  if (provider) provider.files.forEach((f, i) => showProgress(rows[i], f.served, f.covered));
  ui.fileList.replaceChildren(...rows);
  ui.filesEmpty.hidden = chosen.length > 0;
}

// A new choice of files starts with fresh counts.
function changeFiles(change) {
  if (attached()) return;
  provider = null;
  unreadable = new Set();
  ui.total.textContent = '';
  change();
  renderFiles();
}

function addFiles(files) {
  if (attached() || files.length === 0) return;
  changeFiles(() => chosen.push(...files));
  setStatus(`${chosen.length} file${chosen.length === 1 ? '' : 's'} chosen. Attach to lend ` +
    `${chosen.length === 1 ? 'it' : 'them'} to the device.`);
}

function flushProgress() {
  progressTimer = null;
  if (!provider) return;
  let served = 0;
  provider.files.forEach((f, i) => {
    served += f.served;
    if (rows[i]) showProgress(rows[i], f.served, f.covered);
  });
  ui.total.textContent = `${formatBytes(served)} served in all`;
}

// Reads come in by the thousand: the page redraws at most every PROGRESS_INTERVAL_MS.
function scheduleProgress() {
  if (progressTimer === null) progressTimer = setTimeout(flushProgress, PROGRESS_INTERVAL_MS);
}

// A chosen file changed, moved or was deleted since it was picked: the browser refuses to read it.
function showReadError({ index, name }) {
  if (unreadable.has(index)) return;
  unreadable.add(index);
  renderFiles();
  setStatus(`The browser can no longer read "${name}" (changed, moved or deleted since it was ` +
    'chosen): the device gets an I/O error for it. Detach, choose it again and attach.');
}

// ---- attaching ---------------------------------------------------------------------------------

function nameProblem(name) {
  if (name === '') return 'Give the filesystem a name.';
  if (!validFilesystemName(name)) {
    return 'Use 1 to 64 letters, digits, ".", "_" or "-" (not "." or "..").';
  }
  return null;
}

function checkName() {
  const problem = nameProblem(ui.name.value.trim());
  ui.nameError.hidden = problem === null;
  ui.nameError.textContent = problem || '';
  ui.name.setAttribute('aria-invalid', problem ? 'true' : 'false');
  ui.nameEcho.textContent = ui.name.value.trim() || '…';
  return problem === null;
}

// ws(s)://<host that served the page>/<name>, or the typed gateway address with the name added.
function gatewayUrl(name) {
  const typed = ui.url.value.trim();
  let base;
  if (typed !== '') {
    try {
      base = new URL(typed);
    } catch {
      throw new Error(`"${typed}" is not an address. Type one like ws://192.0.2.10:8081.`);
    }
    if (base.protocol === 'http:') base.protocol = 'ws:';
    if (base.protocol === 'https:') base.protocol = 'wss:';
    if (base.protocol !== 'ws:' && base.protocol !== 'wss:') {
      throw new Error('The gateway address must start with ws:// or wss://.');
    }
  } else {
    if (location.protocol !== 'http:' && location.protocol !== 'https:') {
      throw new Error('This page was not served by a device: type the gateway address under ' +
        '"Another device".');
    }
    base = new URL(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`);
  }
  const path = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  base.pathname = `${path}${encodeURIComponent(name)}`;
  base.search = '';
  base.hash = '';
  return base.toString();
}

function setAttachedUi(busy) {
  ui.fileInput.disabled = busy;
  ui.name.disabled = busy;
  ui.url.disabled = busy;
  ui.user.disabled = busy;
  ui.password.disabled = busy;
  ui.attach.disabled = busy;
  ui.detach.disabled = !busy;
  ui.dropzone.classList.toggle('disabled', busy);
  renderFiles();
}

function closeBadge(event) {
  if (event.byUser || event.code === 1000) return 'closed';
  if (!event.wasOpen) return 'failed';
  if (event.code === 1008 && !event.localReason) return 'refused';
  return 'lost';
}

function closeMessage(event, name) {
  if (event.byUser && !event.wasOpen) return `Cancelled. The device never saw "${name}".`;
  if (event.byUser && !event.wasClean) {
    return `Stopped lending "${name}" here; the device did not confirm the detach.`;
  }
  if (event.byUser) return `Detached. The device no longer sees "${name}".`;
  if (event.localReason) {
    return `The page closed the connection: the device asked for more than the page could ` +
      `answer (${event.localReason}). Attach again to go on.`;
  }
  if (!event.wasOpen) {
    return `Could not reach the device at ${provider.url}. Is webfused running there, and is ` +
      'the address right?';
  }
  const reason = event.reason ? `: ${event.reason}` : '';
  switch (event.code) {
    case 1000:
    case 1001:
      return `The device detached "${name}"${reason}. It can no longer read the files.`;
    case 1008:
      if (event.reason.startsWith('too many login attempts')) {
        return 'The device turns logins from this address away for now (too many attempts). ' +
          'Wait a minute, then attach again.';
      }
      if (event.reason === 'authentication failed') {
        return ui.user.value.trim()
          ? 'The device did not accept the user and password under "Log in".'
          : 'The device asks for a login: fill in user and password under "Log in" and attach ' +
            'again.';
      }
      return `The device refused "${name}"${reason}. Choose another name and attach again.`;
    case 1006:
      return 'The connection to the device was lost. It can no longer read the files; attach ' +
        'again to go on.';
    default:
      return `The connection closed (code ${event.code}${reason}). The device can no longer ` +
        'read the files.';
  }
}

// webfuse2 logs in with USER:PASSWORD, given when the gateway asks (getcreds); none without a user.
function loginToken() {
  const user = ui.user.value.trim();
  return user ? `${user}:${ui.password.value}` : '';
}

function attach() {
  if (attached()) return;
  if (ui.user.value.includes(':')) {
    ui.user.focus();
    setStatus('The user name cannot contain ":" (the device reads the login as USER:PASSWORD).');
    return;
  }
  if (!checkName()) {
    ui.name.focus();
    setStatus('The filesystem name needs fixing.');
    return;
  }
  if (chosen.length === 0) {
    setStatus('Choose at least one file first.');
    return;
  }
  const name = ui.name.value.trim();
  let url;
  try {
    url = gatewayUrl(name);
  } catch (error) {
    setStatus(error.message);
    return;
  }
  const names = uniqueNames(chosen.map((f) => f.name));
  const files = chosen.map((file, i) => ({
    name: names[i],
    size: file.size,
    mtime: file.lastModified,
    read: (offset, length) => file.slice(offset, offset + length).arrayBuffer(),
  }));
  unreadable = new Set();
  try {
    provider = new WebfuseProvider({ url, files, token: loginToken() });
  } catch (error) {
    setStatus(`Cannot lend these files: ${error.message}`);
    return;
  }
  const lent = provider;
  let opened = false;
  // Only the provider of the current attach speaks to the page.
  const on = (type, listener) => lent.on(type, (e) => lent === provider && listener(e));
  on('read', scheduleProgress);
  on('readerror', showReadError);
  on('state', ({ state }) => {
    if (state !== 'closing') return;
    setBadge('closing');
    setStatus(opened ? `Detaching "${name}"…` : 'Cancelling…');
    ui.detach.disabled = true;
  });
  on('open', () => {
    opened = true;
    setBadge('open');
    setStatus(`Attached as "${name}". The device can read ${files.length} ` +
      `file${files.length === 1 ? '' : 's'} now; keep this page open.`);
  });
  on('close', (event) => {
    flushProgress();
    setBadge(closeBadge(event));
    setStatus(closeMessage(event, name));
    setAttachedUi(false);
  });
  try {
    provider.connect();
  } catch (error) { // the browser refuses some addresses outright
    setStatus(`Cannot connect to ${url}: ${error.message}`);
    return;
  }
  setBadge('connecting');
  setStatus(`Connecting to ${url}…`);
  setAttachedUi(true);
  ui.total.textContent = '';
}

// ---- wiring ------------------------------------------------------------------------------------

ui.fileInput.addEventListener('change', () => {
  addFiles([...ui.fileInput.files]);
  ui.fileInput.value = '';
});

for (const type of ['dragenter', 'dragover']) {
  ui.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    if (!attached()) ui.dropzone.classList.add('over');
  });
}
ui.dropzone.addEventListener('dragleave', () => ui.dropzone.classList.remove('over'));
ui.dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.dropzone.classList.remove('over');
  if (attached()) return;
  const { items, files } = event.dataTransfer;
  if (!items) {
    addFiles([...files]);
    return;
  }
  // A dropped folder comes as a File that cannot be read: only files are lent.
  const dropped = [...items].filter((item) => item.kind === 'file');
  const folder = (item) => item.webkitGetAsEntry && item.webkitGetAsEntry()?.isDirectory;
  const chosenNow = dropped.filter((item) => !folder(item)).map((item) => item.getAsFile())
    .filter(Boolean);
  addFiles(chosenNow);
  if (chosenNow.length < dropped.length) {
    setStatus('Folders cannot be lent, only files: drop the files inside them.');
  }
});
// A file dropped next to the zone must not make the browser leave the page.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

ui.name.addEventListener('input', checkName);
ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  attach();
});
ui.detach.addEventListener('click', () => provider && provider.close());
window.addEventListener('beforeunload', (event) => {
  if (attached()) event.preventDefault();
});

checkName();
renderFiles();
