//! The formats of values that reach LXC's config or a command line: the
//! regular expressions of lib/formats.json, which lib/spec.nix checks
//! container files with too, so that both sides apply the same rules.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{LazyLock, OnceLock};

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

const FORMATS_JSON: &str = include_str!("../../lib/formats.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ContainerName,
    InterfaceName,
    DnsLabel,
    AbsolutePath,
    RelativePath,
}

struct Compiled {
    regex: Regex,
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Definition {
    pattern: String,
    description: String,
}

/// lib/formats.json, read once; each pattern is compiled only when its
/// format is first used (compiling all of them took about a third of a
/// millisecond of every command's start, `absolutePath` the most).
static DEFINITIONS: LazyLock<BTreeMap<String, Definition>> =
    LazyLock::new(|| serde_json::from_str(FORMATS_JSON).expect("lib/formats.json is valid"));

/// A pattern of lib/formats.json as Nix's builtins.match applies it: to the
/// whole string. regex-lite, not regex: it compiles these patterns five to
/// ten times faster (regex built automata for all of Unicode for
/// `absolutePath` and 62 copies of a class for a container name: a third
/// of a millisecond of every command), and a command matches few strings.
fn compile(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("lib/formats.json has valid patterns")
}

/// Every format, in the order of the enum (its index into COMPILED).
const ALL: [Format; 5] = [
    Format::ContainerName,
    Format::InterfaceName,
    Format::DnsLabel,
    Format::AbsolutePath,
    Format::RelativePath,
];
static COMPILED: [OnceLock<Compiled>; ALL.len()] = [const { OnceLock::new() }; ALL.len()];

impl Format {
    fn key(self) -> &'static str {
        match self {
            Format::ContainerName => "containerName",
            Format::InterfaceName => "interfaceName",
            Format::DnsLabel => "dnsLabel",
            Format::AbsolutePath => "absolutePath",
            Format::RelativePath => "relativePath",
        }
    }

    fn compiled(self) -> &'static Compiled {
        COMPILED[self as usize].get_or_init(|| {
            let definition =
                DEFINITIONS.get(self.key()).expect("every format is in lib/formats.json");
            let regex = compile(&definition.pattern);
            Compiled { regex, description: definition.description.clone() }
        })
    }

    pub fn matches(self, text: &str) -> bool {
        self.compiled().regex.is_match(text)
    }

    /// What the format allows, in words.
    pub fn description(self) -> &'static str {
        &self.compiled().description
    }
}

/// A value shown in an error: quoted and escaped, so that it stays on one
/// line, and cut short.
pub fn show(text: &str) -> String {
    let quoted = format!("{text:?}");
    if quoted.chars().count() > 62 {
        format!("{}...\"", quoted.chars().take(60).collect::<String>())
    } else {
        quoted
    }
}

