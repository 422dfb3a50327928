//! Unit tests of the pure parts: URLs, addresses, the message builder, dot-stuffing.

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use super::message::*;
use super::url::*;
use super::*;

// ----- pure parts -----

#[test]
#[cfg(feature = "tls")]
fn smtp_urls_parse() {
    let ok = |s: &str| SmtpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let u = ok("smtps://alerte%40club.fr:pa%3Ass%2Fw%C3%B6rd%401@Mail.Example.org");
    assert_eq!(
        (u.security, u.host.as_str(), u.port, u.user.as_deref()),
        (
            Security::Implicit,
            "mail.example.org",
            465,
            Some("alerte@club.fr")
        )
    );
    assert_eq!(u.password, "pa:ss/wörd@1");
    let u = ok("smtp://u:p@mail.example.org:2525/");
    assert_eq!((u.security, u.port), (Security::StartTls, 2525));
    let u = ok("smtp://mail.example.org");
    assert_eq!(
        (u.security, u.port, u.user),
        (Security::StartTls, 587, None)
    );
    for loopback in [
        "smtp://127.0.0.1:25",
        "smtp://127.1.2.3",
        "smtp://localhost:2525",
        "smtp://u:p@[::1]:25",
        "smtp://[::ffff:127.0.0.1]:25",
    ] {
        assert_eq!(ok(loopback).security, Security::Clear, "{loopback}");
    }
    let u = ok("smtps://u:p@[2001:db8::1]:4650");
    assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 4650));
    assert_eq!(u.hostport(), "[2001:db8::1]:4650");
    // Not loopback: STARTTLS, even for a private address or a name like localhost.
    for other in [
        "smtp://192.168.1.2",
        "smtp://localhost.example.org",
        "smtp://128.0.0.1",
    ] {
        assert_eq!(ok(other).security, Security::StartTls, "{other}");
    }
}

#[test]
fn bad_smtp_urls_say_what_is_expected_without_the_password() {
    for bad in [
        "http://u:secretpw@host",
        "smtp://",
        "smtps://u:secretpw@",
        "smtp://u:secretpw@host:0",
        "smtp://u:secretpw@host:99999",
        "smtp://u:secretpw@host:25x",
        "smtp://u@host",
        "smtp://:secretpw@host",
        "smtp://u:@host",
        "smtp://u:secretpw%zz@host",
        "smtp://u:secretpw%FF@host",
        "smtp://u:secretpw@host/path",
        "smtp://u:secretpw@host?x=1",
        "smtp://u:secretpw@host#f",
        "smtp://u:secretpw@ho st",
        "smtps://u:secretpw@[::1",
        "smtps://u:secretpw@[zz]:25",
        "smtps://u:secretpw@[::1]25",
        "mail.example.org",
    ] {
        match SmtpUrl::parse(bad) {
            Ok(u) => panic!("{bad} parsed as {u:?}"),
            Err(e) => {
                assert!(e.contains("smtps://"), "{bad}: {e}");
                assert!(!e.contains("secretpw"), "{bad}: {e}");
            }
        }
    }
}

#[test]
#[cfg(feature = "tls")]
fn smtp_url_debug_and_display_hide_the_password() {
    let u = SmtpUrl::parse("smtps://alerte%40club.fr:Tr%C3%A8sSecret@mail.example.org")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.to_string(), "smtps://alerte@club.fr@mail.example.org:465");
    let debug = format!("{u:?} {u:#?}");
    assert!(!debug.contains("TrèsSecret"), "{debug}");
    assert!(debug.contains("(hidden)"), "{debug}");
    let u = SmtpUrl::parse("smtp://127.0.0.1:25").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.to_string(), "smtp://127.0.0.1:25");
}

#[test]
#[cfg(not(feature = "tls"))]
fn smtp_without_tls_only_loopback() {
    for url in [
        "smtps://u:secretpw@mail.example.org",
        "smtp://u:secretpw@mail.example.org",
    ] {
        let e = SmtpUrl::parse(url).err().unwrap_or_default();
        assert!(e.contains("without the `tls` feature"), "{url}: {e}");
        assert!(!e.contains("secretpw"), "{e}");
    }
    let u = SmtpUrl::parse("smtp://u:p@127.0.0.1:25").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.security, Security::Clear);
}

