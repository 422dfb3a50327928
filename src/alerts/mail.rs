//! The French texts of the email alerts: one mail on every failed run, one on the first
//! success after a failure. Pure functions giving a subject and a plain-text body;
//! `smtp::build_message` turns them into a message and `smtp::send` sends it.
//!
//! The reader is a club volunteer, not an engineer: what happened, since when, whether
//! local archives are still there, and where to look (the page of the kiosk's backup,
//! when its address is known).

use crate::clock::{self, Tz};

/// The signature of every alert (after the RFC 3676 `-- ` separator).
fn signature(site: &str) -> String {
    format!(
        "-- \nMessage automatique de neopro-backup sur le site {site}, \
         merci de ne pas y répondre.\n"
    )
}

/// "Archives présentes sur la borne : 3".
fn archives_line(archives: usize) -> String {
    format!("Archives présentes sur la borne : {archives}\n")
}

fn page_line(page_url: Option<&str>) -> String {
    match page_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => format!("Page de la sauvegarde : {u}\n"),
        None => String::new(),
    }
}

/// "Erreur : <the French words of the error>" then "Détail technique : <the raw
/// error>" (docs/format.md, Error codes); the raw error alone when its code has no
/// words in this version. `code` is the status's `error_code`, else `code_of(error)`.
pub fn error_lines(error: &str, code: Option<&str>) -> String {
    let error = error.trim();
    let raw = if error.is_empty() {
        "(aucun détail)"
    } else {
        error
    };
    let words = if error.is_empty() && code.is_none() {
        None
    } else {
        crate::error_words::words_for(code, error)
    };
    match words {
        Some(w) => format!("Erreur : {w}\nDétail technique : {raw}\n"),
        None => format!("Erreur : {raw}\n"),
    }
}

/// The mail of a failed run: subject and body. `code`: the status's `error_code`.
pub fn failure_mail(
    site: &str,
    error: &str,
    code: Option<&str>,
    last_success: Option<&str>,
    archives: usize,
    page_url: Option<&str>,
) -> (String, String) {
    let subject = format!("Échec de la sauvegarde Neopro – {site}");
    let last = last_success
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("aucune");
    let mut body = format!(
        "Bonjour,\n\nLa sauvegarde de la borne Neopro du site {site} a échoué.\n\n\
         {}\n\
         Dernière sauvegarde réussie : {last}\n",
        error_lines(error, code)
    );
    body.push_str(&archives_line(archives));
    body.push_str(&page_line(page_url));
    if archives == 0 {
        body.push_str(
            "\nAttention : aucune archive n'est présente sur la borne. Tant qu'une \
             sauvegarde n'aura pas réussi, sa configuration ne pourra pas être restaurée.\n",
        );
    }
    body.push_str(
        "\nUn message sera envoyé après chaque nouvel échec, et un dernier quand la \
         sauvegarde fonctionnera de nouveau.\n\n",
    );
    body.push_str(&signature(site));
    (subject, body)
}

/// The mail of the first successful run after a failure: subject and body.
/// `failed_since` is when the first failure of the series happened, when known.
pub fn recovery_mail(
    site: &str,
    success_at: &str,
    failed_since: Option<&str>,
    archives: usize,
    page_url: Option<&str>,
) -> (String, String) {
    let subject = format!("Sauvegarde Neopro rétablie – {site}");
    let mut body = format!(
        "Bonjour,\n\nLa sauvegarde de la borne Neopro du site {site} fonctionne de \
         nouveau.\n\nDernière sauvegarde réussie : {}\n",
        success_at.trim()
    );
    if let Some(since) = failed_since.map(str::trim).filter(|s| !s.is_empty()) {
        body.push_str(&format!("En échec depuis : {since}\n"));
    }
    body.push_str(&archives_line(archives));
    body.push_str(&page_line(page_url));
    body.push_str("\nAucune action n'est nécessaire.\n\n");
    body.push_str(&signature(site));
    (subject, body)
}

