// Headless Debian chromium under playwright-core, steered line by line by test_browser.py:
// each line on stdin is a JSON command {id, cmd, page, ...}, each answer one JSON line on stdout
// {id, ok, value} or {id, ok: false, error}. The test keeps the file system side (mounts, reads);
// this script only does what a person would do in the page. stderr carries the pages' console.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
const ACTION_TIMEOUT_MS = 15000;

const pages = new Map();
const pageErrors = new Map();
let browser;

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

// The value of a DOM.Node's attribute (CDP lists them as name, value, name, value, ...).
function attribute(node, key) {
  const list = node.attributes || [];
  for (let i = 0; i + 1 < list.length; i += 2) if (list[i] === key) return list[i + 1];
  return '';
}

const commands = {
  async open({ page: name, url, width = 1000, height = 900 }) {
    const context = await browser.newContext({ viewport: { width, height } });
    const p = await context.newPage();
    p.setDefaultTimeout(ACTION_TIMEOUT_MS);
    pageErrors.set(name, []);
    p.on('console', (m) => process.stderr.write(`[${name} console.${m.type()}] ${m.text()}\n`));
    p.on('pageerror', (e) => {
      pageErrors.get(name).push(String(e));
      process.stderr.write(`[${name} pageerror] ${e}\n`);
    });
    const response = await p.goto(url);
    pages.set(name, p);
    return { status: response.status(), type: response.headers()['content-type'] };
  },
  async setFiles({ page: name, selector, paths }) {
    await page(name).setInputFiles(selector, paths);
  },
  async fill({ page: name, selector, value }) {
    await page(name).fill(selector, value);
  },
  async click({ page: name, selector }) {
    await page(name).click(selector);
  },
  async text({ page: name, selector }) {
    return page(name).textContent(selector);
  },
  async eval({ page: name, expression }) {
    return page(name).evaluate(expression);
  },
  async screenshot({ page: name, path, fullPage = true }) {
    await page(name).screenshot({ path, fullPage });
  },
  async viewport({ page: name, width, height }) {
    await page(name).setViewportSize({ width, height });
  },
  // Chromium's own accessibility tree: for each element matching selector, its tag, id, role,
  // computed accessible name and whether it is left out of the tree.
  async accessibleNames({ page: name, selector }) {
    const p = page(name);
    const cdp = await p.context().newCDPSession(p);
    try {
      const { root } = await cdp.send('DOM.getDocument', { depth: 0 });
      const { nodeIds } = await cdp.send('DOM.querySelectorAll', { nodeId: root.nodeId, selector });
      const result = [];
      for (const nodeId of nodeIds) {
        const { node } = await cdp.send('DOM.describeNode', { nodeId });
        const { nodes } = await cdp.send('Accessibility.getPartialAXTree',
          { nodeId, fetchRelatives: false });
        const ax = nodes.find((n) => n.backendDOMNodeId === node.backendNodeId) || {};
        result.push({ tag: node.nodeName.toLowerCase(), id: attribute(node, 'id'),
          role: ax.role?.value ?? '', name: ax.name?.value ?? '', ignored: !!ax.ignored });
      }
      return result;
    } finally {
      await cdp.detach();
    }
  },
  async errors({ page: name }) {
    return pageErrors.get(name) || [];
  },
  async close({ page: name }) {
    const p = page(name);
    pages.delete(name);
    await p.context().close();
  },
};

function reply(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  reply({ id: 0, ok: true, value: browser.version() });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    if (command.cmd === 'quit') break;
    try {
      const handler = commands[command.cmd];
      if (!handler) throw new Error(`unknown command ${command.cmd}`);
      reply({ id: command.id, ok: true, value: (await handler(command)) ?? null });
    } catch (error) {
      reply({ id: command.id, ok: false, error: String(error && error.message || error) });
    }
  }
  await browser.close();
}

main().catch(async (error) => {
  process.stderr.write(`driver: ${error.stack || error}\n`);
  reply({ id: 0, ok: false, error: String(error.message || error) });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
});
