//! Previews people read before saying yes: a line diff of two texts (a Kubernetes
//! pod template, a compose config), shared by every backend that shows one.

/// Lines of context kept around each change.
const CONTEXT: usize = 3;
/// Texts longer than this (in lines, either side) are summarised instead of diffed.
const MAX_LINES: usize = 4_000;

/// A unified-style diff of `old` and `new` (`-` removed, `+` added, ` ` context,
/// `…` for skipped unchanged lines); empty when they are equal.
///
/// ```
/// let diff = rollback_core::preview::line_diff("image: web:2\nreplicas: 3\n", "image: web:1\nreplicas: 3\n");
/// assert_eq!(diff, "-image: web:2\n+image: web:1\n replicas: 3");
/// ```
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a == b {
        return String::new();
    }
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return format!("({} lines -> {} lines; too long to diff here)", a.len(), b.len());
    }
    // Longest common subsequence, by dynamic programming from the ends.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    // Order each run of changes as removals then additions, like `diff -u`.
    let mut k = 0;
    while k < ops.len() {
        let end = (k..ops.len()).find(|&e| ops[e].0 == ' ').unwrap_or(ops.len());
        ops[k..end].sort_by_key(|(op, _)| *op != '-');
        k = end + 1;
    }
    let near_change = |idx: usize| {
        let lo = idx.saturating_sub(CONTEXT);
        let hi = (idx + CONTEXT + 1).min(ops.len());
        ops[lo..hi].iter().any(|(op, _)| *op != ' ')
    };
    let mut out: Vec<String> = Vec::new();
    let mut skipped = false;
    for (idx, (op, line)) in ops.iter().enumerate() {
        if *op == ' ' && !near_change(idx) {
            if !skipped {
                out.push("…".into());
                skipped = true;
            }
            continue;
        }
        skipped = false;
        out.push(format!("{op}{line}"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::line_diff;

    #[test]
    fn equal_texts_have_no_diff_and_far_context_is_elided() {
        assert_eq!(line_diff("a\nb\n", "a\nb\n"), "");
        let old: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l10\n", "L10\n");
        let diff = line_diff(&old, &new);
        assert_eq!(diff, "…\n l7\n l8\n l9\n-l10\n+L10\n l11\n l12\n l13\n…");
    }

    #[test]
    fn additions_and_removals_at_the_ends() {
        assert_eq!(line_diff("", "x"), "+x");
        assert_eq!(line_diff("x\ny", "y"), "-x\n y");
    }
}
