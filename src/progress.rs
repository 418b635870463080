//! What the user sees while `repro run` works.
//!
//! On a terminal: one bar for the pipeline (members finished / members to run) and one bar
//! per running stage, fed by the stage's progress events (phase = bar length and unit,
//! position, message; indicatif shows rate and ETA). Otherwise (a pipe, CI, a log file):
//! plain lines, one when a stage starts and ends and one per stage message, so logs show
//! e.g. `resumed from step 3`. `-v` adds phases and fresh/restored members; `-q` keeps
//! only errors and the final summary line is dropped.
//!
//! A line stdout cannot take does not stop the run: hours of training are not lost to a
//! closed pager or a full disk. A reader that went away is forgotten; any other failure
//! (a full disk) is kept, and `repro run` reports it when it ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::executor::Event;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Reporter {
    verbosity: Verbosity,
    multi: Option<MultiProgress>,
    main: Option<ProgressBar>,
    bars: HashMap<usize, ProgressBar>,
    /// The first failure to write a line to stdout, other than a reader that went away.
    output_error: RefCell<Option<io::Error>>,
}

impl Reporter {
    /// Bars when stdout is a terminal (and not quiet), plain lines otherwise.
    pub fn new(verbosity: Verbosity) -> Reporter {
        let bars = verbosity != Verbosity::Quiet && std::io::stdout().is_terminal();
        let multi =
            bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10)));
        Reporter {
            verbosity,
            multi,
            main: None,
            bars: HashMap::new(),
            output_error: RefCell::new(None),
        }
    }

    /// Starts the pipeline bar with the number of members that may run.
    pub fn begin(&mut self, to_run: u64) {
        if let Some(m) = &self.multi {
            let b = m.add(ProgressBar::new(to_run));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} stages  {elapsed_precise} {msg}",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            b.set_prefix("pipeline");
            b.enable_steady_tick(Duration::from_millis(250));
            self.main = Some(b);
        }
    }

    /// Adds members found to run after a re-plan.
    pub fn grow(&mut self, more: u64) {
        if let Some(b) = &self.main {
            b.inc_length(more);
        }
    }

    /// A log line (shown unless quiet).
    pub fn line(&self, msg: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            // A closed stdout (`repro run | head`) or a full disk must not stop the run.
            None => {
                if let Err(e) = crate::output::write(format_args!("{msg}\n")) {
                    self.output_failed(e);
                }
            }
        }
    }

    /// Keeps the first failure to write the output, unless the reader just went away.
    pub fn output_failed(&self, e: io::Error) {
        let mut kept = self.output_error.borrow_mut();
        if e.kind() != io::ErrorKind::BrokenPipe && kept.is_none() {
            *kept = Some(e);
        }
    }

    /// The first failure to write the output that is worth reporting, if any.
    pub fn output_error(&self) -> Option<String> {
        self.output_error.borrow().as_ref().map(|e| e.to_string())
    }

    /// A line shown only with `-v`.
    pub fn detail(&self, msg: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.line(msg);
        }
    }

    /// An error line: always shown, on stderr.
    pub fn error(&self, msg: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }),
            None => {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
        }
    }

    pub fn started(&mut self, id: usize, member: &str, why: &str, pid: u32) {
        if self.verbosity == Verbosity::Verbose {
            self.line(&format!("run      {member}  ({why}; pid {pid})"));
        } else {
            self.line(&format!("run      {member}  ({why})"));
        }
        if let Some(m) = &self.multi {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(ProgressStyle::with_template("  {spinner} {prefix} {msg}").unwrap());
            b.set_prefix(member.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            self.bars.insert(id, b);
        }
    }

    pub fn event(&mut self, id: usize, member: &str, ev: &Event) {
        match ev {
            Event::Phase { name, unit, total } => {
                if let Some(b) = self.bars.get(&id) {
                    b.set_length(*total);
                    b.set_position(0);
                    b.reset_eta();
                    b.set_style(
                        ProgressStyle::with_template(&format!(
                            "  {{prefix}} {name} [{{bar:25}}] {{pos}}/{{len}} {unit}  {{per_sec}} eta {{eta}}  {{msg}}"
                        ))
                        .unwrap()
                        .progress_chars("=> "),
                    );
                }
                self.detail(&format!("         {member}: {name} ({total} {unit})"));
            }
            Event::Position { done } => {
                if let Some(b) = self.bars.get(&id) {
                    b.set_position(*done);
                }
            }
            Event::Message { text } => match self.bars.get(&id) {
                Some(b) => {
                    b.set_message(text.clone());
                    if self.verbosity == Verbosity::Verbose {
                        self.line(&format!("         {member}: {text}"));
                    }
                }
                None => self.line(&format!("         {member}: {text}")),
            },
            // Bookkeeping of the executor, nothing to show.
            Event::ProcessGroup { .. } => {}
        }
    }

    /// A stage finished (any outcome); `summary` is e.g. `done in 1.2s`.
    pub fn finished(&mut self, id: usize, line: Option<&str>) {
        if let Some(b) = self.bars.remove(&id) {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&b);
            }
        }
        if let Some(b) = &self.main {
            b.inc(1);
        }
        if let Some(l) = line {
            self.line(l);
        }
    }

    pub fn end(&mut self) {
        for (_, b) in self.bars.drain() {
            b.finish_and_clear();
        }
        if let Some(b) = self.main.take() {
            b.finish_and_clear();
        }
    }
}
