// The script helpers both pages share (src/serve/util.js, put into page.html and
// fleet.html at compile time by src/serve/page.rs), run in Node's vm with a clock and a
// token dialog of our own. Run: `make test-node`, or `node --test tests/node/util.test.mjs`.
// No npm packages: node:test, node:assert, node:vm and node:fs only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOURCE = fs.readFileSync(path.join(repo, 'src/serve/util.js'), 'utf8');
const NOW = Date.UTC(2024, 11, 18, 12, 0, 0); // ms

/** util.js evaluated in a fresh context whose clock reads NOW and whose document and
 *  sessionStorage are `globals`'; its helpers returned. */
function load(globals = {}) {
  const ctx = vm.createContext({ ...globals });
  vm.runInContext(`Date.now = () => ${NOW};`, ctx);
  return vm.runInContext(`"use strict";\n${SOURCE}\n;({ bytes, num, wallClock, agoSaying, bearer })`, ctx);
}

test('ago: one rule for a time ahead of this clock, an hour of slack', () => {
  const { agoSaying } = load();
  const ago = agoSaying('FUTURE');
  const at = (secondsAgo) => ago(NOW / 1000 - secondsAgo);
  assert.equal(at(0), "à l'instant");
  assert.equal(at(59), "à l'instant");
  assert.equal(at(-120), "à l'instant", 'two minutes ahead is drift, not a wrong clock');
  assert.equal(at(-3600), "à l'instant");
  assert.equal(at(-3601), 'FUTURE');
  assert.equal(at(-86400 * 365), 'FUTURE');
  assert.equal(at(60), 'il y a 1 min');
  assert.equal(at(3599), 'il y a 59 min');
  assert.equal(at(3600), 'il y a 1 h');
  assert.equal(at(48 * 3600 - 1), 'il y a 47 h');
  assert.equal(at(48 * 3600), 'il y a 2 jours');
  assert.equal(at(10 * 86400 + 5), 'il y a 10 jours');
  for (const none of [null, undefined, NaN, Date.parse('not a date') / 1000]) {
    assert.equal(ago(none), '', String(none));
  }
});

test('bytes: French units, two decimals under 10, a fallback for no number', () => {
  const { bytes, num } = load();
  assert.equal(bytes(0), '0 o');
  assert.equal(bytes(1023), '1023 o');
  assert.equal(bytes(1536), '1,5 Ko');
  assert.equal(bytes(2.25 * 1024 * 1024), '2,25 Mo');
  assert.equal(bytes(123.45 * 1024 * 1024), '123,5 Mo');
  assert.equal(bytes(5 * 1024 ** 5), (5 * 1024).toLocaleString('fr-FR').replace(/\s/g, '\u202f') + ' To');
  assert.equal(bytes(undefined), '—');
  assert.equal(bytes(NaN, '1.2 MB'), '1.2 MB');
  assert.equal(bytes('12'), '—', 'a string is not a size');
  assert.equal(num(1234567).replace(/\s/g, ' '), '1 234 567');
  assert.equal(num(null), '0');
});

test('wall: the wall time as written, whatever the zone of this device', () => {
  const { wallClock } = load();
  const pi = wallClock({ weekday: 'short' });
  const fleet = wallClock({});
  assert.equal(pi('2024-12-18 03:00:00'), 'mer. 18 déc. 2024 à 03:00');
  assert.equal(pi('2024-12-18T23:59:00-05:00'), 'mer. 18 déc. 2024 à 23:59');
  assert.equal(fleet('2024-12-18T03:00:00+01:00'), '18 déc. 2024 à 03:00');
  assert.equal(fleet('hier'), 'hier');
  assert.equal(fleet(''), '—');
  assert.equal(fleet(null), '—');
});

/** A token dialog and a logout button, as both pages have them. */
function fakePage(stored) {
  const store = new Map(stored ? [['k', stored]] : []);
  const node = () => ({ hidden: false, textContent: '', value: '', focus() {} });
  const nodes = {
    '#logout': node(),
    '#tok': node(),
    '#tok-err': node(),
    '#tokform': node(),
    '#tokdlg': {
      ...node(),
      open: false,
      opened: 0,
      showModal() { this.open = true; this.opened++; },
      close() { this.open = false; },
      addEventListener() {},
    },
  };
  const sessionStorage = {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => store.set(k, v),
    removeItem: (k) => store.delete(k),
  };
  const document = { querySelector: (s) => nodes[s] };
  const submit = (v) => {
    nodes['#tok'].value = v;
    nodes['#tokform'].onsubmit({ preventDefault() {} });
  };
  return { nodes, store, submit, globals: { document, sessionStorage } };
}

test('bearer: the token kept for the tab, asked once when refused', async () => {
  const page = fakePage('old');
  const auth = load(page.globals).bearer('k');
  assert.equal(auth.value, 'old');
  assert.equal(page.nodes['#logout'].hidden, false, 'a held token can be forgotten');

  // Two requests refused with the same token: one dialog, both wait for its answer.
  const a = auth.refused('old');
  const b = auth.refused('old');
  assert.equal(auth.value, '');
  assert.equal(page.store.has('k'), false);
  assert.equal(page.nodes['#logout'].hidden, true);
  assert.equal(page.nodes['#tokdlg'].opened, 1);
  assert.match(page.nodes['#tok-err'].textContent, /refusé/);
  page.submit('  ');
  assert.equal(page.nodes['#tokdlg'].open, true, 'an empty token is not an answer');
  page.submit(' new ');
  await Promise.all([a, b]);
  assert.equal(auth.value, 'new');
  assert.equal(page.store.get('k'), 'new');
  assert.equal(page.nodes['#logout'].hidden, false);
  assert.equal(page.nodes['#tokdlg'].open, false);

  // A 401 to a request sent with a token already replaced asks nothing.
  await auth.refused('old');
  assert.equal(auth.value, 'new');
  assert.equal(page.nodes['#tokdlg'].opened, 1);

  auth.forget();
  assert.equal(auth.value, '');
  assert.equal(page.store.has('k'), false);
  assert.equal(page.nodes['#logout'].hidden, true);

  // No token yet: the first 401 asks without saying "refused".
  const fresh = fakePage(null);
  const first = load(fresh.globals).bearer('k');
  assert.equal(fresh.nodes['#logout'].hidden, true);
  const asked = first.refused('');
  assert.equal(fresh.nodes['#tok-err'].hidden, true);
  fresh.submit('t');
  await asked;
  assert.equal(first.value, 't');
});
