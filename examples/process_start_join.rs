//! Example 1 of the tutorial: start a process that prints a line, and join it.

use multiproc::Process;

fn disp() {
    println!("Hello Welcome Python Tutorial");
}

pub fn main() -> multiproc::Result<()> {
    let p = Process::new(disp, ());
    p.start()?;
    p.join()?;
    Ok(())
}
