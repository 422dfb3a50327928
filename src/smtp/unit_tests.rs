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

// ----- what the client sends and reads, against scripted peers -----

/// The addresses tried: in clear only loopback ones, in the resolver's order.
#[test]
fn clear_smtp_connects_to_loopback_addresses_only() {
    let a = |s: &str| {
        s.parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    };
    let resolved = vec![
        a("192.0.2.1:25"),
        a("127.0.0.1:25"),
        a("[2001:db8::1]:25"),
        a("[::1]:25"),
        a("[::ffff:127.0.0.1]:25"),
        a("[::ffff:192.0.2.1]:25"),
        a("127.8.9.10:25"),
    ];
    assert_eq!(
        connect_targets(resolved.clone(), Security::Clear),
        Ok(vec![
            a("127.0.0.1:25"),
            a("[::1]:25"),
            a("[::ffff:127.0.0.1]:25"),
            a("127.8.9.10:25"),
        ])
    );
    for tls in [Security::StartTls, Security::Implicit] {
        assert_eq!(connect_targets(resolved.clone(), tls), Ok(resolved.clone()));
    }
    let lan = vec![
        a("192.168.1.2:25"),
        a("[::ffff:10.0.0.1]:25"),
        a("[fe80::1]:25"),
    ];
    assert_eq!(
        connect_targets(lan.clone(), Security::Clear),
        Err("no loopback address for it")
    );
    assert_eq!(connect_targets(lan.clone(), Security::StartTls), Ok(lan));
    assert_eq!(
        connect_targets(Vec::new(), Security::Clear),
        Err("no loopback address for it")
    );
    assert_eq!(
        connect_targets(Vec::new(), Security::Implicit),
        Err("no address for it")
    );
}

