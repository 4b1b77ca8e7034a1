//! Resource limits' part of a container file and of the host file
//! (`limits`, normalized by lib/spec.nix): each a number of its unit,
//! checked as it is read, with the cgroup2 file it is written to.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The table of the limits, lib/limits.json (lib/limits.nix says what each
/// field means), which lib/spec.nix, lib/lxc-config.nix and the host module
/// read as well.
const LIMITS_JSON: &str = include_str!("../../../../lib/limits.json");

#[derive(Deserialize)]
struct Table {
    units: Units,
    limits: Vec<Definition>,
}

/// The units' ranges that the helper checks again (lib/spec.nix checks the
/// rest of a container file's values).
#[derive(Deserialize)]
struct Units {
    size: SizeUnit,
    weight: Range,
    cpus: Cpus,
}

/// Sizes: bytes, or a number with a suffix (powers of 1024).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SizeUnit {
    pattern: String,
    with_suffix_pattern: String,
    suffixes: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Range {
    min: u64,
    max: u64,
}

#[derive(Deserialize)]
struct Cpus {
    min: f64,
    max: f64,
    period: u64,
}

/// A limit of the table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Definition {
    group: String,
    key: String,
    name: String,
    unit: Unit,
    unlimited: String,
}

/// What a limit's number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Unit {
    /// Bytes.
    Size,
    /// A cgroup2 weight.
    Weight,
    /// A CPU quota in microseconds per `period`.
    Cpus,
    /// A number of processes.
    Count,
}

/// What a limit is called: its name in the spec, the cgroup2 file (and the
/// LXC key after `lxc.cgroup2.`), the controller it needs, and the value
/// that lifts it.
pub struct Key {
    pub name: String,
    pub file: String,
    pub controller: String,
    /// Its group and key in a container file and the host file
    /// (`limits.<group>.<key>`).
    group: String,
    key: String,
    unit: Unit,
    unlimited: String,
}

impl Key {
    /// What the cgroup2 file is given for `value`, a number of the spec or
    /// the value that lifts the limit: cpu.max takes its period after it.
    fn file_value(&self, value: &str) -> String {
        match self.unit {
            Unit::Cpus => format!("{value} {}", cpu_period()),
            _ => value.to_string(),
        }
    }
}

struct Vocabulary {
    keys: Vec<Key>,
    size: SizeUnit,
    weight: Range,
    cpus: Cpus,
}

static VOCABULARY: LazyLock<Vocabulary> = LazyLock::new(|| {
    let table: Table = serde_json::from_str(LIMITS_JSON).expect("lib/limits.json is valid");
    let keys = table
        .limits
        .into_iter()
        .map(|limit| Key {
            file: format!("{}.{}", limit.group, limit.key),
            controller: limit.group.clone(),
            group: limit.group,
            key: limit.key,
            name: limit.name,
            unit: limit.unit,
            unlimited: limit.unlimited,
        })
        .collect();
    let Units { size, weight, cpus } = table.units;
    Vocabulary { keys, size, weight, cpus }
});

/// The limit named `name` in the spec.
fn key(name: &str) -> &'static Key {
    VOCABULARY
        .keys
        .iter()
        .find(|key| key.name == name)
        .unwrap_or_else(|| panic!("lib/limits.json has no limit {name}"))
}

/// cpu.max's period in microseconds (lib/limits.json's `units.cpus.period`).
pub fn cpu_period() -> u64 {
    VOCABULARY.cpus.period
}

/// The limits, each a number of its unit (lib/limits.json) or unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// memory.max, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Positive>,
    /// memory.high, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<Positive>,
    /// cpu.weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<Weight>,
    /// cpu.max's quota per period (`cpu_period`), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<CpuQuota>,
    /// pids.max.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<Positive>,
    /// io.weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<Weight>,
}

