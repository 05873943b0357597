//! Node taints and pod tolerations, and whether a toleration tolerates a taint
//! (`k8s.io/api/core/v1` `Toleration.ToleratesTaint`).

use serde::Deserialize;

/// A taint's (or toleration's) effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// New pods are not scheduled.
    NoSchedule,
    /// New pods avoid the node.
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
    /// An effect this code does not know.
    Other(Box<str>),
}

impl From<&str> for Effect {
    fn from(s: &str) -> Self {
        match s {
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            other => Effect::Other(other.into()),
        }
    }
}

impl<'de> Deserialize<'de> for Effect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Effect::from(String::deserialize(d)?.as_str()))
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct Taint {
    /// The key.
    pub key: Box<str>,
    /// The value (empty when none).
    #[serde(default, deserialize_with = "null_as_empty_str")]
    pub value: Box<str>,
    /// The effect.
    pub effect: Effect,
}

impl Taint {
    /// A taint.
    pub fn new(key: &str, value: &str, effect: Effect) -> Self {
        Taint { key: key.into(), value: value.into(), effect }
    }

    /// Whether kube-scheduler's TaintToleration filter considers the taint.
    pub fn blocks_scheduling(&self) -> bool {
        matches!(self.effect, Effect::NoSchedule | Effect::NoExecute)
    }
}

/// A toleration's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TolerationOperator {
    /// The values are equal (the default).
    Equal,
    /// The key exists (any value).
    Exists,
    /// Anything else: tolerates nothing.
    Unknown,
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "TolerationWire")]
pub struct Toleration {
    /// The taint key; empty matches every key.
    pub key: Box<str>,
    /// The operator.
    pub operator: TolerationOperator,
    /// The value `Equal` compares with.
    pub value: Box<str>,
    /// The effect; `None` matches every effect.
    pub effect: Option<Effect>,
}

#[derive(Deserialize)]
struct TolerationWire {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    effect: Option<String>,
}

impl From<TolerationWire> for Toleration {
    fn from(w: TolerationWire) -> Self {
        let operator = match w.operator.as_deref() {
            None | Some("") | Some("Equal") => TolerationOperator::Equal,
            Some("Exists") => TolerationOperator::Exists,
            Some(_) => TolerationOperator::Unknown,
        };
        Toleration {
            key: w.key.unwrap_or_default().into(),
            operator,
            value: w.value.unwrap_or_default().into(),
            effect: w.effect.filter(|e| !e.is_empty()).map(|e| Effect::from(e.as_str())),
        }
    }
}

impl Toleration {
    /// A toleration of `key` (any value with `Exists`, `value` with `Equal`).
    pub fn new(key: &str, operator: TolerationOperator, value: &str, effect: Option<Effect>) -> Self {
        Toleration { key: key.into(), operator, value: value.into(), effect }
    }

    /// Whether this toleration tolerates `taint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.as_ref().is_some_and(|e| *e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Equal => self.value == taint.value,
            TolerationOperator::Exists => true,
            TolerationOperator::Unknown => false,
        }
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// The first taint kube-scheduler's TaintToleration filter rejects the pod for.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|t| t.blocks_scheduling() && !tolerated(tolerations, t))
}

fn null_as_empty_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<str>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_as_kubernetes_matches_them() {
        let taint = Taint::new("dedicated", "gpu", Effect::NoSchedule);
        let cases = [
            (json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}), true),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "dedicated", "value": "cpu"}), false),
            (json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"key": "dedicated", "operator": "Gt", "value": "1"}), false),
            (json!({"key": "dedicated", "operator": "Exists", "effect": ""}), true),
        ];
        for (t, expected) in cases {
            assert_eq!(toleration(t.clone()).tolerates(&taint), expected, "{t}");
        }
    }

    #[test]
    fn only_no_schedule_and_no_execute_taints_block() {
        let taints = [
            Taint::new("soft", "", Effect::PreferNoSchedule),
            Taint::new("a", "", Effect::NoExecute),
            Taint::new("b", "", Effect::NoSchedule),
        ];
        assert_eq!(first_untolerated(&taints, &[]).map(|t| &*t.key), Some("a"));
        let tolerate_a = [toleration(json!({"key": "a", "operator": "Exists"}))];
        assert_eq!(first_untolerated(&taints, &tolerate_a).map(|t| &*t.key), Some("b"));
        let tolerate_all = [toleration(json!({"operator": "Exists"}))];
        assert_eq!(first_untolerated(&taints, &tolerate_all), None);
    }

    #[test]
    fn taints_decode_with_or_without_values() {
        let t: Taint = serde_json::from_value(json!({"key": "k", "effect": "NoSchedule", "timeAdded": null})).unwrap();
        assert_eq!(t, Taint::new("k", "", Effect::NoSchedule));
        let t: Taint = serde_json::from_value(json!({"key": "k", "value": "v", "effect": "Future"})).unwrap();
        assert_eq!(t.effect, Effect::Other("Future".into()));
        assert!(!t.blocks_scheduling());
    }
}