/// A string type whose values have a format of lib/formats.json, checked
/// when it is made (and so when it is read from JSON).
macro_rules! formatted_string {
    ($(#[$doc:meta])* $name:ident, $format:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<$name, String> {
                if $format.matches(&text) {
                    Ok($name(text))
                } else {
                    Err(format!("{} is not {}", show(&text), $format.description()))
                }
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

formatted_string!(
    /// The name of a network interface (a bridge) as Linux and LXC take it.
    InterfaceName,
    Format::InterfaceName
);

formatted_string!(
    /// A container's name, as a container file names another (`network.peers`).
    ContainerName,
    Format::ContainerName
);

formatted_string!(
    /// One label of a host name (the host's suffix of its containers' names).
    DnsLabel,
    Format::DnsLabel
);

formatted_string!(
    /// An absolute path without `.` or `..` parts.
    AbsolutePath,
    Format::AbsolutePath
);

formatted_string!(
    /// A relative path without `.` or `..` parts.
    RelativePath,
    Format::RelativePath
);

/// The prefix length of a subnet that has room for a host and containers
/// (lib/ranges.json: 31 and 32 leave none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PrefixLength(u8);

impl PrefixLength {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for PrefixLength {
    type Error = String;

    fn try_from(length: u8) -> Result<PrefixLength, String> {
        let range = crate::ranges::RANGES.prefix_length;
        if range.contains(length.into()) {
            Ok(PrefixLength(length))
        } else {
            Err(format!(
                "prefix length {length} is not an integer from {} to {}",
                range.min, range.max
            ))
        }
    }
}

impl From<PrefixLength> for u8 {
    fn from(length: PrefixLength) -> u8 {
        length.0
    }
}

impl fmt::Display for PrefixLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A size as people write it: "512 MiB", "6 GiB", "1.5 GiB".
pub fn show_size(bytes: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value.fract() == 0.0 {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_the_full_regex_engine_matches_them() {
        let texts = [
            "/var/lib/größe",
            "/ä/.ü/..é",
            "/x/\u{85}",
            "/x/\u{7f}",
            "/a\nb",
            "/ok/./no",
            "/ok/../no",
            "/ok//no",
            "ü/data",
            "üblich",
            "eth0",
            "ethé0",
            "web-1",
            "-web",
            "web-",
            "a.b",
            "𝔁y",
            "10.101.0.5",
            "256.1.1.1",
            "",
        ];
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        for (key, definition) in DEFINITIONS.iter() {
            let full = regex::Regex::new(&format!("^(?:{})$", definition.pattern)).unwrap();
            let lite = compile(&definition.pattern);
            for text in texts.iter().copied().chain([long.as_str(), too_long.as_str()]) {
                assert_eq!(lite.is_match(text), full.is_match(text), "{key}: {text:?}");
            }
        }
    }

    #[test]
    fn every_format_has_its_place_and_a_valid_pattern() {
        for (index, format) in ALL.into_iter().enumerate() {
            assert_eq!(format as usize, index);
            // Compiles it: a bad pattern in lib/formats.json panics here.
            assert!(!format.description().is_empty());
        }
    }

    #[test]
    fn interface_names_as_linux_takes_them() {
        for ok in ["br0", "myOwnBridge", "brNC-hostonly", "br.100", "_x", "0123456789abcde"] {
            assert!(InterfaceName::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../br0",
            "br0/",
            "br 0",
            "br2\nlxc.hook.pre-start = /x",
            "br\t0",
            "0123456789abcdef",
            "-br",
            ".br",
            "br:0",
            "bré",
        ] {
            let err = InterfaceName::try_from(bad.to_string()).unwrap_err();
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn nix_takes_the_ipv4_addresses_that_rust_parses() {
        // lib/spec.nix checks addresses with the pattern, this helper parses
        // them as Ipv4Addr: both must accept the same strings.
        let pattern = compile(&DEFINITIONS["ipv4Address"].pattern);
        for text in [
            "10.101.0.5",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4 ",
            "1.2.3.4\n",
            "1.2.3.4/16",
            "::1",
            "1.2.3.04",
            "",
        ] {
            let parsed = text.parse::<std::net::Ipv4Addr>().is_ok();
            assert_eq!(pattern.is_match(text), parsed, "{text:?}");
        }
    }

    #[test]
    fn prefix_lengths_leave_room_for_hosts() {
        assert!(PrefixLength::try_from(0).is_err());
        assert!(PrefixLength::try_from(1).is_ok());
        assert!(PrefixLength::try_from(30).is_ok());
        assert!(PrefixLength::try_from(31).is_err());
        assert_eq!(PrefixLength::try_from(16).unwrap().get(), 16);
    }

    #[test]
    fn shown_values_stay_on_one_short_line() {
        assert_eq!(show("a\nb"), "\"a\\nb\"");
        assert!(show(&"x".repeat(500)).len() < 70);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(show_size(256 << 20), "256 MiB");
        assert_eq!(show_size(3 << 29), "1.5 GiB");
        assert_eq!(show_size(512), "512 bytes");
    }
}
