// A re-creation of the backups routes of the old admin server (raspberry/admin/
// admin-server.js, Express), for `make bench` only: the baseline of bench/api.sh.
// Same calls as the original (../shared/seed-backup-system.md, "API REST"):
// synchronous fs.readdirSync + fs.statSync per file on every GET /api/backups, sorting,
// sizes/dates/ages formatted in JavaScript, res.download() for downloads, child
// processes for create, auto-status and auto-toggle. It keeps the original's flaws on
// purpose (statSync follows symlinks; a dangling link makes the whole list a 500).
//
// Environment: BACKUP_DIR, PORT (default 8080; 0 = any), HOST (default 127.0.0.1),
// BACKUP_SCRIPT (default /home/pi/neopro/scripts/auto-backup.sh).
// Prints `listening on http://HOST:PORT` on stdout when ready.

'use strict';

const express = require('express');
const fs = require('fs');
const path = require('path');
const { exec } = require('child_process');

const app = express();
app.use(express.json());

const BACKUP_DIR = process.env.BACKUP_DIR || '/home/pi/neopro-backups';
const BACKUP_SCRIPT = process.env.BACKUP_SCRIPT || '/home/pi/neopro/scripts/auto-backup.sh';
const NAME_RE = /^backup-\d{8}-\d{6}\.tar\.gz$/;

function formatBytes(bytes) {
  if (bytes === 0) return '0 B';
  const k = 1024;
  const sizes = ['B', 'KB', 'MB', 'GB', 'TB'];
  const i = Math.floor(Math.log(bytes) / Math.log(k));
  return parseFloat((bytes / Math.pow(k, i)).toFixed(2)) + ' ' + sizes[i];
}

// Liste des backups
app.get('/api/backups', (req, res) => {
  try {
    if (!fs.existsSync(BACKUP_DIR)) {
      return res.json({ backups: [], status: null, total: 0, totalSize: 0 });
    }
    const backups = fs
      .readdirSync(BACKUP_DIR)
      .filter((f) => f.startsWith('backup-') && f.endsWith('.tar.gz'))
      .map((f) => {
        const filePath = path.join(BACKUP_DIR, f);
        const stats = fs.statSync(filePath);
        const m = f.match(/backup-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})/);
        const date = m
          ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}`
          : stats.mtime.toISOString().replace('T', ' ').substring(0, 19);
        const ageDays = Math.floor((Date.now() - stats.mtime.getTime()) / (1000 * 60 * 60 * 24));
        return {
          name: f,
          size: formatBytes(stats.size),
          sizeBytes: stats.size,
          date,
          created: stats.mtime.toISOString(),
          age: `${ageDays} jours`,
        };
      })
      .sort((a, b) => new Date(b.created) - new Date(a.created));

    let status = null;
    const statusFile = path.join(BACKUP_DIR, 'last-backup-status.json');
    if (fs.existsSync(statusFile)) {
      status = JSON.parse(fs.readFileSync(statusFile, 'utf8'));
    }

    res.json({
      backups,
      status,
      total: backups.length,
      totalSize: backups.reduce((sum, b) => sum + b.sizeBytes, 0),
    });
  } catch (error) {
    console.error('Erreur liste backups:', error);
    res.status(500).json({ error: 'Erreur lors de la lecture des backups', details: error.message });
  }
});

// Créer un backup manuel
app.post('/api/backups/create', (req, res) => {
  exec(`bash ${BACKUP_SCRIPT}`, { timeout: 120000 }, (error, stdout, stderr) => {
    if (error) {
      return res.status(500).json({
        success: false,
        error: 'Échec de la création du backup',
        details: stderr || error.message,
      });
    }
    res.json({ success: true, message: 'Backup créé avec succès', output: stdout });
  });
});

// Statut du backup automatique
app.get('/api/backups/auto-status', (req, res) => {
  exec('systemctl is-enabled neopro-backup.timer', (e1, enabledOut) => {
    exec('systemctl is-active neopro-backup.timer', (e2, activeOut) => {
      exec(
        "systemctl list-timers neopro-backup.timer --no-pager | grep neopro-backup | awk '{print $1, $2, $3, $4}'",
        (e3, nextOut) => {
          let logs = '';
          try {
            const logFile = path.join(BACKUP_DIR, 'backup.log');
            if (fs.existsSync(logFile)) {
              logs = fs.readFileSync(logFile, 'utf8').split('\n').slice(-21).join('\n');
            }
          } catch (_) {
            logs = '';
          }
          res.json({
            enabled: (enabledOut || '').trim() === 'enabled',
            active: (activeOut || '').trim() === 'active',
            nextRun: (nextOut || '').trim() || null,
            logs,
          });
        },
      );
    });
  });
});

// Activer / désactiver le backup automatique
app.post('/api/backups/auto-toggle', (req, res) => {
  const { enable } = req.body;
  if (enable === undefined) {
    return res.status(400).json({ error: 'Paramètre "enable" requis' });
  }
  const cmd = enable
    ? 'sudo systemctl enable --now neopro-backup.timer'
    : 'sudo systemctl disable --now neopro-backup.timer';
  exec(cmd, (error, stdout, stderr) => {
    if (error) {
      return res.status(500).json({ success: false, error: stderr || error.message });
    }
    res.json({
      success: true,
      message: `Backup automatique ${enable ? 'activé' : 'désactivé'}`,
      enabled: !!enable,
    });
  });
});

// Télécharger un backup
app.get('/api/backups/download/:filename', (req, res) => {
  const { filename } = req.params;
  if (!NAME_RE.test(filename)) {
    return res.status(400).json({ error: 'Nom de fichier invalide' });
  }
  const filePath = path.join(BACKUP_DIR, filename);
  if (!fs.existsSync(filePath)) {
    return res.status(404).json({ error: 'Backup non trouvé' });
  }
  res.download(filePath, filename);
});

// Supprimer un backup
app.delete('/api/backups/:filename', (req, res) => {
  const { filename } = req.params;
  if (!NAME_RE.test(filename)) {
    return res.status(400).json({ error: 'Nom de fichier invalide' });
  }
  const filePath = path.join(BACKUP_DIR, filename);
  if (!fs.existsSync(filePath)) {
    return res.status(404).json({ error: 'Backup non trouvé' });
  }
  try {
    fs.unlinkSync(filePath);
    res.json({ success: true, message: 'Backup supprimé' });
  } catch (error) {
    res.status(500).json({ error: 'Erreur lors de la suppression', details: error.message });
  }
});

const server = app.listen(Number(process.env.PORT || 8080), process.env.HOST || '127.0.0.1', () => {
  const a = server.address();
  console.log(`listening on http://${a.address}:${a.port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
