//! Deploy's progress: every step of every host is an [`Event`]; plain output prints one line
//! per host per step on stderr, `--json` one JSON object per line on stdout, and a terminal
//! gets one indicatif line per host instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Started,
    /// Still waiting (a periodic note of what for).
    Waiting,
    Done,
    /// Nothing to do: the host is at its closure with its secrets.
    Skipped,
    Failed,
}

/// One thing that happened to one host. `message` never holds a secret value.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub host: String,
    pub step: Step,
    pub state: State,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Seconds since the deploy started.
    pub elapsed: f64,
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Json,
    Terminal,
}

/// Where events go; shared by the hosts' threads.
pub struct Progress {
    mode: Mode,
    start: Instant,
    bars: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
    multi: indicatif::MultiProgress,
    /// Every event, for the summary and for tests.
    pub log: Mutex<Vec<Event>>,
}

/// The plain line of an event: `HOST  STEP  STATE  message`.
pub fn plain_line(e: &Event) -> String {
    let state = match e.state {
        State::Started => "…",
        State::Waiting => "waiting",
        State::Done => "ok",
        State::Skipped => "skipped",
        State::Failed => "FAILED",
    };
    let msg = if e.message.is_empty() { String::new() } else { format!("  {}", e.message) };
    format!("{:<16} {:<10} {state}{msg}", e.host, e.step.name())
}

impl Progress {
    pub fn new(mode: Mode, hosts: &[String]) -> Progress {
        let multi = indicatif::MultiProgress::new();
        let mut bars = BTreeMap::new();
        if mode == Mode::Terminal {
            for h in hosts {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix:16} {msg}").expect("valid template"));
                bar.set_prefix(h.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bars.insert(h.clone(), bar);
            }
        }
        Progress { mode, start: Instant::now(), bars: Mutex::new(bars), multi, log: Mutex::new(Vec::new()) }
    }

    pub fn emit(&self, host: &str, step: Step, state: State, message: impl Into<String>) {
        let e = Event {
            host: host.to_string(),
            step,
            state,
            message: crate::diag::visible(&message.into()).into_owned(),
            elapsed: (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        };
        match self.mode {
            Mode::Json => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", serde_json::to_string(&e).expect("serialises"));
                let _ = out.flush();
            }
            Mode::Plain => {
                let _ = writeln!(std::io::stderr().lock(), "{}", plain_line(&e));
            }
            Mode::Terminal => {
                let bars = self.bars.lock().expect("not poisoned");
                if let Some(bar) = bars.get(host) {
                    let text = plain_line(&e);
                    let text = text.split_once(' ').map(|(_, r)| r.trim_start().to_string()).unwrap_or(text);
                    if matches!(e.state, State::Failed) || (e.step == Step::Done && e.state != State::Started) {
                        bar.finish_with_message(text);
                    } else {
                        bar.set_message(text);
                    }
                } else {
                    let _ = self.multi.println(plain_line(&e));
                }
            }
        }
        self.log.lock().expect("not poisoned").push(e);
    }

    /// Stops the spinners (the lines stay).
    pub fn finish(&self) {
        for bar in self.bars.lock().expect("not poisoned").values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_host_step_and_state() {
        let e = Event { host: "web".into(), step: Step::Secrets, state: State::Done, message: "3 secrets".into(), elapsed: 1.0 };
        assert_eq!(plain_line(&e), "web              secrets    ok  3 secrets");
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#"{"host":"web","step":"secrets","state":"done","message":"3 secrets","elapsed":1.0}"#);
    }
}
