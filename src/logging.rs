//! `log_to_stderr`: the library's log messages on stderr, as Python's `multiprocessing` shows them.

use std::io::Write;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let name = crate::current_process().name().to_string();
        let _ = writeln!(std::io::stderr().lock(), "[{}/{}] {}", record.level(), name, record.args());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

static LOGGER: StderrLogger = StderrLogger;

/// Sends log records at `level` and above to stderr as `[LEVEL/ProcessName] message`
/// (Python's `log_to_stderr(level)`). The library logs through the `log` facade; if the program
/// already installed a logger, that one stays and only the level changes. Returns whether this
/// call installed the stderr logger.
///
/// ```
/// multiproc::log_to_stderr(log::LevelFilter::Warn);
/// ```
pub fn log_to_stderr(level: log::LevelFilter) -> bool {
    let installed = log::set_logger(&LOGGER).is_ok();
    log::set_max_level(level);
    installed
}
