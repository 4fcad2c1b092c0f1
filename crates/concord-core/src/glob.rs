//! Redis-style glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), used by `KEYS`, `SCAN MATCH`
//! and policy rules. Iterative with backtracking on the last `*`, so no input can make it recurse.

pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = match_class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Match a `[...]` class starting at `pattern[start] == '['`. Returns (matched, index after `]`),
/// or None when the class is not closed (then `[` is literal).
fn match_class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let pc = pattern[i];
        if pc == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pc == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = if pc <= pattern[i + 2] {
                (pc, pattern[i + 2])
            } else {
                (pattern[i + 2], pc)
            };
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= pc == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::glob_match as g;

    #[test]
    fn redis_glob_cases() {
        assert!(g(b"*", b""));
        assert!(g(b"*", b"anything"));
        assert!(g(b"h?llo", b"hello"));
        assert!(!g(b"h?llo", b"hllo"));
        assert!(g(b"h*llo", b"heeeello"));
        assert!(g(b"h[ae]llo", b"hallo"));
        assert!(!g(b"h[^e]llo", b"hello"));
        assert!(g(b"h[a-b]llo", b"hbllo"));
        assert!(g(b"phone:*", b"phone:123"));
        assert!(!g(b"phone:*", b"user:1"));
        assert!(g(b"a\\*b", b"a*b"));
        assert!(!g(b"a\\*b", b"axb"));
        assert!(g(b"*a*b*c*", b"xxaxxbxxcxx"));
        assert!(!g(b"*a*b*c*", b"xxaxxcxxbxx"));
        assert!(g(b"[", b"["));
    }
}
