//! Unit tests of the configuration: the file parser, every key's checks, secrets never
//! shown.

use super::*;

#[test]
fn shown_urls_never_show_a_password_even_with_slashes() {
    for (v, host) in [
        ("smtps://alerts:motdepasse/2024@host:99999", "host:99999"),
        ("https://u:pa?ss#w/rd@hooks.example/T0K3N", "hooks.example"),
        ("https://hooks.example/T0K3N/x", "hooks.example"),
    ] {
        let shown = shown_url(v);
        for secret in ["motdepasse", "pa?ss", "T0K3N"] {
            assert!(!shown.contains(secret), "{v} -> {shown}");
        }
        assert!(shown.contains(host), "{v} -> {shown}");
    }
}

fn cfg(env: &[(&str, &str)], file: &str) -> Result<Config, ConfigError> {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(&Lookup::from_parts(env, file, Path::new("test.conf"))?)
}

#[test]
fn defaults() {
    let c = cfg(&[], "")
        .map_err(|e| e.0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.retention_days, 7);
    assert_eq!(c.backup_time, (3, 0));
    assert_eq!(c.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.services, ["neopro-app", "neopro-sync-agent", "nginx"]);
    assert!(!c.include_videos && c.api_token.is_none());
    assert!(c.frame_ancestors.is_empty());
    let v =
        "https://admin.neopro.example http://192.168.1.10:3000 http://[fe80::1]:8080 https://[::1]";
    let c = cfg(&[("FRAME_ANCESTORS", v)], "").map_err(|e| e.0);
    assert_eq!(c.unwrap_or_else(|e| panic!("{e}")).frame_ancestors.len(), 4);
}

#[test]
fn env_wins_over_file_and_quotes_and_comments_work() {
    let file =
        "# comment\nRETENTION_DAYS=\"14\"\nexport BACKUP_TIME='04:30'\n\nINCLUDE_VIDEOS=yes\n";
    let c = cfg(&[("RETENTION_DAYS", "3")], file).map_err(|e| e.0);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.retention_days, 3);
    assert_eq!(c.backup_time, (4, 30));
    assert!(c.include_videos);
}

#[test]
fn bad_values_name_key_value_and_expectation() {
    for (k, v) in [
        ("RETENTION_DAYS", "seven"),
        ("RETENTION_DAYS", "0"),
        ("RETENTION_DAYS", "-1"),
        ("BACKUP_TIME", "25:00"),
        ("BACKUP_TIME", "3h"),
        ("LISTEN", "localhost"),
        ("INCLUDE_VIDEOS", "maybe"),
        ("NEOPRO_DIR", "relative/dir"),
        ("SERVICES", "nginx;rm -rf /"),
        ("FRAME_ANCESTORS", "*"),
        ("FRAME_ANCESTORS", "'self'"),
        ("FRAME_ANCESTORS", "https://panel.example/admin"),
        ("FRAME_ANCESTORS", "https://*.example.org"),
        ("FRAME_ANCESTORS", "panel.example:8080"),
        ("FRAME_ANCESTORS", "https://ok.example http://bad:99999"),
        ("FRAME_ANCESTORS", "https://a;script-src"),
        ("FRAME_ANCESTORS", "http://host:+80"),
    ] {
        let Err(e) = cfg(&[(k, v)], "") else {
            panic!("{k}={v} was accepted");
        };
        assert!(
            e.0.contains(k) && e.0.contains(v) && e.0.contains("expected"),
            "{e}"
        );
    }
}

#[test]
fn token_is_never_echoed_and_required_off_loopback() {
    let Err(e) = cfg(&[("API_TOKEN", "short secret")], "") else {
        panic!("weak token accepted");
    };
    assert!(!e.0.contains("short secret"));
    let c = cfg(&[("LISTEN", "0.0.0.0:8081")], "").map_err(|e| e.0);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert!(c.check_listen_security().is_err());
}