impl Limits {
    /// Each limit with its key and its number (None: unset), in the order
    /// of lib/limits.json.
    pub fn entries(&self) -> [(&'static Key, Option<u64>); 6] {
        let positive = |value: Option<Positive>| value.map(u64::from);
        let weight = |value: Option<Weight>| value.map(u64::from);
        [
            (key("memoryMax"), positive(self.memory_max)),
            (key("memoryHigh"), positive(self.memory_high)),
            (key("cpuWeight"), weight(self.cpu_weight)),
            (key("cpuMax"), self.cpu_max.map(u64::from)),
            (key("pidsMax"), positive(self.pids_max)),
            (key("ioWeight"), weight(self.io_weight)),
        ]
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// These limits, none above the host's `ceiling`: the ceiling where it
    /// is lower or where these set nothing.
    pub fn capped_by(&self, ceiling: &Limits) -> Limits {
        fn lower<T: Ord + Copy>(asked: Option<T>, ceiling: Option<T>) -> Option<T> {
            match (asked, ceiling) {
                (Some(asked), Some(ceiling)) => Some(asked.min(ceiling)),
                (asked, ceiling) => asked.or(ceiling),
            }
        }
        Limits {
            memory_max: lower(self.memory_max, ceiling.memory_max),
            memory_high: lower(self.memory_high, ceiling.memory_high),
            cpu_weight: lower(self.cpu_weight, ceiling.cpu_weight),
            cpu_max: lower(self.cpu_max, ceiling.cpu_max),
            pids_max: lower(self.pids_max, ceiling.pids_max),
            io_weight: lower(self.io_weight, ceiling.io_weight),
        }
    }

    /// The controllers these limits need.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut needed: Vec<&'static str> = self
            .entries()
            .iter()
            .filter(|(_, value)| value.is_some())
            .map(|(key, _)| key.controller.as_str())
            .collect();
        needed.dedup();
        needed
    }

    /// What changes from `self` to `new`: each changed file with the value
    /// to write (lifting a limit that `new` no longer sets).
    pub fn changes_to(&self, new: &Limits) -> Vec<(&'static str, String)> {
        self.entries()
            .into_iter()
            .zip(new.entries())
            .filter(|((_, old), (_, new))| old != new)
            .map(|(_, (key, new))| {
                let value = new.map_or_else(|| key.unlimited.clone(), |number| number.to_string());
                (key.file.as_str(), key.file_value(&value))
            })
            .collect()
    }
}

/// Fails unless `value` is what lib/lxc-config.nix writes for the cgroup2
/// file `file` (`lxc.cgroup2.<file>`): one of the limits, in its form.
pub fn check_setting(file: &str, value: &str) -> Result<(), String> {
    let number = |text: &str| text.parse::<u64>().map_err(|_| format!("{text:?} is not a number"));
    let Some(key) = VOCABULARY.keys.iter().find(|key| key.file == file) else {
        return Err(format!("lxc.cgroup2.{file} is not a limit nixcloud-container sets"));
    };
    match key.unit {
        Unit::Size | Unit::Count => Positive::try_from(number(value)?).map(drop),
        Unit::Weight => Weight::try_from(number(value)?).map(drop),
        Unit::Cpus => match value.split_once(' ') {
            Some((quota, period)) if period == cpu_period().to_string() => {
                CpuQuota::try_from(number(quota)?).map(drop)
            }
            _ => Err(format!("{value:?} is not \"<quota> {}\"", cpu_period())),
        },
    }
}

/// Reads limits as a person writes them (`#[serde(deserialize_with)]`):
/// the host module's options (`nixcloud.containers.limits`) and so the host
/// file's `limits`, which is a container file's `limits` before lib/spec.nix
/// normalizes it: `<group>.<key>` of lib/limits.json, each a value of its
/// unit as lib/spec.nix's limitTypes take it (sizes in bytes or with a
/// suffix, CPUs as a number of CPUs).
pub fn deserialize_written<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Limits, D::Error> {
    use serde::de::Error;
    let groups = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    let mut numbers = serde_json::Map::new();
    for (group, keys) in &groups {
        if !VOCABULARY.keys.iter().any(|key| &key.group == group) {
            let mut known: Vec<&str> = VOCABULARY.keys.iter().map(|k| k.group.as_str()).collect();
            known.dedup();
            return Err(D::Error::custom(format!(
                "unknown field `{group}`, expected one of `{}`",
                known.join("`, `")
            )));
        }
        let Some(keys) = keys.as_object() else {
            return Err(D::Error::custom(format!("limits.{group}: {keys} is not an object")));
        };
        for (name, value) in keys {
            let Some(key) = VOCABULARY.keys.iter().find(|k| &k.group == group && &k.key == name)
            else {
                return Err(D::Error::custom(format!("limits.{group}.{name} is not a limit")));
            };
            let number = written_number(key.unit, value)
                .map_err(|err| D::Error::custom(format!("limits.{group}.{name}: {err}")))?;
            numbers.insert(key.name.clone(), number.into());
        }
    }
    serde_json::from_value(serde_json::Value::Object(numbers)).map_err(D::Error::custom)
}

/// A written value of `unit` as the spec's number.
fn written_number(unit: Unit, value: &serde_json::Value) -> Result<u64, String> {
    match unit {
        Unit::Size => serde_json::from_value::<Size>(value.clone())
            .map(Size::bytes)
            .map_err(|err| err.to_string()),
        Unit::Cpus => {
            let cpus = &VOCABULARY.cpus;
            match value.as_f64() {
                Some(n) if (cpus.min..=cpus.max).contains(&n) => {
                    Ok((n * cpus.period as f64 + 0.5).floor() as u64)
                }
                _ => Err(format!(
                    "{value} is not a number of CPUs from {} up, like 1 or 1.5",
                    cpus.min
                )),
            }
        }
        Unit::Weight | Unit::Count => {
            value.as_u64().ok_or_else(|| format!("{value} is not a positive integer"))
        }
    }
}

/// A size as lib/spec.nix takes one (lib/limits.json's `units.size`): a
/// positive number of bytes, or a string of digits and a suffix, as "512M".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub Positive);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0 .0
    }

    fn parse(text: &str) -> Option<Size> {
        let unit = &VOCABULARY.size;
        let whole = |pattern: &str| {
            regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
        };
        let bytes = if whole(&unit.pattern) {
            text.parse().ok()?
        } else if whole(&unit.with_suffix_pattern) {
            let (digits, suffix) = text.split_at(text.len() - 1);
            digits.parse::<u64>().ok()?.checked_mul(*unit.suffixes.get(suffix)?)?
        } else {
            return None;
        };
        Positive::try_from(bytes).ok().map(Size)
    }

    fn expected() -> String {
        let mut suffixes: Vec<(&u64, &str)> =
            VOCABULARY.size.suffixes.iter().map(|(suffix, unit)| (unit, suffix.as_str())).collect();
        suffixes.sort();
        let suffixes: Vec<&str> = suffixes.into_iter().map(|(_, suffix)| suffix).collect();
        format!(
            "a size: a positive number of bytes, or a string like \"512M\" or \"2G\" ({}: powers \
             of 1024)",
            suffixes.join(", ")
        )
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let size = match &value {
            // At least units.size.min, 1: what Positive checks.
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(bytes) => {
                    return Positive::try_from(bytes).map(Size).map_err(D::Error::custom)
                }
                None => None,
            },
            serde_json::Value::String(text) => Size::parse(text),
            _ => None,
        };
        size.ok_or_else(|| D::Error::custom(format!("{value} is not {}", Size::expected())))
    }
}