#[test]
fn smtp_addresses() {
    for good in [
        "a@b",
        "alerte+neopro@club-lyon.fr",
        "x.y_z@mail.example.org",
    ] {
        assert_eq!(check_address(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "a",
        "@b",
        "a@",
        "a@b@c",
        "a b@c",
        "<a@b>",
        "a@b\r\nBcc: x@y",
        "é@b.fr",
        "a@.b",
        "a@b.",
        "a,b@c",
        "x.y@[127.0.0.1]",
    ] {
        assert!(check_address(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_address_list(" a@b.fr, c@d.fr ,,"),
        Ok(vec!["a@b.fr".to_string(), "c@d.fr".to_string()])
    );
    assert!(parse_address_list(" , ").is_err());
    assert!(parse_address_list("a@b.fr, nope").is_err());
}

#[test]
fn smtp_ehlo_capabilities() {
    let lines: Vec<String> = [
        "smtp.example.org at your service",
        "SIZE 35882577",
        "8BITMIME",
        "AUTH=LOGIN",
        "auth plain login xoauth2",
        "STARTTLS",
        "SMTPUTF8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        Capabilities::parse(&lines),
        Capabilities {
            starttls: true,
            eight_bit_mime: true,
            auth: vec!["LOGIN".into(), "PLAIN".into(), "XOAUTH2".into()],
        }
    );
    // The first line is the server's name, whatever it says.
    let only_name = vec!["STARTTLS".to_string()];
    assert_eq!(Capabilities::parse(&only_name), Capabilities::default());
}

#[test]
fn smtp_data_is_dot_stuffed_with_crlf() {
    assert_eq!(
        data_payload(b"Subject: x\r\n\r\n.hello\n.\nend\r\n..two\r\n"),
        b"Subject: x\r\n\r\n..hello\r\n..\r\nend\r\n...two\r\n.\r\n"
    );
    assert_eq!(
        data_payload(b"no final newline"),
        b"no final newline\r\n.\r\n"
    );
    assert_eq!(data_payload(b""), b".\r\n");
}

#[test]
fn smtp_base64() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("\0u\0p", "AHUAcA=="),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
    }
}

/// Test-only decoders, to read back what the encoders wrote.
fn unbase64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = T
            .iter()
            .position(|&t| t == c)
            .unwrap_or_else(|| panic!("{c}"));
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn decode_words(header: &str) -> String {
    let mut out = Vec::new();
    for word in header.split("\r\n ") {
        let b64 = word
            .strip_prefix("=?UTF-8?B?")
            .and_then(|w| w.strip_suffix("?="))
            .unwrap_or_else(|| panic!("not an encoded word: {word:?}"));
        out.extend(unbase64(b64));
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

fn unqp(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.replace("=\r\n", "").replace("\r\n", "\n").into_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{e}")));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn smtp_subject_encoded_words() {
    assert_eq!(encode_header_text("Backup OK"), "Backup OK");
    assert_eq!(encode_header_text("  a\r\nBcc: x "), "a  Bcc: x");
    // ASCII that looks like an encoded word is encoded, so it reads back as typed.
    let w = encode_header_text("=?x?=");
    assert_eq!(decode_words(&w), "=?x?=");
    for subject in [
        "Échec de la sauvegarde Neopro – club-lyon",
        "é".repeat(100).as_str(),
        "😀 sauvegarde échouée 😀 à Saint-Étienne, 3ᵉ fois d'affilée ✓✓✓ – fin",
        "x".repeat(100).as_str(),
    ] {
        let enc = encode_header_text(subject);
        assert_eq!(decode_words(&enc), subject);
        for (i, line) in format!("Subject: {enc}").split("\r\n").enumerate() {
            assert!(line.len() <= 76, "line {i} of {enc:?} is {}", line.len());
            assert!(line.is_ascii());
        }
    }
}

#[test]
fn smtp_quoted_printable() {
    assert_eq!(quoted_printable("Échec"), "=C3=89chec\r\n");
    assert_eq!(quoted_printable("a=b\n.hello\n"), "a=3Db\r\n.hello\r\n");
    assert_eq!(quoted_printable("fin \nx\t"), "fin=20\r\nx=09\r\n");
    assert_eq!(quoted_printable("-- \n"), "--=20\r\n");
    let long = format!("{}é{}", "x".repeat(74), "y ".repeat(300));
    let text = format!("début\r\n{long}\n\nfin\n");
    let qp = quoted_printable(&text);
    for line in qp.split("\r\n") {
        assert!(line.len() <= 76, "{line:?}");
        assert!(line.is_ascii(), "{line:?}");
        assert!(!line.ends_with(' ') && !line.ends_with('\t'), "{line:?}");
    }
    assert_eq!(unqp(&qp), text.replace("\r\n", "\n"));
}

#[test]
fn smtp_dates() {
    assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc5322_date(1_734_487_200),
        "Wed, 18 Dec 2024 02:00:00 +0000"
    );
    assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
}

#[test]
fn smtp_message_ids_are_unique_and_safe() {
    let a = message_id(1_734_487_200, "pi-club\r\nBcc: x");
    let b = message_id(1_734_487_200, "pi-club\r\nBcc: x");
    assert_ne!(a, b);
    assert!(
        a.starts_with("<1734487200.") && a.ends_with("@pi-clubBccx>"),
        "{a}"
    );
    assert!(message_id(0, "").ends_with("@localhost>"));
}

#[test]
fn smtp_message_layout() {
    let to = vec!["a@club.fr".to_string(), "b@club.fr".to_string()];
    let m = compose(
        "neopro@club.fr\r\nBcc: evil@x",
        &to,
        "Échec – site",
        "Bonjour,\n.hello\nfin\n",
        1_734_487_200,
        "<1.2@pi>",
    );
    let m = String::from_utf8(m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        m,
        "Date: Wed, 18 Dec 2024 02:00:00 +0000\r\n\
         From: neopro@club.fr  Bcc: evil@x\r\n\
         To: a@club.fr, b@club.fr\r\n\
         Subject: =?UTF-8?B?w4ljaGVjIOKAkyBzaXRl?=\r\n\
         Message-ID: <1.2@pi>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         Auto-Submitted: auto-generated\r\n\
         \r\n\
         Bonjour,\r\n\
         .hello\r\n\
         fin\r\n"
    );
    // Many recipients: the To header is folded, no line over 76.
    let many: Vec<String> = (0..20).map(|i| format!("user{i}@club-{i}.fr")).collect();
    let m = build_message("n@c.fr", &many, "s", "b", 0, "pi");
    let m = String::from_utf8(m).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.split("\r\n").all(|l| l.len() <= 76), "{m}");
    assert!(!m.replace("\r\n", "").contains('\n'), "bare LF in {m:?}");
    for a in &many {
        assert!(m.contains(a.as_str()), "{a}");
    }
}

#[test]
fn smtp_scrub_hides_every_form_of_the_password() {
    let u = SmtpUrl::parse("smtp://bob:hunter22@127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
    let plain = base64(b"\0bob\0hunter22");
    let msg = format!(
        "500 unknown AUTH PLAIN {plain} / hunter22 / {}",
        base64(b"hunter22")
    );
    let s = scrub(msg, &u);
    assert!(!s.contains("hunter22") && !s.contains(&plain), "{s}");
    assert!(!s.contains(&base64(b"hunter22")), "{s}");
}

// ----- a server that injects commands after STARTTLS (CVE-2011-0411) -----

/// A scripted server on 127.0.0.1:0 that answers STARTTLS with its 220 *and* a reply
/// meant for after the handshake in the same write, then records what the client sends
/// next.
#[test]
#[cfg(feature = "tls")]
fn a_reply_pipelined_after_starttls_is_refused_and_nothing_more_is_sent() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let server = std::thread::spawn(move || -> Vec<u8> {
        let Ok((sock, _)) = l.accept() else {
            return b"no connection".to_vec();
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut w = sock.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut r = BufReader::new(sock);
        let _ = w.write_all(b"220 mx ESMTP\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return b"closed before STARTTLS".to_vec();
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            if cmd.starts_with("EHLO") {
                let _ = w.write_all(b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
            } else if cmd == "STARTTLS" {
                // The injection: a reply the client would take as the answer to its
                // first command over TLS.
                let _ = w.write_all(b"220 go ahead\r\n250 injected\r\n");
                break;
            } else {
                let _ = w.write_all(b"500 ?\r\n");
            }
        }
        // What the client sends after that (a TLS ClientHello would be its first byte
        // 0x16; a clean refusal sends nothing and closes).
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        rest
    });
    let mut u =
        SmtpUrl::parse(&format!("smtp://u:p@127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
    u.security = Security::StartTls;
    let e = send(
        &u,
        "a@club.fr",
        &["b@club.fr".to_string()],
        b"Subject: x\r\n\r\nx\r\n",
        Duration::from_secs(10),
    )
    .err()
    .unwrap_or_else(|| panic!("sent after an injection"));
    assert!(e.contains("ahead of the TLS handshake"), "{e}");
    let after = server.join().unwrap_or_else(|_| panic!("server thread"));
    assert!(
        after.is_empty(),
        "the client sent {} bytes after STARTTLS",
        after.len()
    );
}