const S3_OK: &[(&str, &str)] = &[
    ("S3_ENDPOINT", "http://127.0.0.1:8333"),
    ("S3_BUCKET", "club-backups"),
    ("S3_ACCESS_KEY", "AKIDEXAMPLE"),
    ("S3_SECRET_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
];

fn with_s3(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = S3_OK.to_vec();
    for (k, val) in extra {
        v.retain(|(k2, _)| k2 != k);
        v.push((k, val));
    }
    v
}

#[test]
fn offsite_keys_and_defaults() {
    let c = cfg(&[], "")
        .map_err(|e| e.0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.offsite.is_none() && c.alerts.webhook.is_none());
    assert!(valid_site_id(&c.site_id), "{}", c.site_id);
    let c = cfg(&with_s3(&[("SITE_ID", "club-01")]), "").map_err(|e| e.0);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    let o = c.offsite.unwrap_or_else(|| panic!("offsite off"));
    assert_eq!(
        (
            o.region.as_str(),
            o.prefix.as_str(),
            o.retention_days,
            c.site_id.as_str()
        ),
        ("us-east-1", "neopro", 30, "club-01")
    );
    assert!(!format!("{o:?}").contains("EXAMPLEKEY"));
}

#[test]
fn bad_offsite_values_name_key_value_and_expectation() {
    for (k, v) in [
        ("S3_ENDPOINT", "ftp://host"),
        ("S3_ENDPOINT", "http://host:0"),
        ("S3_BUCKET", "Bad_Bucket"),
        ("S3_REGION", "EU WEST"),
        ("S3_PREFIX", "/neopro/"),
        ("S3_PREFIX", "a/../b"),
        ("SITE_ID", "../etc"),
        ("S3_RETENTION_DAYS", "0"),
        ("S3_RETENTION_DAYS", "thirty"),
        ("ENCRYPT_TO", "age1notakey"),
        ("VIDEOS_OFFSITE", "sometimes"),
        ("ALERT_WEBHOOK", "mailto:x"),
        ("PING_URL", "hc-ping.com"),
    ] {
        let Err(e) = cfg(&with_s3(&[(k, v)]), "") else {
            panic!("{k}={v} was accepted");
        };
        assert!(
            e.0.contains(k) && e.0.contains(v) && e.0.contains("expected"),
            "{e}"
        );
    }
    let Err(e) = cfg(&with_s3(&[("S3_SECRET_KEY", "has space")]), "") else {
        panic!("bad secret accepted");
    };
    assert!(
        e.0.contains("S3_SECRET_KEY") && !e.0.contains("has space"),
        "{e}"
    );
    let Err(e) = cfg(&[("S3_ENDPOINT", "http://127.0.0.1:8333")], "") else {
        panic!("endpoint without bucket accepted");
    };
    assert!(e.0.contains("S3_BUCKET"), "{e}");
    let Err(e) = cfg(&[("VIDEOS_OFFSITE", "true")], "") else {
        panic!("VIDEOS_OFFSITE without S3_ENDPOINT accepted");
    };
    assert!(
        e.0.contains("VIDEOS_OFFSITE") && e.0.contains("S3_ENDPOINT"),
        "{e}"
    );
    // A reserved SITE_ID is no configuration error (local backups go on): the offsite
    // queue refuses it (offsite/mem_tests.rs).
    for env in [
        with_s3(&[("VIDEOS_OFFSITE", "1"), ("SITE_ID", "videos")]),
        with_s3(&[("SITE_ID", "videos")]),
    ] {
        let c = ok(&env, "");
        assert_eq!(c.site_id, "videos");
        assert!(reserved_site_id(&c.site_id).is_some_and(|why| why.contains("reserved")));
    }
    assert_eq!(reserved_site_id("club-videos"), None);
    // The fleet's index (docs/format.md, Fleet, The index) is reserved too.
    assert!(reserved_site_id("fleet-index").is_some_and(|why| why.contains("reserved")));
    assert_eq!(reserved_site_id("fleet-index-2"), None);
    assert_eq!(reserved_site_id("Videos"), None);
    let on = cfg(&with_s3(&[("VIDEOS_OFFSITE", "yes")]), "").map_err(|e| e.0);
    assert!(on.is_ok_and(|c| c.videos_offsite() && c.offsite.is_some_and(|o| o.videos)));
    // Off unless asked, with or without a bucket.
    assert!(!ok(&with_s3(&[]), "").videos_offsite());
    assert!(!ok(&[], "").videos_offsite());
    // A webhook URL's path is a token: never echoed.
    let Err(e) = cfg(&[("ALERT_WEBHOOK", "https://hooks.example/T0K3N/x y")], "") else {
        panic!("bad webhook accepted");
    };
    assert!(
        e.0.contains("ALERT_WEBHOOK") && !e.0.contains("T0K3N"),
        "{e}"
    );
    let Err(e) = cfg(&with_s3(&[("S3_ENDPOINT", "http://key:pw@host/")]), "") else {
        panic!("user info accepted");
    };
    assert!(!e.0.contains("pw"), "{e}");
}

#[test]
fn malformed_file_lines_are_errors() {
    assert!(cfg(&[], "JUSTAWORD\n").is_err());
    assert!(cfg(&[], "RETENTION_DAYS=\"7\n").is_err());
    let c = cfg(&[], "TYPO_DAYS=3\n").map_err(|e| e.0);
    assert_eq!(
        c.unwrap_or_else(|e| panic!("{e}")).unknown_keys,
        ["TYPO_DAYS"]
    );
}

/// S3_OK with `extra` on top (any lifetime).
fn s3<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = S3_OK.to_vec();
    for (k, val) in extra {
        v.retain(|(k2, _)| k2 != k);
        v.push((k, val));
    }
    v
}