/// The mail of an offsite event that is alerted once (docs/format.md, Offsite: a site's
/// history): `offsite_held` (every offsite write held back) or `offsite_other_install`
/// (another install sends under the same SITE_ID); `detail` is the English sentence of
/// the status. `None` for another event.
pub fn offsite_mail(
    event: &str,
    site: &str,
    detail: &str,
    page_url: Option<&str>,
) -> Option<(String, String)> {
    let (subject, what) = match event {
        "offsite_held" => (
            format!("Copies hors site suspendues – {site}"),
            format!(
                "La borne Neopro du site {site} n'envoie plus ses sauvegardes dans le bucket : \
                 celui-ci contient déjà des sauvegardes de ce site que cette borne n'a pas \
                 envoyées (une borne réinstallée ou remplacée ?). Pour ne pas les remplacer \
                 par celles d'une borne vierge, tout envoi est suspendu ; les sauvegardes \
                 locales continuent.\n\n\
                 Pour reprendre : récupérez la configuration du site depuis le bucket \
                 (neopro-backup recover), ou, si cette borne est bien le nouveau départ du \
                 site, déclarez-le (neopro-backup recover --new-start). Les sauvegardes déjà \
                 présentes dans le bucket ne sont jamais supprimées par ces commandes.\n"
            ),
        ),
        "offsite_other_install" => (
            format!("Deux bornes envoient leurs sauvegardes sous le nom {site}"),
            format!(
                "Une autre installation envoie elle aussi ses sauvegardes sous le nom de site \
                 {site} (une carte SD clonée, ou un nom d'hôte par défaut ?). Les sauvegardes \
                 des deux bornes se mélangent dans le bucket : la plus récente peut être \
                 celle de l'autre borne.\n\n\
                 Donnez à chaque borne son propre SITE_ID (fichier backup.conf).\n"
            ),
        ),
        "gdrive_auth" => (
            format!("Google Drive déconnecté – {site}"),
            "La borne Neopro n'a plus accès au Google Drive du club : l'autorisation a été \
             retirée ou a expiré (un écran de consentement laissé en mode « Test » l'annule au \
             bout de 7 jours). Les sauvegardes locales continuent et les copies attendent sur \
             la borne.\n\n\
             Pour reprendre : page de la borne, « Connecter Google Drive », ou en SSH \
             « neopro-backup gdrive login ».\n"
                .to_string(),
        ),
        "gdrive_held" => (
            format!("Copies vers Google Drive suspendues – {site}"),
            "La borne Neopro n'envoie pas ses sauvegardes dans le Google Drive du club : il \
             contient déjà des sauvegardes de ce site que cette borne n'a pas envoyées (une \
             borne réinstallée ?). Pour ne pas les remplacer par celles d'une borne vierge, \
             l'envoi est suspendu ; les sauvegardes locales continuent.\n\n\
             Pour reprendre : récupérez la configuration depuis le Drive (neopro-backup \
             recover --from gdrive), ou déclarez un nouveau départ (neopro-backup recover \
             --new-start). Rien n'est supprimé du Drive par ces commandes.\n"
                .to_string(),
        ),
        "gdrive_full" => (
            format!("Google Drive plein – {site}"),
            "Le Google Drive du club est plein : la borne Neopro ne peut plus y envoyer ses \
             sauvegardes. Les sauvegardes locales continuent et les copies attendent sur la \
             borne.\n\n\
             Libérez de la place dans le Drive (ou réduisez GDRIVE_RETENTION_DAYS) ; l'envoi \
             reprend tout seul.\n"
                .to_string(),
        ),
        _ => return None,
    };
    let mut body = format!("Bonjour,\n\n{what}\nDétail technique : {}\n", detail.trim());
    body.push_str(&page_line(page_url));
    body.push('\n');
    body.push_str(&signature(site));
    Some((subject, body))
}

