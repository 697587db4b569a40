//! `remedios stats`: per-stage latencies and counts of the running stack.

use super::CliError;
use crate::stack::StackInfo;

pub fn run() -> Result<(), CliError> {
    let info = StackInfo::load()?;
    let path = info.log_dir.join("functions.log");
    let log = std::fs::read_to_string(&path)
        .map_err(CliError::io(format!("cannot read {}", path.display())))?;
    print!("{}", crate::stats::table(&crate::stats::summarize(&log)));
    Ok(())
}