/// A checked number, as lib/spec.nix checked it: a container file may be
/// anyone's, so the helper checks again.
macro_rules! checked_number {
    ($(#[$doc:meta])* $name:ident($inner:ty), $low:expr, $high:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(pub $inner);

        impl TryFrom<u64> for $name {
            type Error = String;

            fn try_from(value: u64) -> Result<$name, String> {
                if ($low..=$high).contains(&value) {
                    Ok($name(value as $inner))
                } else {
                    Err(format!("{value} is not {}", $what))
                }
            }
        }

        impl From<$name> for u64 {
            fn from(value: $name) -> u64 {
                value.0 as u64
            }
        }
    };
}

checked_number!(
    /// A positive number (bytes, processes).
    Positive(u64), 1, u64::MAX, "a positive number"
);
checked_number!(
    /// A cgroup2 weight, in lib/limits.json's range.
    Weight(u16),
    VOCABULARY.weight.min,
    VOCABULARY.weight.max,
    format!("a weight from {} to {}", VOCABULARY.weight.min, VOCABULARY.weight.max)
);
checked_number!(
    /// A CPU quota per period: at least lib/limits.json's least number of
    /// CPUs (0.01: 1 ms per 100 ms, the kernel's least).
    CpuQuota(u64),
    least_cpu_quota(),
    u64::MAX,
    format!("a quota of at least {} microseconds", least_cpu_quota())
);

/// The least CPU quota per period, from lib/limits.json's least number of
/// CPUs, rounded as lib/spec.nix rounds.
fn least_cpu_quota() -> u64 {
    (VOCABULARY.cpus.min * cpu_period() as f64 + 0.5).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> Limits {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_limit_of_the_table_is_a_field() {
        // Limits' fields are typed; each is a limit of lib/limits.json, and
        // each limit of it one of them.
        let all = limits(
            r#"{"memoryMax": 1, "memoryHigh": 1, "cpuWeight": 1, "cpuMax": 1000, "pidsMax": 1, "ioWeight": 1}"#,
        );
        let fields = serde_json::to_value(all).unwrap();
        let names: Vec<&str> = all.entries().iter().map(|(key, _)| key.name.as_str()).collect();
        let table: Vec<&str> = VOCABULARY.keys.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(names, table);
        assert_eq!(fields.as_object().unwrap().len(), table.len());
        for name in table {
            assert!(fields.get(name).is_some(), "{name}");
        }
        assert_eq!(least_cpu_quota(), 1000);
        assert_eq!(cpu_period(), 100_000);
    }

    #[test]
    fn the_host_file_takes_limits_as_the_module_writes_them() {
        let read = |json: &str| deserialize_written(&mut serde_json::Deserializer::from_str(json));
        let written = read(
            r#"{"memory": {"max": "512M", "high": 1073741824}, "cpu": {"max": 1.5, "weight": 200},
                "pids": {"max": 64}, "io": {"weight": 50}}"#,
        )
        .unwrap();
        assert_eq!(
            written,
            limits(
                r#"{"memoryMax": 536870912, "memoryHigh": 1073741824, "cpuMax": 150000,
                    "cpuWeight": 200, "pidsMax": 64, "ioWeight": 50}"#
            )
        );
        assert_eq!(
            read(r#"{"cpu": {"max": 2}, "memory": {"max": "3T"}}"#).unwrap().cpu_max,
            Some(CpuQuota(200000))
        );
        assert_eq!(read("{}").unwrap(), Limits::default());
        for bad in [
            r#"{"memoryMax": 1}"#,
            r#"{"memory": {"max": "512X"}}"#,
            r#"{"memory": {"max": "0M"}}"#,
            r#"{"memory": {"max": "12345678M"}}"#,
            r#"{"memory": {"max": -1}}"#,
            r#"{"memory": {"low": 1}}"#,
            r#"{"cpu": {"max": 0.001}}"#,
            r#"{"cpu": {"weight": 0}}"#,
            r#"{"pids": {"max": "10"}}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let err = read(r#"{"memory": {"max": "512X"}}"#).unwrap_err().to_string();
        assert!(err.contains("\"512X\" is not a size"), "{err}");
    }

    #[test]
    fn values_out_of_range_are_refused() {
        for bad in [
            r#"{"cpuWeight": 0}"#,
            r#"{"ioWeight": 10001}"#,
            r#"{"cpuWeight": 10001}"#,
            r#"{"cpuMax": 999}"#,
            r#"{"pidsMax": 0}"#,
            r#"{"memoryMax": -1}"#,
            r#"{"memoryLow": 1}"#,
        ] {
            assert!(serde_json::from_str::<Limits>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_caps_what_a_container_asks() {
        let asked = limits(r#"{"memoryMax": 4096, "cpuMax": 150000, "pidsMax": null}"#);
        let ceiling = limits(r#"{"memoryMax": 1024, "cpuMax": 200000, "pidsMax": 500}"#);
        let capped = asked.capped_by(&ceiling);
        assert_eq!(capped, limits(r#"{"memoryMax": 1024, "cpuMax": 150000, "pidsMax": 500}"#));
        assert_eq!(capped.controllers(), ["memory", "cpu", "pids"]);
    }

    #[test]
    fn only_the_limits_in_their_form_are_settings() {
        for (file, value) in
            [("memory.max", "1024"), ("cpu.max", "150000 100000"), ("io.weight", "100")]
        {
            check_setting(file, value).unwrap();
        }
        for (file, value) in [
            ("memory.max", "max"),
            ("memory.max", "1G"),
            ("cpu.max", "150000"),
            ("cpu.max", "150000 1000"),
            ("cpu.weight", "0"),
            ("devices.allow", "a"),
            ("memory.max", "1; reboot"),
        ] {
            assert!(check_setting(file, value).is_err(), "{file} = {value}");
        }
    }

    #[test]
    fn changes_lift_what_is_no_longer_set() {
        let old = limits(r#"{"memoryMax": 1024, "cpuWeight": 50}"#);
        let new = limits(r#"{"memoryMax": 2048, "pidsMax": 10}"#);
        assert_eq!(
            old.changes_to(&new),
            [
                ("memory.max", "2048".to_string()),
                ("cpu.weight", "100".to_string()),
                ("pids.max", "10".to_string())
            ]
        );
        let capped = limits(r#"{"cpuMax": 150000}"#);
        assert_eq!(capped.changes_to(&Limits::default()), [("cpu.max", "max 100000".to_string())]);
        assert_eq!(
            Limits::default().changes_to(&capped),
            [("cpu.max", "150000 100000".to_string())]
        );
        assert!(new.changes_to(&new).is_empty());
    }
}
