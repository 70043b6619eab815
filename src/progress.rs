//! Progress of long work. On a terminal: indicatif bars, redrawn in place (a sweep's overall bar above
//! the current stage's steps). Anywhere else (output piped to a log, nohup, a batch job): plain lines
//! on stderr, one per bar every `FLOWPRIOR_PROGRESS_EVERY` seconds (default 30), with no cursor
//! movement or colour, e.g. `[progress 01:02:03] toy_align seed=1 align_lr=0.01 | align moons
//! 300/1000 (30%) 41.2/s eta 17s`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Environment variable: seconds between two plain progress reports when stderr is not a terminal.
pub const PROGRESS_EVERY_ENV: &str = "FLOWPRIOR_PROGRESS_EVERY";
const DEFAULT_EVERY_S: f64 = 30.0;

/// Whether progress is drawn as bars (stderr is a terminal) rather than written as plain lines.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Every progress bar of the process, drawn together.
pub fn progress() -> &'static indicatif::MultiProgress {
    static PROGRESS: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    PROGRESS.get_or_init(|| {
        if on_terminal() {
            indicatif::MultiProgress::new()
        } else {
            // Frames are rendered at most twice a second; PlainLines writes one every interval.
            indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::term_like_with_hz(
                    Box::new(PlainLines::new(report_every())),
                    2,
                ),
            )
        }
    })
}

/// Hides this process's bars when a parent draws them (sweep worker processes on a terminal); on a
/// log, every process reports its own lines.
pub fn hide_progress() {
    if on_terminal() {
        progress().set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
}

/// What the bars of this process are working for (a sweep's stage and grid point), shown before
/// each bar's own label.
static CONTEXT: Mutex<String> = Mutex::new(String::new());

/// Sets the context shown before every bar created from now on (empty: none).
pub fn set_context(text: &str) {
    if let Ok(mut c) = CONTEXT.lock() {
        *c = text.to_string();
    }
}

fn context() -> String {
    CONTEXT.lock().map(|c| c.clone()).unwrap_or_default()
}

/// A progress bar for `n` steps labelled `what` (after the current context).
pub fn progress_bar(n: u64, what: &str) -> indicatif::ProgressBar {
    let bar = progress().add(indicatif::ProgressBar::new(n));
    let template = if on_terminal() {
        "{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
    } else {
        "{msg} {pos}/{len} ({percent}%) {per_sec} eta {eta}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ctx = context();
    bar.set_message(if ctx.is_empty() {
        what.to_string()
    } else {
        format!("{ctx} | {what}")
    });
    bar
}

fn report_every() -> Duration {
    let secs = std::env::var(PROGRESS_EVERY_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(DEFAULT_EVERY_S);
    Duration::from_secs_f64(secs)
}

/// A draw target for logs: collects the lines of each frame and writes them as plain lines at most
/// once per interval (the first frame at once).
#[derive(Debug)]
struct PlainLines {
    every: Duration,
    state: Mutex<PlainState>,
}

#[derive(Debug, Default)]
struct PlainState {
    frame: Vec<String>,
    last: Option<Instant>,
}

impl PlainLines {
    fn new(every: Duration) -> Self {
        PlainLines {
            every,
            state: Mutex::new(PlainState::default()),
        }
    }

    /// The frame's lines if one is due now (then the frame starts over).
    fn take_due(&self, now: Instant) -> Vec<String> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        let frame = std::mem::take(&mut s.frame);
        let due = s.last.is_none_or(|t| now.duration_since(t) >= self.every);
        if due && !frame.is_empty() {
            s.last = Some(now);
            frame
        } else {
            Vec::new()
        }
    }
}

impl indicatif::TermLike for PlainLines {
    fn width(&self) -> u16 {
        // Wide enough that no line wraps: the filler after each line is trimmed anyway.
        400
    }

    fn height(&self) -> u16 {
        200
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let text = s.trim();
        if !text.is_empty()
            && let Ok(mut st) = self.state.lock()
        {
            st.frame.push(text.to_string());
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let lines = self.take_due(Instant::now());
        if lines.is_empty() {
            return Ok(());
        }
        let stamp = crate::util::format_utc(crate::util::now_unix());
        let clock = stamp.get(11..).unwrap_or(&stamp);
        // One write for the whole block: the sweep's workers share the parent's stderr, and a line
        // written piece by piece (as `writeln!` on unbuffered stderr does) interleaves with theirs.
        std::io::stderr()
            .lock()
            .write_all(render(clock, &lines).as_bytes())
    }
}

/// `[progress CLOCK] LINE`, one per line, as one string.
fn render(clock: &str, lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("[progress {clock}] {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;

    #[test]
    fn a_block_of_progress_lines_is_rendered_whole() {
        let lines = vec!["run 1 a".to_string(), "run 2 b".to_string()];
        assert_eq!(
            render("01:02:03", &lines),
            "[progress 01:02:03] run 1 a\n[progress 01:02:03] run 2 b\n"
        );
    }

    #[test]
    fn plain_lines_report_the_first_frame_then_at_most_once_per_interval() {
        let t = PlainLines::new(Duration::from_secs(30));
        let t0 = Instant::now();
        t.write_str("\r").unwrap();
        t.write_str("stage a 1/10 (10%)").unwrap();
        t.write_str(&" ".repeat(40)).unwrap();
        t.write_str("stage b 0/5 (0%)").unwrap();
        assert_eq!(
            t.take_due(t0),
            vec!["stage a 1/10 (10%)", "stage b 0/5 (0%)"]
        );
        t.write_str("stage a 2/10 (20%)").unwrap();
        assert!(t.take_due(t0 + Duration::from_secs(10)).is_empty());
        t.write_str("stage a 9/10 (90%)").unwrap();
        assert_eq!(
            t.take_due(t0 + Duration::from_secs(31)),
            vec!["stage a 9/10 (90%)"]
        );
    }
}