/// A clear URL whose host is not loopback (a URL can only get there by a bug, or a
/// name that resolves elsewhere): refused before any packet is sent. 192.0.2.1
/// (TEST-NET-1) would not answer: the refusal is immediate, not a timeout.
#[test]
fn clear_smtp_to_a_lan_address_sends_nothing() {
    let mut u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap_or_else(|e| panic!("{e}"));
    u.host = "192.0.2.1".into();
    assert_eq!(u.security, Security::Clear);
    let started = Instant::now();
    let r = send(
        &u,
        "a@club.fr",
        &["b@club.fr".to_string()],
        b"x",
        Duration::from_secs(20),
    );
    assert_eq!(
        r,
        Err("cannot connect to 192.0.2.1:2525: no loopback address for it".into())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Out of time before a first attempt: said as such.
    let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap_or_else(|e| panic!("{e}"));
    let e = Session::connect(&u, Instant::now()).err();
    assert_eq!(
        e.as_deref(),
        Some("cannot connect to 127.0.0.1:2525: no time left")
    );
}

#[test]
fn socket_errors_in_plain_words() {
    use io::ErrorKind::*;
    for (kind, words) in [
        (
            ConnectionRefused,
            "connection refused (no mail server listening there)",
        ),
        (TimedOut, "no answer in time"),
        (WouldBlock, "no answer in time"),
        (ConnectionReset, "the server closed the connection"),
        (BrokenPipe, "the server closed the connection"),
        (UnexpectedEof, "the server closed the connection"),
    ] {
        assert_eq!(plain_io(&io::Error::from(kind)), words, "{kind:?}");
    }
    assert_eq!(plain_io(&io::Error::other("disk on fire")), "disk on fire");
}

/// The EHLO argument: the local address as an address literal.
#[test]
fn ehlo_names_are_address_literals() {
    let a = |s: &str| s.parse::<SocketAddr>().ok();
    assert_eq!(ehlo_name(a("192.168.1.20:40000")), "[192.168.1.20]");
    assert_eq!(ehlo_name(a("[2001:db8::7]:40000")), "[IPv6:2001:db8::7]");
    assert_eq!(ehlo_name(None), "[127.0.0.1]");
}

/// A connected pair on 127.0.0.1: (the client's end, the peer's end).
fn socket_pair() -> (TcpStream, TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    let (p, _) = l.accept().unwrap_or_else(|e| panic!("{e}"));
    (c, p)
}

/// A session over `sock` as `exchange` makes it, named `mx:25` in its messages.
fn session(sock: TcpStream, deadline: Instant) -> Session {
    Session {
        sock,
        #[cfg(feature = "tls")]
        tls: None,
        buf: Vec::new(),
        deadline,
        peer: "mx:25".into(),
    }
}

/// A line of exactly MAX_LINE bytes is read; the bound is checked on what has been
/// read without a line end (`buf` holds what earlier reads brought).
#[test]
fn a_reply_line_may_be_8192_bytes_and_no_more() {
    let (c, mut p) = socket_pair();
    let mut s = session(c, Instant::now() + Duration::from_secs(20));
    s.buf = vec![b'x'; MAX_LINE];
    p.write_all(b"\r\n250 next\r\n250 bare LF\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.read_line("EHLO"), Ok("x".repeat(MAX_LINE)));
    assert_eq!(s.read_line("EHLO"), Ok("250 next".into()));
    // A line ended by LF alone keeps its last character.
    assert_eq!(s.read_line("EHLO"), Ok("250 bare LF".into()));
    s.buf = vec![b'x'; MAX_LINE + 1];
    // Would end the line, were the bound not checked before reading more.
    p.write_all(b"\r\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.read_line("EHLO"),
        Err("mx:25 (EHLO): a reply line over 8192 bytes: not an SMTP server?".into())
    );
}

/// A peer that never answers: the read ends at the session's deadline with the
/// exchange's own words, by the socket's timeout (not by `send`'s, not hanging).
#[test]
fn a_silent_peer_ends_the_read_at_the_deadline() {
    let (c, p) = socket_pair();
    let started = Instant::now();
    let mut s = session(c, started + Duration::from_millis(400));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(s.reply("the greeting").map(|r| r.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("the read did not end at its deadline"));
    let elapsed = started.elapsed();
    assert_eq!(
        r,
        Err("mx:25 (waiting for the answer to the greeting): no answer in time".into())
    );
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    drop(p);
}

static SIGNALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The exchange ends a tenth of the caller's timeout before it, 500 ms at most.
#[test]
fn the_exchange_ends_a_little_before_the_caller_waits() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    for (timeout, margin) in [
        (ms(800), ms(80)),
        (ms(4_000), ms(400)),
        (ms(5_000), ms(500)),
        (ms(60_000), ms(500)),
        (Duration::ZERO, Duration::ZERO),
    ] {
        assert_eq!(
            deadlines(t0, timeout),
            (t0 + timeout, t0 + timeout - margin),
            "{timeout:?}"
        );
    }
}

/// Polls `cond` every millisecond for 20 s at most.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A signal that interrupts a blocked read (EINTR: a socket with a timeout is never
/// restarted by the kernel, SA_RESTART or not) is not an error: the read goes on.
#[test]
fn a_signal_during_a_read_is_not_an_error() {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the handler only adds to an atomic (async-signal-safe); `sa` is zeroed
    // plain data, then given an empty mask, no SA_RESTART. SIGUSR2 is sent by this
    // test only, to one thread.
    let installed = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut())
    };
    assert_eq!(installed, 0, "sigaction: {}", io::Error::last_os_error());
    let (c, mut p) = socket_pair();
    let mut s = session(c, Instant::now() + Duration::from_secs(20));
    let (tid_tx, tid_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tid_tx.send(unsafe { libc::gettid() });
        s.read_line("the greeting")
    });
    let tid = tid_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    // The reader blocked in recvfrom(2), as /proc says.
    let syscall = format!("/proc/self/task/{tid}/syscall");
    let in_recv = || {
        std::fs::read_to_string(&syscall).is_ok_and(|s| {
            s.split(' ')
                .next()
                .and_then(|n| n.parse::<libc::c_long>().ok())
                == Some(libc::SYS_recvfrom)
        })
    };
    wait_for("the reader to block in recvfrom", in_recv);
    let before = SIGNALS.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the thread is alive (it is blocked in recvfrom: joined below).
    let sent = unsafe { libc::pthread_kill(reader.as_pthread_t(), libc::SIGUSR2) };
    assert_eq!(sent, 0);
    wait_for("the signal to be handled", || {
        SIGNALS.load(std::sync::atomic::Ordering::SeqCst) > before
    });
    // The interrupted read has returned (EINTR): only now does the answer come.
    p.write_all(b"220 mx ready\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let r = reader.join().unwrap_or_else(|_| panic!("reader thread"));
    assert_eq!(r, Ok("220 mx ready".into()));
}

