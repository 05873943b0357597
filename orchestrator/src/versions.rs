//! SKS version rules shared by the zone and its clients: which versions a
//! cluster may move to.

/// `major.minor.patch`: decimal numbers without leading zeros.
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    fn number(s: &str) -> Option<u32> {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits || (s.len() > 1 && s.starts_with('0')) {
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
        assert_eq!(upgrade_targets(&catalog, "1.34.1"), vec!["1.34.2"]);
    }

    #[test]
    fn versions_parse_strictly_and_patches_compare_as_numbers() {
        assert_eq!(parse("1.34.10"), Some((1, 34, 10)));
        assert_eq!(parse("1.34.0"), Some((1, 34, 0)));
        for bad in ["", "1.34", "1.34.2.1", "v1.34.2", "1.34.x", "1.034.2", "1.34.-1", "1..2", " 1.34.2"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let catalog: Vec<String> = ["1.34.9", "1.34.10", "1.35.0"].map(String::from).to_vec();
        assert_eq!(upgrade_targets(&catalog, "1.34.9"), vec!["1.34.10", "1.35.0"]);
    }
}
