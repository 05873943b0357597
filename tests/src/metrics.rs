//! Reading Prometheus text expositions: the sum of a metric's samples whose
//! labels include given pairs, whatever the other labels and their order.

/// The labels of one sample line (`name{a="1",b="2"} 3`), unescaped enough
/// for the values our binaries write (no quotes or commas inside values).
fn labels(series: &str) -> Vec<(&str, &str)> {
    let Some((_, rest)) = series.split_once('{') else { return Vec::new() };
    let body = rest.trim_end_matches('}');
    body.split("\",")
        .filter_map(|pair| {
            let (k, v) = pair.split_once("=\"")?;
            Some((k.trim(), v.trim_end_matches('"')))
        })
        .collect()
}

/// The sum of `name`'s samples in `text` whose labels include every pair of `with`.
pub fn sum(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .filter(|(series, _)| {
            let have = labels(series);
            with.iter().all(|want| have.contains(want))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_carrying_the_labels() {
        let text = "# HELP x\n\
            orchestrator_requests_total{code=\"200\",operation=\"scale-sks-nodepool\"} 2\n\
            orchestrator_requests_total{code=\"503\",operation=\"scale-sks-nodepool\"} 1\n\
            orchestrator_requests_total{code=\"200\",operation=\"get-sks-nodepool\"} 7\n\
            orchestrator_requests_total_other{operation=\"scale-sks-nodepool\"} 100\n";
        assert_eq!(sum(text, "orchestrator_requests_total", &[("operation", "scale-sks-nodepool")]), 3.0);
        assert_eq!(
            sum(text, "orchestrator_requests_total", &[("code", "200"), ("operation", "scale-sks-nodepool")]),
            2.0
        );
        assert_eq!(sum(text, "orchestrator_requests_total", &[]), 10.0);
        assert_eq!(sum(text, "orchestrator_requests_total", &[("operation", "nope")]), 0.0);
        assert_eq!(sum("plain_gauge 4\n", "plain_gauge", &[]), 4.0);
    }
}