/// A scripted SMTP server on 127.0.0.1 for one connection: `greeting`, then
/// `answer(command)` to each command line; the lines of DATA up to the final dot are
/// recorded and answered `250 queued`. Returns its port and, once the client has
/// closed, the lines it received, in order.
fn scripted(
    greeting: String,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> (u16, Transcript) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(serve_script(&l, &greeting, answer));
    });
    (port, Transcript(rx))
}

/// What a scripted server received, once the session is over.
struct Transcript(mpsc::Receiver<Vec<String>>);

impl Transcript {
    /// The lines, in order; fails (instead of hanging) when the client never came or
    /// never closed.
    fn join(self) -> Vec<String> {
        self.0
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the scripted server saw no complete session in 30 s"))
    }
}

fn serve_script(
    l: &std::net::TcpListener,
    greeting: &str,
    answer: impl Fn(&str) -> String,
) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut got = Vec::new();
    let Ok((sock, _)) = l.accept() else {
        return got;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(20)));
    let mut w = sock.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let mut r = BufReader::new(sock);
    let _ = w.write_all(greeting.as_bytes());
    let mut in_data = false;
    loop {
        let mut raw = Vec::new();
        if r.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
            return got;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.strip_suffix("\r\n").unwrap_or(&line).to_string();
        got.push(line.clone());
        let reply = if in_data {
            in_data = line != ".";
            if in_data {
                continue;
            }
            "250 queued\r\n".to_string()
        } else {
            let a = answer(&line);
            in_data = a.starts_with("354");
            a
        };
        if w.write_all(reply.as_bytes()).is_err() || line == "QUIT" {
            return got;
        }
    }
}

/// Answers of a server whose EHLO reply is `ehlo`, which refuses the recipients
/// whose address starts with "nobody".
fn answers(ehlo: String) -> impl Fn(&str) -> String + Send + 'static {
    move |cmd: &str| {
        let verb = cmd.split([' ', ':']).next().unwrap_or("");
        match verb {
            "EHLO" => ehlo.clone(),
            "MAIL" => "250 ok\r\n".into(),
            "RCPT" if cmd.starts_with("RCPT TO:<nobody") => "550 5.1.1 no such user\r\n".into(),
            "RCPT" => "250 ok\r\n".into(),
            "DATA" => "354 go ahead\r\n".into(),
            "STARTTLS" => "220 ready for TLS\r\n".into(),
            "HELO" => "250 mx.club.fr\r\n".into(),
            "QUIT" => "221 bye\r\n".into(),
            _ => "500 what?\r\n".into(),
        }
    }
}

