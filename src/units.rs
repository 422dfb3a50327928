//! Numbers for people and for files: sizes (`1.2 MB` in the status, `1.20 MB` in the
//! list) and lower-case hex (digests).

/// Human size with base 1024: `1.2 MB` with one decimal, `1.20 MB` with two.
pub fn human_size(bytes: u64, decimals: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.decimals$} {}", UNITS[u])
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(1_258_291, 1), "1.2 MB");
        assert_eq!(human_size(1_258_291, 2), "1.20 MB");
        assert_eq!(human_size(100, 1), "100 B");
        assert_eq!(human_size(2048, 1), "2.0 KB");
    }
}