/// `mercredi 18 décembre 2024 à 03:00`: a time as the mails show it, in local time.
pub fn date_fr(unix: i64, tz: &Tz) -> String {
    const DAYS: [&str; 7] = [
        "dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi",
    ];
    const MONTHS: [&str; 12] = [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ];
    let c = clock::civil(tz.to_naive(unix));
    let day = if c.day == 1 {
        "1er".to_string()
    } else {
        c.day.to_string()
    };
    format!(
        "{} {day} {} {} à {:02}:{:02}",
        DAYS[c.weekday as usize % 7],
        MONTHS[(c.month as usize).saturating_sub(1) % 12],
        c.year,
        c.hour,
        c.minute
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_mail_in_french() {
        let (subject, body) = failure_mail(
            "club-lyon",
            "cannot create BACKUP_DIR /home/pi/neopro-backups: Not a directory (os error 20)\n",
            Some("not_a_directory"),
            Some("mardi 17 décembre 2024 à 03:00"),
            6,
            Some("http://192.168.1.20:8081/"),
        );
        assert_eq!(subject, "Échec de la sauvegarde Neopro – club-lyon");
        assert_eq!(
            body,
            "Bonjour,\n\
             \n\
             La sauvegarde de la borne Neopro du site club-lyon a échoué.\n\
             \n\
             Erreur : Un dossier attendu est en fait un fichier (le dossier des backups ou \
             l'un de ses parents). Vérifiez BACKUP_DIR dans backup.conf.\n\
             Détail technique : cannot create BACKUP_DIR /home/pi/neopro-backups: Not a \
             directory (os error 20)\n\
             \n\
             Dernière sauvegarde réussie : mardi 17 décembre 2024 à 03:00\n\
             Archives présentes sur la borne : 6\n\
             Page de la sauvegarde : http://192.168.1.20:8081/\n\
             \n\
             Un message sera envoyé après chaque nouvel échec, et un dernier quand la \
             sauvegarde fonctionnera de nouveau.\n\
             \n\
             -- \n\
             Message automatique de neopro-backup sur le site club-lyon, merci de ne pas \
             y répondre.\n"
        );
    }

    #[test]
    fn failure_mail_without_history_warns() {
        let (_, body) = failure_mail("club-nice", "  ", None, None, 0, None);
        assert!(body.contains("Erreur : (aucun détail)\n\n"), "{body}");
        assert!(!body.contains("Détail technique"), "{body}");
        assert!(
            body.contains("Dernière sauvegarde réussie : aucune\n"),
            "{body}"
        );
        assert!(
            body.contains("Archives présentes sur la borne : 0\n"),
            "{body}"
        );
        assert!(
            body.contains("Attention : aucune archive n'est présente sur la borne."),
            "{body}"
        );
        assert!(!body.contains("Page de la sauvegarde"), "{body}");
        let (_, body) = failure_mail("club-nice", "disque plein", None, None, 2, Some(" "));
        assert!(!body.contains("Attention"), "{body}");
        assert!(!body.contains("Page de la sauvegarde"), "{body}");
    }

    #[test]
    fn failure_mail_error_in_words_then_raw() {
        // A status of an older version has no code: the words come from the raw error.
        let (_, body) = failure_mail(
            "c",
            "No space left on device (os error 28)",
            None,
            None,
            1,
            None,
        );
        assert!(
            body.contains(
                "\n\nErreur : La carte SD (ou le disque de sauvegarde) est pleine. Libérez de \
                 la place (anciennes vidéos, anciens backups) ou réduisez RETENTION_DAYS.\n\
                 Détail technique : No space left on device (os error 28)\n\n"
            ),
            "{body}"
        );
        // Nothing recognised: the words of `unknown`, and the raw error.
        let (_, body) = failure_mail("c", "disque plein", None, None, 1, None);
        assert!(
            body.contains(
                "Erreur : Erreur inattendue (voir le détail technique).\n\
                 Détail technique : disque plein\n"
            ),
            "{body}"
        );
        // A code of a newer version (no words here): the raw error alone.
        let (_, body) = failure_mail("c", "disk on fire", Some("disk_on_fire"), None, 1, None);
        assert!(
            body.contains("\n\nErreur : disk on fire\n\nDernière"),
            "{body}"
        );
        assert!(!body.contains("Détail technique"), "{body}");
        // The status's code wins over the raw text's.
        let (_, body) = failure_mail("c", "x (os error 28)", Some("busy"), None, 1, None);
        assert!(body.contains("Erreur : Un autre backup"), "{body}");
    }

    #[test]
    fn recovery_mail_in_french() {
        let (subject, body) = recovery_mail(
            "club-lyon",
            "mercredi 18 décembre 2024 à 03:00",
            Some("lundi 16 décembre 2024 à 03:00"),
            7,
            Some("http://192.168.1.20:8081/"),
        );
        assert_eq!(subject, "Sauvegarde Neopro rétablie – club-lyon");
        assert_eq!(
            body,
            "Bonjour,\n\
             \n\
             La sauvegarde de la borne Neopro du site club-lyon fonctionne de nouveau.\n\
             \n\
             Dernière sauvegarde réussie : mercredi 18 décembre 2024 à 03:00\n\
             En échec depuis : lundi 16 décembre 2024 à 03:00\n\
             Archives présentes sur la borne : 7\n\
             Page de la sauvegarde : http://192.168.1.20:8081/\n\
             \n\
             Aucune action n'est nécessaire.\n\
             \n\
             -- \n\
             Message automatique de neopro-backup sur le site club-lyon, merci de ne pas \
             y répondre.\n"
        );
        let (_, body) = recovery_mail("x", "hier", None, 1, None);
        assert!(!body.contains("En échec depuis"), "{body}");
        assert!(!body.contains("Page de la sauvegarde"), "{body}");
    }

    #[test]
    fn dates_in_french_local_time() {
        let t = clock::parse_iso("2024-12-18T02:00:00Z").unwrap_or_default();
        assert_eq!(date_fr(t, &Tz::utc()), "mercredi 18 décembre 2024 à 02:00");
        let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Paris") else {
            panic!("tzdata is needed for this test (apt-get install tzdata)");
        };
        let Ok(paris) = Tz::from_tzif(&bytes) else {
            panic!("Europe/Paris did not parse");
        };
        assert_eq!(date_fr(t, &paris), "mercredi 18 décembre 2024 à 03:00");
        let t = clock::parse_iso("2025-08-01T01:30:00+02:00").unwrap_or_default();
        assert_eq!(date_fr(t, &paris), "vendredi 1er août 2025 à 01:30");
    }

    #[test]
    fn offsite_mails_in_french() {
        let (subject, body) =
            offsite_mail("offsite_held", "club-lyon", "offsite copies held: …", None)
                .unwrap_or_default();
        assert_eq!(subject, "Copies hors site suspendues – club-lyon");
        assert!(
            body.contains("recover --new-start")
                && body.contains("Détail technique : offsite copies held"),
            "{body}"
        );
        let (subject, body) = offsite_mail(
            "offsite_other_install",
            "club-lyon",
            "another install",
            Some("http://pi.local:8080/"),
        )
        .unwrap_or_default();
        assert!(subject.contains("club-lyon"), "{subject}");
        assert!(
            body.contains("SITE_ID") && body.contains("http://pi.local:8080/"),
            "{body}"
        );
        assert_eq!(offsite_mail("backup_failed", "club", "x", None), None);
    }
}