fn clear_url(port: u16) -> SmtpUrl {
    SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every command as sent: EHLO with our address, BODY=8BITMIME only for an 8-bit
/// message to a server that announced 8BITMIME, and a partial delivery reported with
/// the number of recipients reached.
#[test]
fn the_commands_sent_to_a_scripted_server() {
    let ehlo_8bit = "250-mx.club.fr\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n".to_string();
    let ehlo_7bit = "250-mx.club.fr\r\n250 SIZE 10000000\r\n".to_string();
    let eight_bit: &[u8] = "Subject: x\r\n\r\ndéjà\r\n".as_bytes();
    let seven_bit: &[u8] = b"Subject: x\r\n\r\ndeja\r\n";
    let from = "neopro@club.fr";
    for (ehlo, message, body_param) in [
        (&ehlo_8bit, eight_bit, " BODY=8BITMIME"),
        (&ehlo_8bit, seven_bit, ""),
        (&ehlo_7bit, eight_bit, ""),
    ] {
        let (port, server) = scripted("220 mx ESMTP\r\n".into(), answers(ehlo.clone()));
        let to = strings(&["a@club.fr", "nobody@club.fr", "b@club.fr"]);
        let r = send(
            &clear_url(port),
            from,
            &to,
            message,
            Duration::from_secs(20),
        );
        assert_eq!(
            r,
            Err(format!(
                "the mail went to 2 recipient(s), but 127.0.0.1:{port} refused \
                 nobody@club.fr (550 5.1.1 no such user)"
            ))
        );
        let got = server.join();
        let body = String::from_utf8_lossy(message);
        let body: Vec<&str> = body
            .strip_suffix("\r\n")
            .unwrap_or(&body)
            .split("\r\n")
            .collect();
        let mut expected = strings(&[
            "EHLO [127.0.0.1]",
            &format!("MAIL FROM:<{from}>{body_param}"),
            "RCPT TO:<a@club.fr>",
            "RCPT TO:<nobody@club.fr>",
            "RCPT TO:<b@club.fr>",
            "DATA",
        ]);
        expected.extend(strings(&body));
        expected.extend(strings(&[".", "QUIT"]));
        assert_eq!(got, expected, "{ehlo:?}, {body_param:?}");
    }
    // One recipient of one, accepted: Ok.
    let (port, server) = scripted("220 mx\r\n".into(), answers(ehlo_7bit.clone()));
    let to = strings(&["a@club.fr"]);
    let r = send(
        &clear_url(port),
        from,
        &to,
        seven_bit,
        Duration::from_secs(20),
    );
    assert_eq!(r, Ok(()));
    let got = server.join();
    assert_eq!(got.first().map(String::as_str), Some("EHLO [127.0.0.1]"));
    assert_eq!(got.last().map(String::as_str), Some("QUIT"));
}

/// A reply of 200 lines is read (a long EHLO list); one more line is refused, as is
/// a line without end: a peer cannot make the client hold an endless reply.
#[test]
fn replies_are_bounded_to_200_lines_of_8192_bytes() {
    let mut ehlo = "250-mx.club.fr\r\n".to_string();
    for i in 1..199 {
        ehlo.push_str(&format!("250-X-CAPABILITY-{i}\r\n"));
    }
    ehlo.push_str("250 8BITMIME\r\n");
    assert_eq!(ehlo.matches("\r\n").count(), 200);
    let (port, server) = scripted("220 mx\r\n".into(), answers(ehlo));
    let to = strings(&["a@club.fr"]);
    let r = send(
        &clear_url(port),
        "n@club.fr",
        &to,
        b"x\r\n",
        Duration::from_secs(20),
    );
    assert_eq!(r, Ok(()));
    let got = server.join();
    assert_eq!(
        got.get(1).map(String::as_str),
        Some("MAIL FROM:<n@club.fr>")
    );

    // A greeting of 201 lines, and one endless line: refused, nothing sent.
    for (greeting, why) in [
        (
            format!("{}220 mx\r\n", "220-welcome\r\n".repeat(200)),
            "a reply of over 200 lines",
        ),
        (
            format!("220 {}", "x".repeat(3 * MAX_LINE)),
            "a reply line over 8192 bytes: not an SMTP server?",
        ),
    ] {
        let (port, server) = scripted(greeting, answers(String::new()));
        let r = send(
            &clear_url(port),
            "n@club.fr",
            &to,
            b"x\r\n",
            Duration::from_secs(20),
        );
        assert_eq!(r, Err(format!("127.0.0.1:{port} (the greeting): {why}")));
        assert_eq!(server.join(), Vec::<String>::new(), "nothing sent");
    }
}

/// A build without TLS never speaks STARTTLS's TLS: a URL that asks for it (only a
/// test can make one: such a build refuses it at parsing) stops after the 220.
#[test]
#[cfg(not(feature = "tls"))]
fn without_tls_a_starttls_session_stops_before_the_handshake() {
    let ehlo = "250-mx.club.fr\r\n250 STARTTLS\r\n".to_string();
    let (port, server) = scripted("220 mx\r\n".into(), answers(ehlo));
    let mut u = clear_url(port);
    u.security = Security::StartTls;
    let to = strings(&["a@club.fr"]);
    let r = send(&u, "n@club.fr", &to, b"x\r\n", Duration::from_secs(20));
    assert_eq!(
        r,
        Err(format!(
            "127.0.0.1:{port}: this build has no TLS support (built without the `tls` feature)"
        ))
    );
    let got = server.join();
    assert_eq!(got, strings(&["EHLO [127.0.0.1]", "STARTTLS"]));
}

/// HELO only to a loopback (clear) server that does not know EHLO (500 to 502), and
/// only then; its refusal, or another refusal of EHLO, ends the exchange.
#[test]
fn helo_only_to_a_loopback_server_that_does_not_know_ehlo() {
    let to = strings(&["a@club.fr"]);
    let send_to = |u: &SmtpUrl| send(u, "n@club.fr", &to, b"x\r\n", Duration::from_secs(20));
    let (port, server) = scripted("220 mx\r\n".into(), answers("500 5.5.1 EHLO?\r\n".into()));
    assert_eq!(send_to(&clear_url(port)), Ok(()));
    let got = server.join();
    let expected = [
        "EHLO [127.0.0.1]",
        "HELO [127.0.0.1]",
        "MAIL FROM:<n@club.fr>",
        "RCPT TO:<a@club.fr>",
        "DATA",
        "x",
        ".",
        "QUIT",
    ];
    assert_eq!(got, strings(&expected));
    // HELO refused too.
    let a = answers("502 5.5.2 no EHLO\r\n".into());
    let (port, server) = scripted("220 mx\r\n".into(), move |c: &str| {
        if c.starts_with("HELO") {
            "550 go away\r\n".into()
        } else {
            a(c)
        }
    });
    assert_eq!(
        send_to(&clear_url(port)),
        Err(format!("127.0.0.1:{port} refused EHLO: 502 5.5.2 no EHLO"))
    );
    let got = server.join();
    assert_eq!(got, strings(&["EHLO [127.0.0.1]", "HELO [127.0.0.1]"]));
    // A refusal that is not "command unknown": no HELO.
    let (port, server) = scripted("220 mx\r\n".into(), answers("421 4.3.2 busy\r\n".into()));
    assert_eq!(
        send_to(&clear_url(port)),
        Err(format!("127.0.0.1:{port} refused EHLO: 421 4.3.2 busy"))
    );
    let got = server.join();
    assert_eq!(got, strings(&["EHLO [127.0.0.1]"]));
    // Off loopback (STARTTLS asked), never HELO: it has no STARTTLS.
    let (port, server) = scripted("220 mx\r\n".into(), answers("500 5.5.1 EHLO?\r\n".into()));
    let mut u = clear_url(port);
    u.security = Security::StartTls;
    assert_eq!(
        send_to(&u),
        Err(format!("127.0.0.1:{port} refused EHLO: 500 5.5.1 EHLO?"))
    );
    let got = server.join();
    assert_eq!(got, strings(&["EHLO [127.0.0.1]"]));
}
