#!/bin/bash
# A re-creation of the old Neopro backup script (raspberry/scripts/auto-backup.sh, see
# ../shared/seed-backup-system.md), for `make bench` only: same steps, same commands,
# same process count, so that its cost is the old system's cost.
#
#   1. make a staging folder BACKUP_DIR/<timestamp>/ and `cp` each config file into it
#   2. the video inventory: `find videos -type f ( -name *.mp4 -o ... ) -exec ls -lh {} \;`
#      (one `ls` process per video), then `wc -l` for the count
#   3. system-info.txt from date, hostname, `uptime -p`, `df -h | tail -1` and one
#      `systemctl is-active` per service
#   4. `tar -czf` of the staging folder, `du -h` of the archive, `rm -rf` of the folder
#   5. rotation: count with `ls | wc -l`, `find -mtime +7 -delete`, count again
#   6. last-backup-status.json from a here-document; summary lines; log clean-up
# Every log line goes through `date` and `tee -a backup.log`, as in the original.
#
# Parameters come from the environment, like the new tool's: NEOPRO_DIR, BACKUP_DIR,
# SITE_CONF (the original read /etc/neopro/site.conf), RETENTION_DAYS (default 7).

set -e

NEOPRO_DIR="${NEOPRO_DIR:-/home/pi/neopro}"
BACKUP_ROOT="${BACKUP_DIR:-/home/pi/neopro-backups}"
SITE_CONF="${SITE_CONF:-/etc/neopro/site.conf}"
RETENTION_DAYS="${RETENTION_DAYS:-7}"
STAMP=$(date +%Y%m%d-%H%M%S)
DAY=$(date +%Y-%m-%d)
STAGING="${BACKUP_ROOT}/${STAMP}"
LOG_FILE="${BACKUP_ROOT}/backup.log"

C_INFO='\033[0;34m'
C_OK='\033[0;32m'
C_WARN='\033[1;33m'
C_ERR='\033[0;31m'
C_END='\033[0m'

say() { # colour, mark, message
    echo -e "${1}[$(date '+%Y-%m-%d %H:%M:%S')]${2}${C_END} $3" | tee -a "${LOG_FILE}"
}
log() { say "$C_INFO" "" "$1"; }
log_ok() { say "$C_OK" " ✓" "$1"; }
log_warn() { say "$C_WARN" " ⚠" "$1"; }
log_err() { say "$C_ERR" " ✗" "$1"; }

mkdir -p "${BACKUP_ROOT}"
mkdir -p "${STAGING}"
log "=== Démarrage du backup automatique ==="
log "Répertoire de backup : ${STAGING}"

# 1. Configuration files, one cp each into the staging folder.
copy_one() { # source, name in the backup, label
    if [ -f "$1" ]; then
        cp "$1" "${STAGING}/$2"
        log_ok "$3 sauvegardé"
    else
        log_warn "$3 non trouvé"
    fi
}
log "Sauvegarde de configuration.json..."
copy_one "${NEOPRO_DIR}/webapp/configuration.json" configuration.json configuration.json
log "Sauvegarde de la configuration sync-agent..."
copy_one "${NEOPRO_DIR}/sync-agent/.env" sync-agent.env "sync-agent .env"
copy_one "${SITE_CONF}" site.conf site.conf

# 2. Video inventory: one `ls -lh` process per video.
log "Création de l'inventaire des vidéos..."
INVENTORY="${STAGING}/videos-inventory.txt"
if [ -d "${NEOPRO_DIR}/videos" ]; then
    find "${NEOPRO_DIR}/videos" -type f \( -name "*.mp4" -o -name "*.mkv" -o -name "*.mov" -o -name "*.avi" \) \
        -exec ls -lh {} \; >"${INVENTORY}" 2>/dev/null || true
    COUNT=$(wc -l <"${INVENTORY}" 2>/dev/null || echo 0)
    log_ok "Inventaire créé : ${COUNT} vidéo(s)"
else
    log_warn "Répertoire videos non trouvé"
    echo "Aucune vidéo" >"${INVENTORY}"
fi

# 3. System information.
log "Collecte des informations système..."
cat >"${STAGING}/system-info.txt" <<EOF
Backup créé le : ${DAY} à $(date +%H:%M:%S)
Hostname : $(hostname)
Uptime : $(uptime -p)
Espace disque :
$(df -h "${NEOPRO_DIR}" | tail -1)

Services :
$(systemctl is-active neopro-app 2>/dev/null || echo "neopro-app: unknown")
$(systemctl is-active neopro-sync-agent 2>/dev/null || echo "neopro-sync-agent: unknown")
$(systemctl is-active nginx 2>/dev/null || echo "nginx: unknown")
EOF
log_ok "Informations système sauvegardées"

# 4. The archive, from the staging folder.
log "Compression du backup..."
ARCHIVE="backup-${STAMP}.tar.gz"
cd "${BACKUP_ROOT}"
tar -czf "${ARCHIVE}" "$(basename "${STAGING}")" 2>/dev/null
if [ -f "${BACKUP_ROOT}/${ARCHIVE}" ]; then
    SIZE=$(du -h "${BACKUP_ROOT}/${ARCHIVE}" | cut -f1)
    log_ok "Archive créée : ${ARCHIVE} (${SIZE})"
    rm -rf "${STAGING}"
else
    log_err "Échec de la création de l'archive"
    exit 1
fi

# 5. Rotation by file age.
log "Rotation des backups (conservation : ${RETENTION_DAYS} jours)..."
BEFORE=$(ls -1 "${BACKUP_ROOT}"/backup-*.tar.gz 2>/dev/null | wc -l)
find "${BACKUP_ROOT}" -name "backup-*.tar.gz" -type f -mtime +"${RETENTION_DAYS}" -delete 2>/dev/null || true
AFTER=$(ls -1 "${BACKUP_ROOT}"/backup-*.tar.gz 2>/dev/null | wc -l)
if [ $((BEFORE - AFTER)) -gt 0 ]; then
    log_ok "Rotation : $((BEFORE - AFTER)) ancien(s) backup(s) supprimé(s)"
else
    log "Aucun backup à supprimer"
fi
log_ok "Backups actifs : ${AFTER}"

# 6. Status for monitoring, summary, log clean-up.
cat >"${BACKUP_ROOT}/last-backup-status.json" <<EOF
{
  "timestamp": "$(date -Iseconds)",
  "date": "${DAY}",
  "success": true,
  "archive": "${ARCHIVE}",
  "size": "${SIZE}",
  "backups_count": ${AFTER},
  "retention_days": ${RETENTION_DAYS}
}
EOF
log "=== Backup terminé avec succès ==="
log "Archive : ${BACKUP_ROOT}/${ARCHIVE}"
log "Taille : ${SIZE}"
log "Backups conservés : ${AFTER}"
find "${BACKUP_ROOT}" -name "backup.log.*" -type f -mtime +30 -delete 2>/dev/null || true
if [ -f "${LOG_FILE}" ] && [ "$(stat -c%s "${LOG_FILE}" 2>/dev/null || echo 0)" -gt 10485760 ]; then
    mv "${LOG_FILE}" "${LOG_FILE}.$(date +%Y%m%d-%H%M%S)"
fi
exit 0
