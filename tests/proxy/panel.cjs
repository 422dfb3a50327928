// A model of the admin panel's server (raspberry/admin/admin-server.js, Express) with a
// session login, into which the tests insert the proxy lines of docs/admin-panel.md,
// "Express", read from that file. Only what matters for the proxy is modelled: the
// body parser first (the real panel's order), express-session, a login route, the
// panel's login middleware (`requireLogin`: 401 on /api/* without a session), a
// session check for nginx's auth_request, and the panel's other routes. CommonJS, like
// the real admin-server.js.

'use strict';

const express = require('express');
const session = require('express-session');
const crypto = require('node:crypto');

/** The panel's own login check: the middleware the documented lines call. */
function requireLogin(req, res, next) {
  if (req.session && req.session.user) return next();
  res.status(401).json({ error: 'Non authentifié' });
}

/**
 * Builds the panel. `docLines` is the JavaScript of docs/admin-panel.md ("Express"),
 * run with `app`, `require` and `requireLogin` in scope; `placement` says where it goes
 * in the panel's middleware order:
 *   'before-json'   after the session middleware, before express.json()
 *   'before-login'  after express.json(), before the panel's login middleware
 *   'after-login'   after the panel's login middleware
 * Without `docLines` the panel has no backups routes at all (the nginx setup).
 */
function makePanel({ password, docLines, placement }) {
  const app = express();
  const insert = (where) => {
    if (docLines && placement === where) {
      new Function('app', 'require', 'requireLogin', docLines)(app, require, requireLogin);
    }
  };
  app.use(
    session({
      secret: crypto.randomBytes(32).toString('hex'),
      name: 'neopro.sid',
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax' },
    }),
  );
  insert('before-json');
  app.use(express.json());
  insert('before-login');

  app.post('/api/auth/login', (req, res) => {
    const given = Buffer.from(String((req.body && req.body.password) || ''));
    const want = Buffer.from(password);
    if (given.length !== want.length || !crypto.timingSafeEqual(given, want)) {
      return res.status(401).json({ error: 'Mot de passe incorrect' });
    }
    req.session.regenerate((err) => {
      if (err) return res.status(500).json({ error: 'Session impossible' });
      req.session.user = 'admin';
      res.json({ success: true });
    });
  });
  app.post('/api/auth/logout', (req, res) => {
    req.session.destroy(() => res.json({ success: true }));
  });
  // For nginx's auth_request (docs/admin-panel.md, "nginx"): 204 with a session, 401 without.
  app.get('/api/auth/check', requireLogin, (req, res) => res.sendStatus(204));

  // The panel's login middleware: every other /api route needs a session.
  app.use('/api', requireLogin);
  insert('after-login');

  // The panel's other routes.
  app.get('/api/config', (req, res) => res.json({ club: 'Club Test' }));
  app.get('/', (req, res) => res.type('html').send('<!doctype html><title>Panel</title>'));
  app.use((req, res) => res.status(404).json({ error: 'Route inconnue (panel)' }));
  return app;
}

module.exports = { makePanel, requireLogin };
