//! Example 1 of the tutorial: start a process that prints a line, and join it.

use multiprocessing::Process;

fn disp() {
    println!("Hello Welcome Python Tutorial");
}

pub fn main() -> multiprocessing::Result<()> {
    let p = Process::new(disp, ());
    p.start()?;
    p.join()?;
    Ok(())
}
