//! Nix's log as it comes, in its machine-readable form (`--log-format
//! internal-json`, lines of `@nix {json}` on stderr): on a terminal one
//! progress line of what is being built or fetched and how far along; with
//! -v Nix's messages and build logs as they come; and for a failed build the
//! last lines of its log. Whatever is shown, the plain text of Nix's
//! messages is kept for the error that a failure becomes.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::settings::Verbosity;

/// The arguments that make Nix log this way.
pub const LOG_FORMAT: [&str; 2] = ["--log-format", "internal-json"];

/// How many lines of a failed build's log are shown.
const FAILED_LOG_LINES: usize = 10;

// Nix's activity and result types (src/libutil/logging.hh).
const ACT_COPY_PATH: u64 = 100;
const ACT_FILE_TRANSFER: u64 = 101;
const ACT_BUILDS: u64 = 104;
const ACT_BUILD: u64 = 105;
const ACT_SUBSTITUTE: u64 = 108;
const RES_BUILD_LOG_LINE: u64 = 101;
const RES_PROGRESS: u64 = 105;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum Event {
    Start {
        id: u64,
        #[serde(rename = "type")]
        kind: u64,
        #[serde(default)]
        text: String,
        #[serde(default)]
        fields: Vec<serde_json::Value>,
    },
    Stop {
        id: u64,
    },
    Result {
        id: u64,
        #[serde(rename = "type")]
        kind: u64,
        #[serde(default)]
        fields: Vec<serde_json::Value>,
    },
    Msg {
        #[serde(default)]
        msg: String,
    },
}

/// Something being built, fetched or copied.
struct Activity {
    /// What the progress line calls it: "building web-system".
    what: String,
    started: Instant,
    log: VecDeque<String>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<u64, Activity>,
    /// Builds that ended, by derivation, with the end of their log.
    finished_logs: BTreeMap<String, VecDeque<String>>,
    /// The derivation of each build activity.
    derivations: BTreeMap<u64, String>,
    /// The activity that counts the builds, and the builds done and expected.
    builds: Option<u64>,
    progress: Option<(u64, u64)>,
    /// Nix's messages as plain text, for the error of a failure.
    messages: String,
    /// The progress line on the terminal now, if any.
    drawn: Option<String>,
}

/// The log of one Nix command.
pub struct NixLog {
    verbosity: Verbosity,
    terminal: bool,
    state: Arc<Mutex<State>>,
    ticker: Option<(std::thread::JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>)>,
}

impl NixLog {
    pub fn new(verbosity: Verbosity) -> NixLog {
        let terminal = verbosity == Verbosity::Normal && std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(State::default()));
        // The elapsed time moves on while a build prints nothing.
        let ticker = terminal.then(|| {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (state, stop) = (state.clone(), done.clone());
            let handle = std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    draw(&mut state.lock().expect("the log's lock is not poisoned"));
                }
            });
            (handle, done)
        });
        NixLog { verbosity, terminal, state, ticker }
    }

    /// Takes one line of Nix's stderr.
    pub fn feed(&self, line: &str) {
        let mut state = self.state.lock().expect("the log's lock is not poisoned");
        let Some(event) =
            line.strip_prefix("@nix ").and_then(|json| serde_json::from_str(json).ok())
        else {
            // Not Nix's own (a builder that writes to stderr directly).
            state.messages.push_str(line);
            state.messages.push('\n');
            if self.verbosity == Verbosity::Verbose {
                eprintln!("{line}");
            }
            return;
        };
        match event {
            Event::Msg { msg } => {
                let plain = strip_ansi(&msg);
                if self.verbosity == Verbosity::Verbose {
                    eprintln!("{plain}");
                }
                state.messages.push_str(&plain);
                state.messages.push('\n');
            }
            Event::Start { id, kind, text, fields } => {
                let first = fields.first().and_then(|f| f.as_str()).unwrap_or("");
                let what = match kind {
                    ACT_BUILD => {
                        state.derivations.insert(id, first.to_string());
                        format!("building {}", store_name(first))
                    }
                    ACT_SUBSTITUTE | ACT_COPY_PATH => format!("fetching {}", store_name(first)),
                    ACT_FILE_TRANSFER => format!("downloading {first}"),
                    ACT_BUILDS => {
                        state.builds = Some(id);
                        return;
                    }
                    _ => return,
                };
                if self.verbosity == Verbosity::Verbose && !text.is_empty() {
                    eprintln!("{}", strip_ansi(&text));
                }
                state
                    .running
                    .insert(id, Activity { what, started: Instant::now(), log: VecDeque::new() });
            }
            Event::Result { id, kind, fields } => match kind {
                RES_BUILD_LOG_LINE => {
                    let line = strip_ansi(fields.first().and_then(|f| f.as_str()).unwrap_or(""));
                    if self.verbosity == Verbosity::Verbose {
                        eprintln!("{line}");
                    }
                    if let Some(activity) = state.running.get_mut(&id) {
                        if activity.log.len() == FAILED_LOG_LINES {
                            activity.log.pop_front();
                        }
                        activity.log.push_back(line);
                    }
                }
                RES_PROGRESS if state.builds == Some(id) => {
                    let number = |i: usize| fields.get(i).and_then(|f| f.as_u64()).unwrap_or(0);
                    if number(1) > 0 {
                        state.progress = Some((number(0), number(1)));
                    }
                }
                _ => {}
            },
            Event::Stop { id } => {
                if let Some(activity) = state.running.remove(&id) {
                    if let Some(derivation) = state.derivations.remove(&id) {
                        state.finished_logs.insert(derivation, activity.log);
                    }
                }
            }
        }
        if self.terminal {
            draw(&mut state);
        }
    }

    /// Clears the progress line. Returns Nix's messages as plain text, with
    /// the end of a failed build's log after the message that names it, as
    /// Nix writes them on a terminal ("> line").
    pub fn finish(mut self) -> String {
        if let Some((handle, stop)) = self.ticker.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = handle.join();
        }
        let mut state = self.state.lock().expect("the log's lock is not poisoned");
        if state.drawn.take().is_some() {
            eprint!("\r\x1b[K");
        }
        let mut text = String::new();
        for line in state.messages.lines() {
            text.push_str(line);
            text.push('\n');
            if let Some(log) = failed_derivation(line).and_then(|d| state.finished_logs.get(d)) {
                if self.verbosity != Verbosity::Verbose && !log.is_empty() {
                    show_failed_log(failed_derivation(line).unwrap_or(""), log);
                }
                for logged in log {
                    text.push_str(&format!("> {logged}\n"));
                }
            }
        }
        text
    }
}

