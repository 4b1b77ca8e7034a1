//! Resource limits' part of a container file and of the host file
//! (`limits`, normalized by lib/spec.nix): each a number of its unit,
//! checked as it is read, with the cgroup2 file it is written to.

use serde::{Deserialize, Serialize};

/// cpu.max's period in microseconds (lib/spec.nix's cpuPeriod).
pub const CPU_PERIOD: u64 = 100_000;

/// The limits, each a number of lib/spec.nix's units or unset.
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
    /// cpu.max's quota per CPU_PERIOD, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<CpuQuota>,
    /// pids.max.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<Positive>,
    /// io.weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<Weight>,
}

/// The limits as a person writes them: the host module's options
/// (`nixcloud.containers.limits`) and so the host file's `limits`, which is
/// also a container file's `limits` before lib/spec.nix normalizes it:
/// grouped by controller, sizes in bytes or with a unit, CPUs as a number
/// of CPUs; each checked as lib/spec.nix's limitTypes check it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenLimits {
    #[serde(default)]
    memory: WrittenMemory,
    #[serde(default)]
    cpu: WrittenCpu,
    #[serde(default)]
    pids: WrittenCount,
    #[serde(default)]
    io: WrittenWeight,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenMemory {
    #[serde(default)]
    max: Option<Size>,
    #[serde(default)]
    high: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenCpu {
    #[serde(default)]
    weight: Option<Weight>,
    #[serde(default)]
    max: Option<Cpus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenCount {
    #[serde(default)]
    max: Option<Positive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenWeight {
    #[serde(default)]
    weight: Option<Weight>,
}

/// Reads limits as the host file writes them (`WrittenLimits`), for
/// `#[serde(deserialize_with)]`.
pub fn deserialize_written<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Limits, D::Error> {
    let written = WrittenLimits::deserialize(deserializer)?;
    Ok(Limits {
        memory_max: written.memory.max.map(|size| size.0),
        memory_high: written.memory.high.map(|size| size.0),
        cpu_weight: written.cpu.weight,
        cpu_max: written.cpu.max.map(|cpus| cpus.0),
        pids_max: written.pids.max,
        io_weight: written.io.weight,
    })
}

/// A size as lib/spec.nix takes one: a positive number of bytes, or a
/// string of 1 to 7 digits and K, M, G or T (powers of 1024), as "512M".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub Positive);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0 .0
    }

    fn parse(text: &str) -> Option<Size> {
        let unit = match text.chars().last()? {
            'K' => 1 << 10,
            'M' => 1 << 20,
            'G' => 1 << 30,
            'T' => 1 << 40,
            _ => return None,
        };
        let digits = &text[..text.len() - 1];
        let number_like = (1..=7).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit());
        let number: u64 = digits.parse().ok().filter(|_| number_like)?;
        Some(Size(Positive(number * unit)))
    }
}

const SIZE_EXPECTED: &str =
    "a size: a positive number of bytes, or a string like \"512M\" or \"2G\" (K, M, G, T: powers of 1024)";

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Size, E> {
                Positive::try_from(value).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Size, E> {
                Err(E::custom(format!("{value} is not {SIZE_EXPECTED}")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Size, E> {
                Size::parse(text)
                    .ok_or_else(|| E::custom(format!("{text:?} is not {SIZE_EXPECTED}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A number of CPUs, from 0.01 to 10000, as the quota per period it is
/// (lib/spec.nix's cpus: rounded to the microsecond).
#[derive(Debug, Clone, Copy)]
struct Cpus(CpuQuota);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cpus, D::Error> {
        let cpus = f64::deserialize(deserializer)?;
        if !(0.01..=10_000.0).contains(&cpus) {
            return Err(serde::de::Error::custom(format!(
                "{cpus} is not a number of CPUs from 0.01 up, like 1 or 1.5"
            )));
        }
        let quota = (cpus * CPU_PERIOD as f64 + 0.5).floor() as u64;
        CpuQuota::try_from(quota).map(Cpus).map_err(serde::de::Error::custom)
    }
}

/// What a limit is called: the cgroup2 file (and the LXC key after
/// `lxc.cgroup2.`), the controller it needs, and the value that lifts it.
pub struct Key {
    pub file: &'static str,
    pub controller: &'static str,
    pub unlimited: &'static str,
}

const MEMORY_MAX: Key = Key { file: "memory.max", controller: "memory", unlimited: "max" };
const MEMORY_HIGH: Key = Key { file: "memory.high", controller: "memory", unlimited: "max" };
const CPU_WEIGHT: Key = Key { file: "cpu.weight", controller: "cpu", unlimited: "100" };
const CPU_MAX: Key = Key { file: "cpu.max", controller: "cpu", unlimited: "max 100000" };
const PIDS_MAX: Key = Key { file: "pids.max", controller: "pids", unlimited: "max" };
const IO_WEIGHT: Key = Key { file: "io.weight", controller: "io", unlimited: "100" };

impl Limits {
    /// Each limit with its key and its value as the cgroup2 file takes it
    /// (None: unset).
    pub fn entries(&self) -> [(&'static Key, Option<String>); 6] {
        let text = |value: Option<Positive>| value.map(|v| v.0.to_string());
        let weight = |value: Option<Weight>| value.map(|v| v.0.to_string());
        [
            (&MEMORY_MAX, text(self.memory_max)),
            (&MEMORY_HIGH, text(self.memory_high)),
            (&CPU_WEIGHT, weight(self.cpu_weight)),
            (&CPU_MAX, self.cpu_max.map(|quota| format!("{} {CPU_PERIOD}", quota.0))),
            (&PIDS_MAX, text(self.pids_max)),
            (&IO_WEIGHT, weight(self.io_weight)),
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
            .map(|(key, _)| key.controller)
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
            .map(|(_, (key, new))| (key.file, new.unwrap_or_else(|| key.unlimited.to_string())))
            .collect()
    }
}

/// Fails unless `value` is what lib/lxc-config.nix writes for the cgroup2
/// file `file` (`lxc.cgroup2.<file>`): one of the limits, in its form.
pub fn check_setting(file: &str, value: &str) -> Result<(), String> {
    let number = |text: &str| text.parse::<u64>().map_err(|_| format!("{text:?} is not a number"));
    match file {
        "memory.max" | "memory.high" | "pids.max" => Positive::try_from(number(value)?).map(drop),
        "cpu.weight" | "io.weight" => Weight::try_from(number(value)?).map(drop),
        "cpu.max" => match value.split_once(' ') {
            Some((quota, period)) if period == CPU_PERIOD.to_string() => {
                CpuQuota::try_from(number(quota)?).map(drop)
            }
            _ => Err(format!("{value:?} is not \"<quota> {CPU_PERIOD}\"")),
        },
        _ => Err(format!("lxc.cgroup2.{file} is not a limit nixcloud-container sets")),
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
    /// A cgroup2 weight.
    Weight(u16), 1, 10_000, "a weight from 1 to 10000"
);
checked_number!(
    /// A CPU quota per period: at least 1 ms (the kernel's least).
    CpuQuota(u64), 1000, u64::MAX, "a quota of at least 1000 microseconds"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> Limits {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_period_is_lib_specs() {
        assert!(include_str!("../../../../lib/spec.nix")
            .contains(&format!("cpuPeriod = {CPU_PERIOD};")));
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
        assert!(new.changes_to(&new).is_empty());
    }
}
