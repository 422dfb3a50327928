//! The age identity file of `restore ARCHIVE --videos --identity FILE`: the secret keys
//! that decrypt this site's encrypted videos in the bucket (ENCRYPT_TO, docs/format.md,
//! Videos offsite).

use std::path::Path;

/// Reads an age identity file (as `age-keygen` writes it): every `AGE-SECRET-KEY-1…`
/// line.
pub fn read(path: &Path) -> Result<Vec<age::x25519::Identity>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| l.parse().ok())
        .collect();
    if ids.is_empty() {
        return Err(format!(
            "{} holds no age identity (AGE-SECRET-KEY-1… lines, as age-keygen writes them)",
            path.display()
        ));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn reads_every_key_line_of_an_age_keygen_file() {
        let dir = std::env::temp_dir().join(format!("neopro-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let file = dir.join("key.txt");
        // As age-keygen writes it (comments, the public key), two keys, one indented,
        // and a line that only looks like a key.
        let text = format!(
            "# created: 2024-01-01T00:00:00Z\n# public key: {}\n{}\n  {}  \nAGE-SECRET-KEY-1NOTAKEY\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        std::fs::write(&file, text).unwrap();
        let ids = read(&file).unwrap();
        let publics: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        assert_eq!(
            publics,
            [a.to_public().to_string(), b.to_public().to_string()]
        );
        // No key: an error that says what is expected.
        std::fs::write(&file, "# public key: age1xyz\n").unwrap();
        let Err(e) = read(&file) else {
            panic!("a file without a key was accepted")
        };
        assert!(e.contains("holds no age identity"), "{e}");
        // No file.
        let Err(e) = read(&dir.join("missing")) else {
            panic!("a missing file was accepted")
        };
        assert!(e.starts_with("cannot read the identity file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
