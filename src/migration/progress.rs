//! What `migrate` shows while it runs and what it leaves behind: a progress line on a
//! terminal (keys done, keys/s, ETA), plain log lines otherwise, and the checkpoint
//! file `--resume` continues from.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the terminal line is redrawn, and how often a plain line is written.
const TTY_EVERY: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    tty: bool,
    started: Instant,
    last: Option<Instant>,
    /// Keys in the source (an upper bound when only a prefix is copied).
    total: Option<u64>,
    exact: bool,
    /// Keys done before this run (a resumed job).
    before: u64,
}

impl Progress {
    pub fn new(total: Option<u64>, exact: bool, before: u64) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            total,
            exact,
            before,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Keys per second in this run.
    pub fn rate(&self, done: u64) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        done.saturating_sub(self.before) as f64 / secs
    }

    /// `done` keys so far (this run and before it).
    pub fn update(&mut self, done: u64) {
        let every = if self.tty { TTY_EVERY } else { LOG_EVERY };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = self.line(done);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "migrate: {line}");
        }
        let _ = err.flush();
    }

    fn line(&self, done: u64) -> String {
        let rate = self.rate(done);
        let total = match self.total {
            Some(t) if self.exact => format!("/{t}"),
            Some(t) => format!("/~{t}"),
            None => String::new(),
        };
        let eta = match self.total {
            Some(t) if rate > 0.0 && t > done => {
                format!("ETA {}s", ((t - done) as f64 / rate).ceil() as u64)
            }
            Some(_) => "ETA 0s".to_owned(),
            None => "ETA ?".to_owned(),
        };
        format!("{done}{total} keys  {rate:.0} keys/s  {eta}")
    }

    /// End the terminal line.
    pub fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
    }
}

/// Where a backfill stands: enough to continue it with `--resume`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the job (stores and scope): a checkpoint of another job is refused.
    pub job: String,
    /// The SCAN cursor to continue from ("0" with `done`).
    pub cursor: String,
    pub counts: Counts,
    pub done: bool,
}

/// What a backfill did with the keys it scanned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub scanned: u64,
    pub copied: u64,
    /// Already in the target (dual-write got there first): left as they are.
    pub existing: u64,
    /// Deleted or expired between SCAN and DUMP.
    pub gone: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.scanned += o.scanned;
        self.copied += o.copied;
        self.existing += o.existing;
        self.gone += o.gone;
        self.failed += o.failed;
    }
}

impl Checkpoint {
    pub fn render(&self) -> String {
        let c = &self.counts;
        format!(
            "# resp-sidecar migrate checkpoint: continue with --resume\njob={}\ncursor={}\nscanned={}\ncopied={}\nexisting={}\ngone={}\nfailed={}\ndone={}\n",
            self.job, self.cursor, c.scanned, c.copied, c.existing, c.gone, c.failed, self.done
        )
    }

    pub fn parse(text: &str) -> Option<Checkpoint> {
        let mut cp = Checkpoint::default();
        let mut saw_cursor = false;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (k, v) = line.split_once('=')?;
            let n = || v.parse::<u64>().ok();
            match k {
                "job" => cp.job = v.to_owned(),
                "cursor" => {
                    cp.cursor = v.to_owned();
                    saw_cursor = true;
                }
                "scanned" => cp.counts.scanned = n()?,
                "copied" => cp.counts.copied = n()?,
                "existing" => cp.counts.existing = n()?,
                "gone" => cp.counts.gone = n()?,
                "failed" => cp.counts.failed = n()?,
                "done" => cp.done = v == "true",
                _ => return None,
            }
        }
        saw_cursor.then_some(cp)
    }

    /// Write atomically (a temp file renamed over the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }

    pub fn load(path: &Path) -> Result<Checkpoint, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read checkpoint {}: {e}", path.display()))?;
        Checkpoint::parse(&text)
            .ok_or_else(|| format!("{} is not a migrate checkpoint", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips() {
        let cp = Checkpoint {
            job: "a|b|db 3 -> prefix session:".into(),
            cursor: "1234".into(),
            counts: Counts {
                scanned: 10,
                copied: 7,
                existing: 2,
                gone: 1,
                failed: 0,
            },
            done: false,
        };
        assert_eq!(Checkpoint::parse(&cp.render()), Some(cp));
        assert_eq!(Checkpoint::parse("nonsense"), None);
    }

    #[test]
    fn progress_line_has_rate_and_eta() {
        let p = Progress::new(Some(100), true, 0);
        let line = p.line(50);
        assert!(line.starts_with("50/100 keys"), "{line}");
        assert!(line.contains("keys/s") && line.contains("ETA"), "{line}");
    }
}