fn err(env: &[(&str, &str)], file: &str) -> String {
    match cfg(env, file) {
        Ok(_) => panic!("{env:?} / {file:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

fn ok(env: &[(&str, &str)], file: &str) -> Config {
    cfg(env, file).unwrap_or_else(|e| panic!("{env:?} / {file:?}: {e}"))
}

#[test]
fn secrets_and_errors_show_what_they_should() {
    let s = Secret::new("s3cr3t".into());
    assert_eq!(s.expose(), "s3cr3t");
    assert_eq!(format!("{s:?}"), "[secret]");
    let e = ConfigError("invalid X=\"y\": expected z".into());
    assert_eq!(e.to_string(), "invalid X=\"y\": expected z");
    assert_eq!(
        bad("KEY", "v a l", "a thing"),
        ConfigError("invalid KEY=\"v a l\": expected a thing".into())
    );
}

#[test]
fn file_syntax() {
    let o = Path::new("/etc/x.conf");
    let parsed = |t: &str| parse_file(t, o).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        parsed("  # c\n\nA=1\n  export B = two words \nC=\"q\"\nD='s'\nE=\"\"\nF=a\"b\nG=x=y\n"),
        [
            kv("A", "1"),
            kv("B", "two words"),
            kv("C", "q"),
            kv("D", "s"),
            kv("E", ""),
            kv("F", "a\"b"),
            kv("G", "x=y"),
        ]
    );
    assert_eq!(parsed(""), []);
    assert_eq!(parsed("#A=1\n   \n"), []);
    for bad_line in [
        "NOEQUALS",
        "=value",
        " =value",
        "BAD-KEY=1",
        "BAD KEY=1",
        "K=\"",
        "K='x",
        "K=\"x'",
    ] {
        let Err(e) = parse_file(&format!("A=1\n{bad_line}\n"), o) else {
            panic!("{bad_line:?} accepted");
        };
        assert!(e.0.starts_with("/etc/x.conf:2: "), "{e}");
    }
    // Known keys are not reported as unknown; unknown ones are, in order.
    let src = Lookup::from_parts(HashMap::new(), "RETENTION_DAYS=3\nZZ=1\nAA=2\n", o)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.unknown_keys, ["ZZ", "AA"]);
    assert_eq!(src.get("RETENTION_DAYS"), Some("3"));
    assert_eq!(src.get("SITE_CONF"), None);
}

#[test]
fn gather_reads_the_file_and_an_explicit_path_must_exist() {
    let dir = std::env::temp_dir().join(format!("neopro-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("backup.conf");
    std::fs::write(&file, "BACKUP_TIME=04:15\nTYPO=1\n").unwrap_or_else(|e| panic!("{e}"));
    let src = Lookup::gather(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.get("BACKUP_TIME"), Some("04:15"));
    assert_eq!(src.unknown_keys, ["TYPO"]);
    let missing = dir.join("missing.conf");
    let Err(e) = Lookup::gather(Some(&missing)) else {
        panic!("a missing --config file was accepted");
    };
    assert!(e.0.contains("cannot read the config file"), "{e}");
    std::fs::write(&file, b"A=\xff\n").unwrap_or_else(|e| panic!("{e}"));
    let Err(e) = Lookup::gather(Some(&file)) else {
        panic!("a non-UTF-8 file was accepted");
    };
    assert!(e.0.contains("not valid UTF-8"), "{e}");
    // The default path may be absent (then: no file values at all).
    if !Path::new(DEFAULT_CONFIG_PATH).exists() {
        let src = Lookup::gather(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(src.file.is_empty() && src.unknown_keys.is_empty());
    } else {
        eprintln!("{DEFAULT_CONFIG_PATH} exists here: its absence is not checked");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paths_must_be_absolute() {
    assert!(err(&[("BACKUP_DIR", "")], "").contains("BACKUP_DIR"));
    assert!(err(&[("SITE_CONF", "etc/site.conf")], "").contains("SITE_CONF"));
    let c = ok(&[("NEOPRO_DIR", "/srv/n")], "");
    assert_eq!(c.neopro_dir, Path::new("/srv/n"));
    assert_eq!(c.backup_dir, Path::new("/home/pi/neopro-backups"));
    assert_eq!(c.site_conf, Path::new("/etc/neopro/site.conf"));
    assert_eq!(
        c.configuration_json(),
        Path::new("/srv/n/webapp/configuration.json")
    );
    assert_eq!(c.sync_agent_env(), Path::new("/srv/n/sync-agent/.env"));
    assert_eq!(c.videos_dir(), Path::new("/srv/n/videos"));
}

#[test]
fn hhmm_and_booleans() {
    for (v, want) in [
        ("03:00", Some((3, 0))),
        ("3:00", Some((3, 0))),
        ("0:00", Some((0, 0))),
        ("23:59", Some((23, 59))),
        ("12:34", Some((12, 34))),
        ("24:00", None),
        ("23:60", None),
        ("003:00", None),
        ("03:0", None),
        ("03:000", None),
        (":00", None),
        ("+3:00", None),
        ("03:5x", None),
        ("0300", None),
        ("", None),
    ] {
        assert_eq!(parse_hhmm(v), want, "{v:?}");
    }
    for (v, want) in [
        ("true", Some(true)),
        ("TRUE", Some(true)),
        ("1", Some(true)),
        ("yes", Some(true)),
        ("On", Some(true)),
        ("false", Some(false)),
        ("0", Some(false)),
        ("No", Some(false)),
        ("off", Some(false)),
        ("", None),
        ("2", None),
        ("vrai", None),
    ] {
        assert_eq!(parse_bool(v), want, "{v:?}");
    }
    assert!(ok(&[("INCLUDE_VIDEOS", "1")], "").include_videos);
    assert!(!ok(&[("INCLUDE_VIDEOS", "off")], "").include_videos);
}

#[test]
fn unit_names_and_service_lists() {
    let long = "a".repeat(256);
    for good in [
        "nginx",
        "neopro-app",
        "a@b.service",
        "x\\x2d:y_z",
        long.as_str(),
    ] {
        assert!(valid_unit_name(good), "{good:?}");
    }
    let too_long = "a".repeat(257);
    for bad_name in ["", "-x", "a/b", "a;b", "a$b", too_long.as_str()] {
        assert!(!valid_unit_name(bad_name), "{bad_name:?}");
    }
    let many = vec!["s"; 32].join(" ");
    assert_eq!(ok(&[("SERVICES", &many)], "").services.len(), 32);
    let too_many = vec!["s"; 33].join(" ");
    assert!(err(&[("SERVICES", &too_many)], "").contains("at most 32"));
    assert!(ok(&[("SERVICES", "")], "").services.is_empty());
}

#[test]
fn urls_in_errors_show_scheme_and_host_only() {
    for (v, shown) in [
        ("http://host", "http://host"),
        ("http://host/", "http://host/…"),
        ("https://hooks.example/T0K3N/x", "https://hooks.example/…"),
        ("http://user:pw@host", "http://host/…"),
        ("http://host?q=1", "http://host/…"),
        ("twelve-chars", "twelve-chars"),
        ("thirteen-char", "(value not shown)"),
        ("a@b", "(value not shown)"),
        ("", ""),
    ] {
        assert_eq!(shown_url(v), shown, "{v:?}");
    }
    // A query is refused where it could not work (PING_URL), kept for a webhook.
    assert!(err(&[("PING_URL", "http://h/p?x=1")], "").contains("without ?query"));
    let c = ok(
        &[("ALERT_WEBHOOK", "http://h/p?x=1"), ("PING_URL", " ")],
        "",
    );
    assert_eq!(c.alerts.webhook.map(|u| u.path), Some("/p?x=1".to_string()));
    assert!(c.alerts.ping.is_none(), "a blank URL is no URL");
    let c = ok(&[("PING_URL", "http://h:8080/ping/x")], "");
    let ping = c.alerts.ping.unwrap_or_else(|| panic!("no ping URL"));
    assert_eq!((ping.host.as_str(), ping.port), ("h", 8080));
}

#[test]
fn day_counts_and_tokens_at_their_limits() {
    for key in ["RETENTION_DAYS", "S3_RETENTION_DAYS"] {
        let days = |v: &str| {
            cfg(&s3(&[(key, v)]), "").map(|c| {
                if key == "RETENTION_DAYS" {
                    c.retention_days
                } else {
                    c.offsite.map_or(0, |o| o.retention_days)
                }
            })
        };
        assert_eq!(days("1"), Ok(1), "{key}");
        assert_eq!(days("3650"), Ok(3650), "{key}");
        for bad_v in ["0", "3651", "+5", " 5", "5d", ""] {
            let Err(e) = days(bad_v) else {
                panic!("{key}={bad_v:?} accepted");
            };
            assert!(e.0.contains(key) && e.0.contains("1 to 3650"), "{e}");
        }
    }
    let t16 = "0123456789abcdef";
    assert_eq!(
        ok(&[("API_TOKEN", t16)], "").api_token.as_deref(),
        Some(t16)
    );
    assert!(ok(&[("API_TOKEN", "")], "").api_token.is_none());
    for bad_t in [
        "0123456789abcde",
        "0123456789abcdef ghij",
        "0123456789abcdef\tx",
    ] {
        let e = err(&[("API_TOKEN", bad_t)], "");
        assert!(e.contains("API_TOKEN") && !e.contains(bad_t), "{e}");
    }
    assert_eq!(
        ok(
            &[
                ("ON_FAILURE_CMD", "logger x"),
                ("RESTART_CMD", "systemctl restart a")
            ],
            ""
        )
        .alerts
        .on_failure_cmd
        .as_deref(),
        Some("logger x")
    );
    let c = ok(&[("ON_FAILURE_CMD", "  "), ("RESTART_CMD", " ")], "");
    assert!(c.alerts.on_failure_cmd.is_none() && c.restart_cmd.is_none());
    assert_eq!(
        ok(&[("RESTART_CMD", "systemctl restart a")], "")
            .restart_cmd
            .as_deref(),
        Some("systemctl restart a")
    );
}

#[test]
fn listen_needs_a_token_off_loopback_only() {
    let t16 = ("API_TOKEN", "0123456789abcdef");
    for (listen, token, allowed) in [
        ("127.0.0.1:8081", None, true),
        ("[::1]:8081", None, true),
        ("127.0.0.2:1", None, true),
        ("0.0.0.0:8081", None, false),
        ("[::]:8081", None, false),
        ("0.0.0.0:8081", Some(t16), true),
        ("192.0.2.1:80", Some(t16), true),
    ] {
        let mut env = vec![("LISTEN", listen)];
        env.extend(token);
        let c = ok(&env, "");
        assert_eq!(
            c.check_listen_security().is_ok(),
            allowed,
            "{listen} token {token:?}"
        );
    }
    assert!(err(&[("LISTEN", "127.0.0.1")], "").contains("LISTEN"));
}

#[test]
fn names_for_the_bucket() {
    let s64 = "a".repeat(64);
    let s65 = "a".repeat(65);
    for (v, good) in [
        ("a", true),
        ("Club.Site_01-b", true),
        (s64.as_str(), true),
        (s65.as_str(), false),
        ("", false),
        (".a", false),
        ("-a", false),
        ("a/b", false),
        ("a b", false),
    ] {
        assert_eq!(valid_site_id(v), good, "site id {v:?}");
    }
    let b63 = "b".repeat(63);
    let b64 = "b".repeat(64);
    for (v, good) in [
        ("abc", true),
        ("a-b.c9", true),
        ("9ab", true),
        (b63.as_str(), true),
        ("ab", false),
        (b64.as_str(), false),
        ("-ab", false),
        ("ab-", false),
        ("ab.", false),
        ("Abc", false),
        ("a_b", false),
    ] {
        assert_eq!(valid_bucket(v), good, "bucket {v:?}");
    }
    let p200 = "p".repeat(200);
    let p201 = "p".repeat(201);
    for (v, good) in [
        ("", true),
        ("neopro", true),
        ("a/b.c/d_e-f", true),
        (p200.as_str(), true),
        (p201.as_str(), false),
        ("a//b", false),
        ("./a", false),
        ("a/..", false),
        ("a/b/", false),
        ("a b", false),
    ] {
        assert_eq!(valid_prefix(v), good, "prefix {v:?}");
    }
    // No SITE_ID: the hostname, when it is already a fit name.
    let host = crate::host::hostname();
    let c = ok(&[("SITE_ID", "")], "");
    if valid_site_id(&host) {
        assert_eq!(c.site_id, host);
    } else {
        assert!(valid_site_id(&c.site_id), "{}", c.site_id);
    }
    assert_eq!(ok(&[("SITE_ID", "club-7")], "").site_id, "club-7");
}

#[test]
fn offsite_regions_keys_and_recipients() {
    let r32 = "r".repeat(32);
    let c = ok(&s3(&[("S3_REGION", "eu-west-3"), ("S3_PREFIX", "")]), "");
    let o = c.offsite.unwrap_or_else(|| panic!("offsite off"));
    assert_eq!((o.region.as_str(), o.prefix.as_str()), ("eu-west-3", ""));
    assert_eq!(o.bucket, "club-backups");
    assert_eq!(o.access_key, "AKIDEXAMPLE");
    assert_eq!(
        o.secret_key.expose(),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    );
    assert_eq!(o.endpoint.port, 8333);
    assert!(o.encrypt_to.is_empty());
    assert!(ok(&s3(&[("S3_REGION", &r32)]), "").offsite.is_some());
    let r33 = "r".repeat(33);
    for region in ["", "EU", "eu_west", r33.as_str()] {
        assert!(err(&s3(&[("S3_REGION", region)]), "").contains("S3_REGION"));
    }
    let k256 = "k".repeat(256);
    let k257 = "k".repeat(257);
    for key in ["S3_ACCESS_KEY", "S3_SECRET_KEY"] {
        assert!(ok(&s3(&[(key, &k256)]), "").offsite.is_some(), "{key}");
        for v in ["has space", k257.as_str()] {
            let e = err(&s3(&[(key, v)]), "");
            assert!(e.contains(key) && !e.contains(v), "{e}");
        }
        let e = err(&s3(&[(key, "")]), "");
        assert!(e.contains(key) && e.contains("missing"), "{e}");
    }
    // Recipients: real age keys, 1 to 16 of them.
    let keys: Vec<String> = (0..17)
        .map(|_| age::x25519::Identity::generate().to_public().to_string())
        .collect();
    let one = keys[0].clone();
    let c = ok(&s3(&[("ENCRYPT_TO", one.as_str())]), "");
    assert_eq!(c.offsite.map(|o| o.encrypt_to), Some(vec![one.clone()]));
    let sixteen = keys[..16].join(" ");
    let c = ok(&s3(&[("ENCRYPT_TO", sixteen.as_str())]), "");
    assert_eq!(c.offsite.map_or(0, |o| o.encrypt_to.len()), 16);
    let seventeen = keys.join(" ");
    assert!(err(&s3(&[("ENCRYPT_TO", seventeen.as_str())]), "").contains("ENCRYPT_TO"));
    let mixed = format!("{one} age1notakey");
    assert!(err(&s3(&[("ENCRYPT_TO", mixed.as_str())]), "").contains("ENCRYPT_TO"));
    // No endpoint: nothing else is required or read.
    let c = ok(&[("S3_BUCKET", "Not_Valid")], "");
    assert!(c.offsite.is_none());
}

#[test]
fn email_keys_are_all_three_or_none() {
    let all = [
        ("SMTP_URL", "smtps://alerts:pw@mail.example:465"),
        ("ALERT_EMAIL_TO", "club@example.org, ops@example.org"),
        ("ALERT_EMAIL_FROM", "pi@example.org"),
    ];
    let e = ok(&all, "")
        .alerts
        .email
        .unwrap_or_else(|| panic!("three email keys gave no email settings"));
    assert_eq!(e.to, ["club@example.org", "ops@example.org"]);
    assert_eq!(e.from, "pi@example.org");
    assert!(ok(&[], "").alerts.email.is_none());
    // A blank SMTP_URL counts as unset: the other two alone are an error naming them.
    for blank in ["", "  "] {
        let e = err(&[("SMTP_URL", blank), all[1]], "");
        assert!(
            e.contains("ALERT_EMAIL_TO is set but SMTP_URL is not"),
            "{e}"
        );
        let e = err(&[("SMTP_URL", blank), all[2]], "");
        assert!(
            e.contains("ALERT_EMAIL_FROM is set but SMTP_URL is not"),
            "{e}"
        );
    }
    // SMTP_URL without the addresses.
    let e = err(&all[..1], "");
    assert!(e.contains("ALERT_EMAIL_TO is not"), "{e}");
    let e = err(&all[..2], "");
    assert!(e.contains("ALERT_EMAIL_FROM is not"), "{e}");
}

#[test]
fn frame_ancestors_holds_at_most_16_origins() {
    let list = |n: usize| {
        (1..=n)
            .map(|i| format!("https://panel{i}.example"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        ok(&[("FRAME_ANCESTORS", &list(16))], "")
            .frame_ancestors
            .len(),
        16
    );
    let e = err(&[("FRAME_ANCESTORS", &list(17))], "");
    assert!(
        e.contains("FRAME_ANCESTORS") && e.contains("at most 16"),
        "{e}"
    );
}

#[test]
fn frame_ancestors_origins_at_their_edges() {
    for good in [
        "http://h",
        "http://h:1",
        "http://[::1]",
        "http://[::1]:65535",
    ] {
        assert!(valid_origin(good), "{good} refused");
    }
    for bad in [
        "http://h:0",
        "http://[::1]x",
        "http://[::1]80",
        "http://h:65536",
    ] {
        assert!(!valid_origin(bad), "{bad} accepted");
    }
}

/// A config file in a folder of its own under the temp dir, with `mode`, in a folder
/// with `dir_mode`; the warnings `Lookup::gather` gives for it.
fn gather_warnings(name: &str, text: &str, mode: u32, dir_mode: u32) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("neopro-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("backup.conf");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    let set = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    set(&file, mode);
    set(&dir, dir_mode);
    let got = Lookup::gather(Some(&file)).map(|l| l.warnings);
    set(&dir, 0o755);
    let _ = std::fs::remove_dir_all(&dir);
    got.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_secret_readable_by_every_user_is_warned_about() {
    let token = "API_TOKEN=0123456789abcdef0123\n";
    let w = gather_warnings("readable", token, 0o644, 0o755);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("holds API_TOKEN")
            && w[0].contains("mode 0644")
            && w[0].contains("chmod 600"),
        "{w:?}"
    );
    assert!(
        !w[0].contains("0123456789abcdef"),
        "the warning shows the token: {w:?}"
    );
    for (what, text, mode, dir_mode) in [
        ("group only", token, 0o640, 0o755),
        ("no secret", "BACKUP_TIME=04:00\n", 0o644, 0o755),
        ("an empty secret", "API_TOKEN=\n", 0o644, 0o755),
        ("a folder others cannot enter", token, 0o644, 0o700),
    ] {
        let w = gather_warnings(&what.replace(' ', "-"), text, mode, dir_mode);
        assert!(w.is_empty(), "{what}: {w:?}");
    }
}

#[test]
fn a_config_file_up_to_1_mib_is_read_and_a_larger_one_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("neopro-config-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("backup.conf");
    // A well-commented file of 1 MiB exactly: read.
    let tail = "BACKUP_TIME=04:00\n";
    let filler = "#".repeat(1024 * 1024 - tail.len() - 1) + "\n";
    std::fs::write(&file, format!("{filler}{tail}")).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
    let src = Lookup::gather(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.get("BACKUP_TIME"), Some("04:00"));
    // One byte more: refused.
    std::fs::write(&file, format!("#{filler}{tail}")).unwrap_or_else(|e| panic!("{e}"));
    let got = Lookup::gather(Some(&file));
    let _ = std::fs::remove_dir_all(&dir);
    let Err(e) = got else {
        panic!("a config file over 1 MiB was read");
    };
    assert!(e.0.contains("backup.conf"), "{e}");
}

#[test]
fn fleet_drill_max_days_defaults_to_8_and_is_checked() {
    assert_eq!(ok(&[], "").fleet_drill_max_days, 8);
    assert_eq!(
        ok(&[], "FLEET_DRILL_MAX_DAYS=31\n").fleet_drill_max_days,
        31
    );
    assert_eq!(
        ok(
            &[("FLEET_DRILL_MAX_DAYS", "1")],
            "FLEET_DRILL_MAX_DAYS=31\n"
        )
        .fleet_drill_max_days,
        1
    );
    for bad in ["0", "-1", "eight", "3651", "8 days", "+8", ""] {
        let e = err(&[("FLEET_DRILL_MAX_DAYS", bad)], "");
        assert!(
            e.contains("FLEET_DRILL_MAX_DAYS") && e.contains("whole number of days"),
            "{bad}: {e}"
        );
    }
    // Known: no "unknown key" warning for it in the file.
    assert!(ok(&[], "FLEET_DRILL_MAX_DAYS=8\n").unknown_keys.is_empty());
}