/// The derivation that a message says failed to build.
fn failed_derivation(message: &str) -> Option<&str> {
    let rest = message.split("builder for '").nth(1)?;
    rest.split('\'').next()
}

/// The end of a failed build's log, on stderr, before the error it becomes.
fn show_failed_log(derivation: &str, log: &VecDeque<String>) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "the last lines of the build of {}:", store_name(derivation));
    for line in log {
        let _ = writeln!(out, "  > {line}");
    }
}

/// The one progress line: what runs, how far along, for how long.
fn draw(state: &mut State) {
    let Some(activity) = state.running.values().next() else {
        if state.drawn.take().is_some() {
            eprint!("\r\x1b[K");
        }
        return;
    };
    let mut line = activity.what.clone();
    if state.running.len() > 1 {
        line.push_str(&format!(" and {} more", state.running.len() - 1));
    }
    if let Some((done, expected)) = state.progress {
        line.push_str(&format!(" ({done} of {expected} built)"));
    }
    line.push_str(&format!(", {}s", activity.started.elapsed().as_secs()));
    if let Some(last) = activity.log.back() {
        line.push_str(": ");
        line.push_str(last);
    }
    let width = terminal_width();
    let shown: String = line.chars().take(width.saturating_sub(1)).collect();
    if state.drawn.as_ref() == Some(&shown) {
        return;
    }
    let mut out = std::io::stderr().lock();
    let _ = write!(out, "\r\x1b[K{shown}");
    let _ = out.flush();
    state.drawn = Some(shown);
}

fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|size| usize::from(size.ws_col))
        .ok()
        .filter(|&columns| columns > 0)
        .unwrap_or(80)
}

/// `/nix/store/<hash>-<name>.drv` -> `<name>`.
fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = base.split_once('-').map_or(base, |(_, name)| name);
    name.strip_suffix(".drv").unwrap_or(name)
}

/// Text without the terminal colour codes Nix puts in its messages.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_builds_log_follows_its_error() {
        let log = NixLog::new(Verbosity::Quiet);
        for line in [
            r#"@nix {"action":"msg","level":3,"msg":"this derivation will be built:"}"#,
            r#"@nix {"action":"start","fields":["/nix/store/aaaa-web-system.drv","",1,1],"id":5,"level":3,"text":"building","type":105}"#,
            r#"@nix {"action":"result","fields":["compiling"],"id":5,"type":101}"#,
            r#"@nix {"action":"result","fields":["the system has no init"],"id":5,"type":101}"#,
            r#"@nix {"action":"stop","id":5}"#,
            "@nix {\"action\":\"msg\",\"level\":0,\"msg\":\"\\u001b[31;1merror:\\u001b[0m builder for '\\u001b[35;1m/nix/store/aaaa-web-system.drv\\u001b[0m' failed with exit code 1\"}",
        ] {
            log.feed(line);
        }
        assert_eq!(
            log.finish(),
            "this derivation will be built:\nerror: builder for '/nix/store/aaaa-web-system.drv' failed with exit code 1\n> compiling\n> the system has no init\n"
        );
    }

    #[test]
    fn lines_that_are_not_nixs_are_kept() {
        let log = NixLog::new(Verbosity::Quiet);
        log.feed("error: something plain");
        assert_eq!(log.finish(), "error: something plain\n");
    }

    #[test]
    fn store_names_and_colours() {
        assert_eq!(store_name("/nix/store/0123-tiny-system-2.drv"), "tiny-system-2");
        assert_eq!(strip_ansi("\x1b[31;1merror:\x1b[0m x"), "error: x");
    }
}
