//! SKS version rules shared by the zone and its clients: which versions a
//! cluster may move to.

/// `major.minor.patch`, digits only.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    fn number(s: &str) -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let mut parts = v.split('.');
    let out = (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    parts.next().is_none().then_some(out)
}

/// The newest patch of `minor` in `catalog`.
pub fn newest_patch(catalog: &[String], minor: (u32, u32)) -> Option<String> {
    catalog
        .iter()
        .filter_map(|v| parse(v).filter(|&(a, b, _)| (a, b) == minor).map(|(_, _, p)| (v, p)))
        .max_by_key(|&(_, p)| p)
        .map(|(v, _)| v.clone())
}

/// The versions a cluster at `current` may upgrade to: the newest patch of its
/// minor (if newer) and the newest patch of the next minor.
pub fn upgrade_targets(catalog: &[String], current: &str) -> Vec<String> {
    let Some((major, minor, patch)) = parse(current) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(v) = newest_patch(catalog, (major, minor))
        && parse(&v).is_some_and(|(_, _, p)| p > patch)
    {
        out.push(v);
    }
    out.extend(newest_patch(catalog, (major, minor + 1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_newest_patch_of_this_and_the_next_minor() {
        let catalog: Vec<String> = ["1.34.2", "1.34.1", "1.33.6", "1.33.5", "1.32.10"].map(String::from).to_vec();
        assert_eq!(upgrade_targets(&catalog, "1.33.5"), vec!["1.33.6", "1.34.2"]);
        assert_eq!(upgrade_targets(&catalog, "1.33.6"), vec!["1.34.2"]);
        assert_eq!(upgrade_targets(&catalog, "1.32.10"), vec!["1.33.6"]);
        assert_eq!(upgrade_targets(&catalog, "1.34.2"), Vec::<String>::new());
        assert_eq!(upgrade_targets(&catalog, "garbage"), Vec::<String>::new());
        assert_eq!(parse("1.34.2.1"), None);
        assert_eq!(parse("1.34.x"), None);
    }
}
